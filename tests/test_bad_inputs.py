"""Bad input, one table: every row is something a user will give tfcompress.

Each row names the call, the error class, what the message must say was wrong
(and where), and how it must say to fix it; after the error, the row's output
folder holds no file (nothing half-written, no temporary left behind).
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tfcompress import distillation, export, keras, load_model, pruning, quantization, recipe, text

VOCAB, LEN = 20, 6


def _model(head="softmax"):
    inp = keras.Input((LEN,), dtype="int32", name="ids")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 4, name="embedding")(inp))
    h = keras.layers.Dense(4, activation="relu", name="hidden")(h)
    return keras.Model(inp, keras.layers.Dense(2, activation=head, name="out")(h))


def _write(path, content, mode="w"):
    with open(path, mode) as f:
        f.write(content)
    return str(path)


def _run(tmp, body, out="out", files=None):
    """Runs a recipe (YAML `body`) into `tmp/out` after writing `files`."""
    for name, content in (files or {}).items():
        _write(tmp / name, content, "wb" if isinstance(content, bytes) else "w")
    path = _write(tmp / "r.yaml", body) if isinstance(body, str) else _write(tmp / "r.yaml", body, "wb")
    recipe.run(path, tmp / out, log=lambda *_: None)


TRAIN = "text\tlabel\n" + "".join(f"good film {i}\tpos\nbad film {i}\tneg\n" for i in range(10))
CLASSIFY = "data: {train: train.tsv}\nsteps: [train]\n"

# (id, call(tmp), error class, what was wrong, how to fix)
CASES = [
    # data files
    ("train file with only a header", lambda t: _run(t, CLASSIFY, files={"train.tsv": "text\tlabel\n"}), text.DataFormatError, r"train.tsv \(data.train\): no examples, only a header", r"Fix: point data.train at"),
    ("dev file with only a header", lambda t: _run(t, "data: {train: train.tsv, dev: dev.tsv}\nsteps: [train]\n", files={"train.tsv": TRAIN, "dev.tsv": "text\tlabel\n"}), text.DataFormatError, r"dev.tsv \(data.dev\): no examples", r"Fix: point data.dev"),
    ("dev split comes out empty", lambda t: _run(t, CLASSIFY, files={"train.tsv": "text\tlabel\nok\tpos\n"}), text.DataFormatError, r"1 example\(s\) are too few to set 10% aside for the dev set \(the dev set comes out empty\)", r"Fix: give a dev file"),
    ("dev label not in train", lambda t: _run(t, "data: {train: train.tsv, dev: dev.tsv}\nsteps: [train]\n", files={"train.tsv": TRAIN, "dev.tsv": "text\tlabel\nfine\tmeh\n"}), text.DataFormatError, r"dev.tsv, line 2: label 'meh' is not one of the given label_names \['neg', 'pos'\]", r"Fix: add it to label_names, or fix the row"),
    ("no such text column", lambda t: text.load_texts(_write(t / "t.tsv", TRAIN), text_column="review"), text.DataFormatError, r"t.tsv, line 1: no column named 'review'", r"Fix: use one of those names"),
    ("language-model corpus too short for its window", lambda t: _run(t, "data: {task: language_model, corpus: c.txt, window: 40}\nsteps: [train]\n", files={"c.txt": b"short text\n" * 30}), text.DataFormatError, r"c.txt: 330 characters are too few for data.window 40: the last 5% is the dev set", r"Fix: give a corpus of at least 820 characters, or a smaller data.window"),
    ("language-model corpus empty", lambda t: _run(t, "data: {task: language_model, corpus: c.txt}\nsteps: [train]\n", files={"c.txt": b""}), text.DataFormatError, r"c.txt: 0 characters are too few", r"Fix: give a corpus of at least"),
    ("language-model corpus not UTF-8", lambda t: _run(t, "data: {task: language_model, corpus: c.txt}\nsteps: [train]\n", files={"c.txt": "line one\ncaf\xe9 au lait\n".encode("latin-1")}), text.DataFormatError, r"c.txt, line 2: not valid utf-8 \(byte 0xe9", r"Fix: save the corpus as UTF-8, or name its encoding"),
    # recipes
    ("recipe not UTF-8", lambda t: _run(t, b"data: {train: train.tsv}\n# caf\xe9\nsteps: [train]\n", files={"train.tsv": TRAIN}), recipe.RecipeError, r"r.yaml, line 2: not UTF-8 \(byte 0xe9", r"Fix: save the recipe as UTF-8"),
    ("recipe: unknown step", lambda t: _run(t, "data: {train: train.tsv}\nsteps: [squeeze]\n", files={"train.tsv": TRAIN}), recipe.RecipeError, r"unknown step 'squeeze'", r"Fix: use one of: train, sensitivity, auto, factorize, shrink, prune, cluster"),
    ("recipe: epochs not a number", lambda t: _run(t, "data: {train: train.tsv}\nsteps:\n  - train: {epochs: two}\n", files={"train.tsv": TRAIN}), recipe.RecipeError, r"line 3, key 'steps\[0\].train.epochs': 'two' is not valid", r"Fix: give an integer >= 1"),
    ("recipe: a row fraction of 1.5", lambda t: _run(t, "data: {train: train.tsv}\nsteps:\n  - train: {epochs: 1}\n  - auto: {max_loss: 1, rows: [0.5, 1.5]}\n", files={"train.tsv": TRAIN}), recipe.RecipeError, r"r.yaml, line 4, key 'steps\[1\].auto.rows': \[0.5, 1.5\] is not valid here", r"Fix: give \"auto\" or a list of numbers in \(0, 1\)"),
    ("recipe: rows with the latency objective", lambda t: _run(t, "data: {train: train.tsv}\nsteps:\n  - train: {epochs: 1}\n  - auto: {max_loss: 1, objective: latency, rows: [0.5]}\n", files={"train.tsv": TRAIN}), recipe.RecipeError, r"r.yaml, line 4, key 'steps\[1\].auto.rows': rows \[0.5\] with objective latency", r"Fix: leave rows out \(or \[\]\) with objective latency"),
    ("recipe: a teacher for a language model's auto step", lambda t: _run(t, "data: {task: language_model, corpus: c.txt, window: 10, stride: 5}\nmodel: {build: {embedding_dim: 4, units: 4, num_layers: 1}}\nsteps:\n  - train: {epochs: 1}\n  - auto: {max_loss: 1, teacher_weight: 0.5}\n", files={"c.txt": "the cat sat on the mat. " * 200}), recipe.RecipeError, r"r.yaml, line 5, key 'steps\[1\].auto.teacher_weight': teacher_weight 0.5 needs a classifier", r"Fix: leave teacher_weight out \(or 0\) for a language model"),
    ("recipe: sparsity out of range", lambda t: _run(t, "data: {train: train.tsv}\nsteps:\n  - prune: {target_sparsity: 1.5}\n", files={"train.tsv": TRAIN}), recipe.RecipeError, r"key 'steps\[0\].prune.target_sparsity': 1.5 is not valid", r"Fix: give a number in \[0, 1\)"),
    ("recipe: structure and an explicit sparsity", lambda t: _run(t, "data: {train: train.tsv}\nsteps:\n  - prune: {structure: '1:4', target_sparsity: 0.8}\n", files={"train.tsv": TRAIN}), recipe.RecipeError, r"structure '1:4' fixes the sparsity at 0.25", r"Fix: drop target_sparsity"),
    ("recipe: missing train file", lambda t: _run(t, "data: {train: nowhere.tsv}\nsteps: [train]\n"), recipe.RecipeError, r"key 'data.train': 'nowhere.tsv' does not exist", r"Fix"),
    ("recipe: export mode int4", lambda t: _run(t, "data: {train: train.tsv}\nsteps:\n  - export: {modes: [int4]}\n", files={"train.tsv": TRAIN}), recipe.RecipeError, r"modes': \['int4'\] is not valid", r"Fix: give a non-empty list of 'float32'"),
    ("recipe: invalid YAML", lambda t: _run(t, "data: {train: train.tsv\n", files={"train.tsv": TRAIN}), recipe.RecipeError, r"r.yaml, line \d+: invalid YAML", r"invalid YAML \("),
    # output folders
    ("--out holds unrelated data", lambda t: (_write((t / "mine").mkdir() or t / "mine" / "thesis.tex", "x"), _run(t, CLASSIFY, out="mine", files={"train.tsv": TRAIN})), recipe.RecipeError, r"mine holds files that are not a tfcompress run \(thesis.tex\)", r"Fix: choose another --out"),
    ("--out is a file", lambda t: (_write(t / "afile", "x"), _run(t, CLASSIFY, out="afile", files={"train.tsv": TRAIN})), recipe.RecipeError, r"afile is a file; the output must be a folder", r"Fix: choose another --out"),
    ("--out in use by a live run", lambda t: ((t / "out").mkdir(), _write(t / "out" / ".tfcompress-lock", str(os.getppid())), _run(t, CLASSIFY, files={"train.tsv": TRAIN})), recipe.RecipeError, rf"another tfcompress run \(process {os.getppid()}\) is writing to", r"Fix: wait for it to finish, or choose another --out"),
    # TFLite export
    ("export: unknown mode", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", mode="int4"), ValueError, r"mode must be one of \('float32', 'float16', 'dynamic', 'int8'\). Received: mode='int4'", r"must be one of"),
    ("export: path without .tflite", lambda t: export.to_tflite(_model(), t / "out" / "m.lite"), ValueError, r"the path must end in .tflite. Received: '.*m.lite'", r"must end in .tflite"),
    ("export: batch size 0", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", batch_size=0), ValueError, r"Received: batch_size=0", r"batch_size must be a positive integer"),
    ("export: sparse='yes'", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", sparse="yes"), ValueError, r"Received: sparse='yes'", r"sparse must be 'auto', True or False"),
    ("export: int8_io without int8", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", int8_io=True), ValueError, r"int8_io=True needs mode='int8'. Received: mode='dynamic'", r"needs mode='int8'"),
    ("export: int8 without calibration data", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", mode="int8"), ValueError, r"mode='int8' calibrates activation ranges on a sample of real inputs", r"Fix: pass representative_data="),
    ("export: empty calibration set", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", mode="int8", representative_data=np.zeros((0, LEN), "int32")), ValueError, r"representative_data has \[0\] example\(s\) per input", r"Fix: pass real inputs"),
    ("export: calibration of the wrong shape", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", mode="int8", representative_data=np.zeros((8, LEN + 2), "int32")), ValueError, r"representative_data for input 'ids' has examples of shape \(8,\), but the model takes \(6,\)", r"Fix: encode with the same max_len"),
    ("export: calibration text as floats", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", mode="int8", representative_data=np.zeros((8, LEN), "float32")), ValueError, r"representative_data for input 'ids' is float32, but the model takes int32 token ids", r"Fix: pass the encoded integer ids"),
    ("export: unknown recurrent form", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", recurrent="stateless"), ValueError, r"recurrent must be one of \('auto', 'unrolled', 'loop', 'fused'\). Received: recurrent='stateless'", r"must be one of"),
    ("export: verify threshold above 1", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", verify_threshold=99), ValueError, r"verify_threshold is a share of examples in \(0, 1\], e.g. 0.99. Received: verify_threshold=99", r"e.g. 0.99"),
    ("export: verify=True without data", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", verify=True), ValueError, r"verify=True compares the file with the Keras model on data, and none was given", r"Fix: pass verify=your inputs"),
    ("export: verification data of the wrong shape", lambda t: export.to_tflite(_model(), t / "out" / "m.tflite", verify=np.zeros((8, LEN + 2), "int32")), ValueError, r"verify for input 'ids' has examples of shape \(8,\), but the model takes \(6,\)", r"Fix: encode with the same max_len"),
    ("running a missing .tflite", lambda t: export.TFLiteModel(t / "out" / "none.tflite"), FileNotFoundError, r"TFLiteModel: no file at '.*none.tflite'", r"no file at"),
    # pruning and quantization
    ("prune: sparsity 1.0", lambda t: pruning.prune(_model(), target_sparsity=1.0), ValueError, r"target_sparsity must be a number in \[0, 1\).*Received: target_sparsity=1.0", r"0.8 keeps one weight in five"),
    ("prune: misspelt layer name", lambda t: pruning.prune(_model(), layers=["Hidden"]), ValueError, r"layers names 'Hidden', but model .* has no such layer. Its layers: ids, embedding", r"Fix: use one of these names"),
    ("prune: 1:4 structure with sparsity 0.5", lambda t: pruning.prune(_model(), structure="1:4", target_sparsity=0.5), ValueError, r"structure='1:4' fixes the sparsity at 0.25, but target_sparsity=0.5 was given", r"Fix: drop target_sparsity"),
    ("prune: block pooling SUM", lambda t: pruning.prune(_model(), block_pooling="SUM"), ValueError, r"Received: block_pooling='SUM'", r"must be 'AVG' or 'MAX'"),
    ("prune: structure and blocks", lambda t: pruning.prune(_model(), structure="2:4", block_size=(1, 4)), ValueError, r"structure='2:4' and block_size=\(1, 4\) conflict", r"choose M:N structured sparsity or block sparsity"),
    ("quantize: 16 bits", lambda t: quantization.quantize(_model(), bits=16), ValueError, r"bits must be an integer in \[2, 8\]. Received: bits=16", r"in \[2, 8\]"),
    ("quantize: misspelt skip name", lambda t: quantization.quantize(_model(), skip=["Out"]), ValueError, r"skip names 'Out', but model .* has no such layer", r"Fix: use one of these names"),
    ("quantize: preserve_sparsity 'yes'", lambda t: quantization.quantize(_model(), preserve_sparsity="yes"), ValueError, r"Received: preserve_sparsity='yes'", r"must be 'auto', True or False"),
    # distillation
    ("distill: alpha 1.5", lambda t: distillation.Distiller(_model(), _model(), alpha=1.5), ValueError, r"alpha is the weight of the student's label loss and must be in \[0, 1\].*alpha=1.5", r"must be in \[0, 1\]"),
    ("distill: temperature 0", lambda t: distillation.Distiller(_model(), _model(), temperature=0), ValueError, r"temperature must be > 0.*Received: temperature=0", r"2-5 is usual"),
    ("distill: a tanh head", lambda t: distillation.Distiller(_model(), _model("tanh")), distillation.OutputKindError, r"cannot tell whether model .* outputs logits or probabilities \(from its output back: 'out' \(Dense\)\)", r"Fix: say it with student_output="),
    ("distill: logits called probabilities", lambda t: distillation.Distiller(_model(), _model(None), student_output="probabilities"), distillation.OutputKindError, r"taken to output probabilities, but .* do not sum to 1", r"Fix: pass student_output='logits'"),
    # text preprocessing and tokenizers
    ("preprocessor: unknown tokenizer", lambda t: text.TextPreprocessor(tokenizer="spacy"), ValueError, r"TextPreprocessor\(tokenizer='spacy'\): expected one of 'regexp'", r"expected one of"),
    ("preprocessor: stemmer and lemmatizer", lambda t: text.TextPreprocessor(stemmer="porter", lemmatize=True), ValueError, r"TextPreprocessor\(stemmer='porter', lemmatize=True\): choose one", r"Fix: set stemmer=None or lemmatize=False"),
    ("preprocessor: invalid pattern", lambda t: text.TextPreprocessor(pattern="(["), ValueError, r"TextPreprocessor\(pattern='\(\['\) is not a valid regular expression", r"not a valid regular expression"),
    ("preprocessor: stopwords on characters", lambda t: text.TextPreprocessor(tokenizer="char", stopwords="english"), ValueError, r"tokenizer='char'\) produces characters, so stopwords, stemming and lemmatisation do not apply", r"Fix: use a word tokenizer"),
    ("preprocessor: one string, not a list", lambda t: text.TextPreprocessor()("a review"), TypeError, r"expects a list of strings; received one string", r"Fix: wrap it in a list"),
    ("tokenizer JSON that is not one", lambda t: text.load_tokenizer(_write(t / "tok.json", '{"hello": 1}')), text.TokenizerError, r"tok.json: not a Keras Tokenizer configuration \(no word_index\)", r"Expected what tokenizer.to_json\(\) writes"),
    ("a text file as a model", lambda t: load_model(_write(t / "m.keras", "hello")), ValueError, r"load_model: '.*m.keras' is neither a .keras archive nor an HDF5 file", r"tfcompress reads .keras and .h5 files and SavedModel folders"),
]


def test_the_table_holds_at_least_forty_bad_inputs():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_what_and_how_and_leaves_nothing(case, tmp_path):
    name, call, error, what, how = case
    keras.backend.clear_session()
    with pytest.raises(error) as info:
        call(tmp_path)
    message = str(info.value)
    assert _search(what, message), f"{message!r} does not say what was wrong ({what!r})"
    assert _search(how, message), f"{message!r} does not say how to fix it ({how!r})"
    out = tmp_path / "out"
    leftovers = [os.path.relpath(os.path.join(root, f), out) for root, _, files in os.walk(out) for f in files] if out.is_dir() else []
    others = {".tfcompress-lock"} if name == "--out in use by a live run" else set()  # the other run's lock
    assert not [f for f in leftovers if f != os.path.join(".run", "recipe.json") and f not in others], leftovers


def _search(pattern, message):
    import re

    return re.search(pattern, message, flags=re.S) is not None


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    """Two processes, one --out: the second gets a clear error, the first is unharmed."""
    _write(tmp_path / "train.tsv", TRAIN)
    path = _write(tmp_path / "r.yaml", "data: {train: train.tsv}\nsteps:\n  - train: {epochs: 30}\n")
    first = subprocess.Popen([sys.executable, "-m", "tfcompress", "compress", "--recipe", path, "--out", str(tmp_path / "out"), "--quiet"], stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "out" / ".tfcompress-lock"
        deadline = time.monotonic() + 120
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lock.exists(), "the first run never took the folder"
        with pytest.raises(recipe.RecipeError, match=rf"another tfcompress run \(process {first.pid}\) is writing to .*Fix: wait"):
            recipe.run(path, tmp_path / "out", log=lambda *_: None)
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert (tmp_path / "out" / "report.json").exists() and not lock.exists()
