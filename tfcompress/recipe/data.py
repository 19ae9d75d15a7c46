"""Data preparation of a run: the texts (or corpus) read and encoded once, and
the user's own model and tokenizer checked against each other."""

import os

import numpy as np

from tfcompress.recipe.schema import RecipeError

__all__ = ["prepare_data", "carve_selection", "DEV_MAX_CHARS"]

DEV_MAX_CHARS = 100_000
"""A language model's dev set: the last 5% of the corpus, at most this many characters."""


def prepare_data(recipe, run):
    """Loads and encodes the data once; saved under .run/00-data."""
    from tfcompress import _io, text

    folder = run.step_dir(0, "data")
    arrays = os.path.join(folder, "arrays.npz")
    if run.done(0, "data"):
        with np.load(arrays, allow_pickle=False) as d:
            data = {k: d[k] for k in d.files}
        meta = run.read(0, "data")
        if meta["task"] == "language_model":
            data = {"x_train": text.CharWindows(data.pop("ids_train"), meta["max_len"], meta["stride"]), "y_train": None, **data}
        encoder = text.TextEncoder.load(folder) if meta["task"] == "classification" else None
        vocab = encoder.vocabulary if encoder is not None else text.Vocabulary.load(os.path.join(folder, "vocab.txt"))
        run.log(f"[data] resumed: {len(data['x_train']):,} training and {len(data['x_dev']):,} dev examples")
        return data, encoder, vocab, meta
    cfg = recipe.config["data"]
    os.makedirs(folder, exist_ok=True)
    if cfg["task"] == "classification":
        kwargs = {k: cfg[k] for k in ("format", "text_column", "label_column", "header", "encoding")}
        train = text.load_texts(recipe.resolve(cfg["train"]), label_names=cfg["labels"], **kwargs)
        _require_examples(train, recipe.resolve(cfg["train"]), "data.train")
        dev_note = None
        if cfg["dev"]:
            dev = text.load_texts(recipe.resolve(cfg["dev"]), label_names=train.label_names, **kwargs)
            _require_examples(dev, recipe.resolve(cfg["dev"]), "data.dev")
        else:
            whole = len(train)
            groups = text.containment_groups(text.word_sequences(train.texts), seed=recipe.config["seed"])
            train, dev = train.split(cfg["dev_fraction"], seed=recipe.config["seed"], groups=groups if groups.grouped else None)
            dev_note = _held_out_note(groups, whole - len(train), len(dev), "dev set")
            if not len(dev) or not len(train):
                raise text.DataFormatError(
                    f"{recipe.resolve(cfg['train'])}: {whole} example(s) are too few to set {cfg['dev_fraction']:.0%} "
                    f"aside for the dev set (the {'dev set' if not len(dev) else 'training set'} comes out empty). "
                    "Fix: give a dev file (--dev FILE, data.dev), or more examples."
                )
        encoder, prepared = _encoder_and_model(recipe, train, folder)
        if encoder is None:
            tcfg = recipe.config["text"]
            encoder, x_train = text.TextEncoder.fit_transform(
                train.texts,
                text.TextPreprocessor(**tcfg["preprocessor"]),
                max_len=tcfg["max_len"],
                max_size=tcfg["max_size"],
                min_freq=tcfg["min_freq"],
            )
        else:
            x_train = encoder(train.texts)
        data = {"x_train": x_train, "y_train": train.labels, "x_dev": encoder(dev.texts), "y_dev": dev.labels}
        encoder.save(folder)  # vocab.txt and preprocessing.json
        vocab = encoder.vocabulary
        meta = {
            "task": "classification",
            "labels": train.label_names,
            "num_classes": train.num_classes,
            "max_len": encoder.max_len,
            "prepared_model": prepared,
        }
        if dev_note:
            meta["dev_split"] = dev_note
    else:
        corpus = text.builtin_corpus() if cfg["corpus"] == "builtin" else _read_corpus(recipe.resolve(cfg["corpus"]), cfg["encoding"])
        if cfg["max_chars"]:
            corpus = corpus[: cfg["max_chars"]]
        vocab = text.Vocabulary.build([corpus])  # a string is its characters: no list of them is made
        ids = vocab.char_ids(corpus)
        # The last 5% is the dev set, at most DEV_MAX_CHARS of it: enough for a steady bits/char,
        # and evaluating it (every .tflite too, one window at a time) stays quick on any corpus.
        cut = _tail_cut(len(ids), 0.05, cfg["window"])
        if cut is None:
            source = "the built-in corpus" if cfg["corpus"] == "builtin" else recipe.resolve(cfg["corpus"])
            limit = f" (data.max_chars: {cfg['max_chars']})" if cfg["max_chars"] else ""
            need = 20 * (cfg["window"] + 1)
            raise text.DataFormatError(
                f"{source}: {len(ids):,} characters{limit} are too few for data.window {cfg['window']}: the last 5% "
                f"is the dev set, and both parts need at least window + 1 characters. Fix: give a corpus of at "
                f"least {need:,} characters, or a smaller data.window."
            )
        # Training windows are made as they are read (CharWindows): only the ids are kept and stored.
        x_train, (x_dev, y_dev) = _split_windows(ids, cut, cfg["window"], cfg["stride"])
        data = {"x_train": x_train, "y_train": None, "x_dev": x_dev, "y_dev": y_dev}
        vocab.save(os.path.join(folder, "vocab.txt"))
        encoder = None
        meta = {
            "task": "language_model",
            "labels": None,
            "num_classes": len(vocab),
            "max_len": cfg["window"],
            "stride": cfg["stride"],
            "corpus_chars": len(corpus),
        }
        del corpus
    stored = data
    if meta["task"] == "language_model":
        stored = {"ids_train": data["x_train"].ids, "x_dev": data["x_dev"], "y_dev": data["y_dev"]}
    with _io.atomic_path(arrays, "data") as tmp:
        with open(tmp, "wb") as f:  # written straight to the file: no second copy in memory
            np.savez(f, **stored)
    run.finish_data(meta)
    run.log(f"[data] {len(data['x_train']):,} training and {len(data['x_dev']):,} dev examples, vocabulary {len(vocab):,}")
    if meta.get("dev_split"):
        run.log(f"[data] dev set: {meta['dev_split']}")
    return data, encoder, vocab, meta


def carve_selection(recipe, data, meta):
    """Sets a selection split aside from the training data, for the choices
    a run makes (`epochs: auto` stops on it), so that dev serves only to
    report. The same split on every run and resume of a recipe (its seed).

    Training examples that are parts of one another (the phrases of a
    sentence, as in SST-2) are held out together, and the split keeps only
    the whole ones (`text.containment_groups`): a random split of phrases
    would score on text the model trained on.

    Returns `(data, note)`: the data with `x_train`/`y_train` reduced and
    `x_sel`/`y_sel` added, and a line that says how the split was made."""
    from tfcompress import text

    fraction, source = selection_fraction(recipe, meta["task"]), recipe.source
    data = dict(data)
    if meta["task"] == "classification":
        n = len(data["x_train"])
        groups = text.containment_groups(text.id_sequences(data["x_train"]), seed=recipe.config["seed"])
        rest, chosen = text.grouped_split(groups, fraction, seed=[recipe.config["seed"], 17])
        if not len(chosen) or not len(rest):
            raise text.DataFormatError(
                f"{source}: {n} training example(s) are too few to set {fraction:.0%} aside as the selection split "
                "that 'epochs: auto' stops on. Fix: give more training examples, or fixed epochs (epochs: 2)."
            )
        data["x_sel"], data["y_sel"] = data["x_train"][chosen], data["y_train"][chosen]
        # Every example of the held-out groups (the sentences and their phrases), with its group:
        # `auto` verifies on each sentence's mean over its phrases, a finer measure than the sentence alone.
        parts = np.flatnonzero(np.isin(groups.group, chosen))
        data["sel_parts"] = (data["x_train"][parts], data["y_train"][parts], groups.group[parts])
        data["x_train"], data["y_train"] = data["x_train"][rest], data["y_train"][rest]
        return data, _held_out_note(groups, n - len(rest), len(chosen), "selection split")
    # A language model: the end of the training corpus (before dev), at most DEV_MAX_CHARS of it.
    windows = data["x_train"]
    ids, window = windows.ids, meta["max_len"]
    cut = _tail_cut(len(ids), fraction, window)
    if cut is None:
        raise text.DataFormatError(
            f"{source}: the training corpus ({len(ids):,} characters) is too short to set {fraction:.0%} aside as the "
            f"selection split that 'epochs: auto' stops on (each part needs more than data.window = {window} "
            "characters). Fix: a longer corpus, or fixed epochs (epochs: 2)."
        )
    data["x_train"], (data["x_sel"], data["y_sel"]) = _split_windows(ids, cut, window, meta["stride"])
    return data, f"the end of the training corpus ({len(ids) - cut:,} characters, before dev)"


SELECTION_FRACTION = 0.1
"""The share of the training data carved out as the selection split."""

BUDGET_SELECTION_FRACTION = 0.25
"""The share a classifier's `auto` step verifies on: a budget of half a point needs a check finer than
the 10% split's (about ±0.5 point on SST-2; ±0.3 at 25%), and the refit puts the split back into training
(BENCHMARKS.md, "rows 0.5, 0.5-25%")."""


def selection_fraction(recipe, task):
    """`data.selection_fraction`, or its default: 25% for a classifier whose
    recipe has an `auto` step, else 10%. A language model's split is the end
    of its corpus, which its training never takes back: 10%."""
    given = recipe.config["data"]["selection_fraction"]
    if given is not None:
        return given
    budget = task == "classification" and any(name == "auto" for name, _ in recipe.steps)
    return BUDGET_SELECTION_FRACTION if budget else SELECTION_FRACTION


def _held_out_note(groups, removed, held, what):
    """How a held-out split of classification texts was made, in one line."""
    if not groups.grouped:
        return f"a random {removed:,} training examples"
    return (
        f"{held:,} whole texts held out with the {removed - held:,} phrases found inside them, which leave training "
        f"too ({groups.contained_share:.0%} of sampled training texts lie inside another one: a random {what} "
        "would score on text the model trained on)"
    )


def _tail_cut(length, share, window):
    """Where a corpus of `length` ids splits to set its last `share` (at most
    DEV_MAX_CHARS) aside; None when either part would not hold one window."""
    cut = max(int(length * (1 - share)), length - DEV_MAX_CHARS)
    return None if min(cut, length - cut) <= window else cut


def _split_windows(ids, cut, window, stride):
    """Training windows of `ids[:cut]`, made as they are read, and the held-out
    `(inputs, next)` pairs of `ids[cut:]` (every 7th window)."""
    from tfcompress import text

    return text.CharWindows(ids[:cut], window, stride), text.char_windows(ids[cut:], window, 7)


def _require_examples(data, path, key):
    from tfcompress import text

    if not len(data):
        raise text.DataFormatError(
            f"{path} ({key}): no examples, only a header or nothing. Fix: point {key} at the file with "
            "your labelled texts (a header line, then one text and label per line)."
        )


def _read_corpus(path, encoding):
    """A language model's corpus as one string; a decoding error names the line."""
    from tfcompress import text

    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode(encoding or "utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise text.DataFormatError(
            f"{path}, line {line}: not valid {err.encoding} (byte 0x{raw[err.start]:02x} at offset {err.start}). "
            "Fix: save the corpus as UTF-8, or name its encoding in the recipe (data.encoding: cp1252)."
        ) from None


def _encoder_and_model(recipe, train, folder):
    """The user's tokenizer and model, checked against each other.

    Returns `(encoder or None, prepared)`: None when a new vocabulary is to be
    fitted; `prepared` is True when the user's model was loaded, split from
    its TextVectorization layer if it has one, checked, and saved as
    `folder/model.keras` for the steps to start from.
    """
    from tfcompress import load_model, text

    tcfg, mcfg = recipe.config["text"], recipe.config["model"]
    options = {"max_len": tcfg["max_len"], "padding": tcfg["padding"], "truncating": tcfg["truncating"]}
    tokenizer = recipe.resolve(tcfg["tokenizer"])

    def fail(key, err, fix=""):
        raise RecipeError(f"{recipe.source}: {key}: {err}" + (f" Fix: {fix}" if fix else "")) from None

    def read_tokenizer(max_len):
        try:
            return text.load_tokenizer(tokenizer, **{**options, "max_len": max_len})
        except (text.TokenizerError, ValueError) as err:
            fix = "set text.max_len (command line: --max-len)" if "sequence length" in str(err) else ""
            fail("text.tokenizer", err, fix)

    if not mcfg["load"]:
        return (read_tokenizer(tcfg["max_len"]) if tokenizer else None), False
    path = recipe.resolve(mcfg["load"])
    model = load_model(path, safe_mode=not mcfg["trust_code"])
    vectorizer = text.find_vectorizer(model)
    if vectorizer is not None:
        if tokenizer:
            fail(
                "text.tokenizer",
                f"{mcfg['load']} has its own TextVectorization layer {vectorizer.name!r}, which is its tokenizer.",
                "drop text.tokenizer (--tokenizer); tfcompress takes the layer's vocabulary and rules.",
            )
        try:
            encoder, model = text.split_vectorizer(model, max_len=tcfg["max_len"])
        except text.TokenizerError as err:
            fail("model.load", err, "set text.max_len (command line: --max-len)" if "max_len" in str(err) else "")
    else:
        model = text.with_int_ids(model)
        _check_loaded(model, {"num_classes": train.num_classes}, recipe)
    if vectorizer is None and not tokenizer:
        fail(
            "model.load",
            f"{mcfg['load']} reads token ids, but no tokenizer was given. A new vocabulary would give "
            "the trained embedding other words under the same ids.",
            "give the tokenizer the model was trained with: text.tokenizer (command line: --tokenizer) "
            "set to a Keras Tokenizer JSON file (tokenizer.to_json()), a vocabulary file "
            "(TextVectorization order, one token per line) or a tfcompress TextEncoder folder.",
        )
    elif vectorizer is None:
        shape = tuple(model.inputs[0].shape)
        length = shape[1] if len(shape) == 2 else None
        encoder = read_tokenizer(tcfg["max_len"] or length)
        try:
            encoder = text.check_encoder(encoder, model, explicit_len=tcfg["max_len"] is not None)
        except text.TokenizerError as err:
            fail("text.tokenizer", err)
    if vectorizer is not None:
        _check_loaded(model, {"num_classes": train.num_classes}, recipe)
    model.save(os.path.join(folder, "model.keras"))
    return encoder, True


def _check_loaded(model, meta, recipe):
    shape = tuple(model.input_shape)
    if len(shape) != 2 or model.inputs[0].dtype.is_floating:
        raise RecipeError(
            f"{recipe.source}: model.load: the model takes input {shape} "
            f"({model.inputs[0].dtype.name}); a text classifier here takes int32 token ids of shape "
            f"(batch, length). Fix: load a model whose first layer is an Embedding."
        )
    width = model.output_shape[-1]
    if width != meta["num_classes"] and not (width == 1 and meta["num_classes"] == 2):
        raise RecipeError(
            f"{recipe.source}: model.load: the model has {width} outputs but the data "
            f"has {meta['num_classes']} classes. Fix: load a model trained for these labels."
        )
