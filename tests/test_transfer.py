"""`distillation.transfer_set`: new texts made from the training texts by
masking, part-of-speech swaps, WordNet synonyms and n-grams (Tang et al.,
2019), reproducible, cached, and clear about missing NLTK data."""

import nltk
import numpy as np
import pytest

from conftest import need_nltk
from tfcompress.distillation import TransferSet, transfer_set
from tfcompress.text import MissingNLTKData

TEXTS = [
    "the film is a charming and often affecting journey",
    "a gorgeous , witty , seductive movie",
    "the plot is nothing but boilerplate cliches from start to finish",
    "it 's a cookie-cutter movie , a cut-and-paste job",
    "the acting is strong and the story moves quickly",
    "an utterly incompetent conclusion",
    "visually striking and slickly staged",
    "the characters are thin and the dialogue is flat",
    "a beautiful , entertaining two hours",
    "this is a dull , simple-minded and stereotypical tale of drugs , death and mind-numbing indifference",
]


def _only(method, rate):
    rates = {"mask": 0.0, "pos_swap": 0.0, "wordnet_synonym": 0.0, "ngram": 0.0}
    return {"methods": (method,), "rates": {**rates, method: rate}, "cache": False}


def test_the_same_seed_gives_the_same_set_and_every_text_is_new():
    a = transfer_set(TEXTS, "4x", methods=("mask", "ngram"), seed=3, cache=False)
    b = transfer_set(TEXTS, 40, methods=("mask", "ngram"), seed=3, cache=False)
    c = transfer_set(TEXTS, "4x", methods=("mask", "ngram"), seed=4, cache=False)
    assert isinstance(a, TransferSet) and len(a) == 40 and list(a) == list(b) and list(a) != list(c)
    assert len(set(a)) == 40 and not set(a) & set(TEXTS)  # duplicates and training texts are drawn again
    assert np.array_equal(a.sources, b.sources) and a.sources.min() >= 0 and a.sources.max() < len(TEXTS)
    assert len(np.unique(a.sources)) == len(TEXTS)  # every training text is used


def test_masking_changes_only_words_into_the_mask_token():
    out = transfer_set(TEXTS, 30, mask_token="<unk>", seed=0, **_only("mask", 0.3))
    masked = total = 0
    for text, i in zip(out, out.sources):
        new, old = text.split(), TEXTS[i].split()
        assert len(new) == len(old)
        for n, o in zip(new, old):
            assert n in (o, "<unk>")
            masked += n == "<unk>" != o
            total += 1
    assert 0.2 < masked / total < 0.45  # 0.3, over 30 texts that each differ from their source


def test_ngram_sampling_keeps_a_contiguous_piece_of_at_most_max_ngram_words():
    out = transfer_set(TEXTS, 25, max_ngram=3, seed=0, **_only("ngram", 1.0))
    for text, i in zip(out, out.sources):
        new, old = text.split(), TEXTS[i].split()
        assert 1 <= len(new) <= 3
        assert any(old[k : k + len(new)] == new for k in range(len(old) - len(new) + 1))


def test_pos_swaps_replace_a_word_by_one_the_training_texts_give_the_same_tag():
    need_nltk("averaged_perceptron_tagger_eng")
    tagged = nltk.pos_tag_sents([t.split() for t in TEXTS])
    by_tag = {}
    for sentence in tagged:
        for word, tag in sentence:
            by_tag.setdefault(tag, set()).add(word)
    out = transfer_set(TEXTS, 30, seed=1, **_only("pos_swap", 0.5))
    swaps = 0
    for text, i in zip(out, out.sources):
        new = text.split()
        assert len(new) == len(tagged[i])
        for word, (old, tag) in zip(new, tagged[i]):
            assert word in by_tag[tag]  # a word seen with this tag (possibly itself)
            swaps += word != old
    assert swaps >= 30  # each text differs from its source


def test_wordnet_synonyms_come_from_the_words_most_frequent_sense():
    need_nltk("averaged_perceptron_tagger_eng", "wordnet")
    from nltk.corpus import wordnet

    tagged = nltk.pos_tag_sents([t.split() for t in TEXTS])
    out = transfer_set(TEXTS, 12, seed=2, **_only("wordnet_synonym", 0.6))
    checked = 0
    for text, i in zip(out, out.sources):
        new = text.split()
        if len(new) != len(tagged[i]):
            continue  # a synonym of several words ("once again"): not aligned word by word
        for word, (old, tag) in zip(new, tagged[i]):
            if word != old:
                senses = wordnet.synsets(old, pos={"N": "n", "V": "v", "J": "a", "R": "r"}[tag[0]])
                assert word in {lemma.name().lower() for lemma in senses[0].lemmas()}, (old, tag, word)
                checked += 1
    assert checked >= 10


def test_the_set_is_cached_and_read_back(tmp_path):
    first = transfer_set(TEXTS, 20, methods=("mask", "ngram"), seed=5, cache=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and first.seconds > 0
    again = transfer_set(TEXTS, 20, methods=("mask", "ngram"), seed=5, cache=tmp_path)
    assert list(again) == list(first) and np.array_equal(again.sources, first.sources) and again.seconds == 0
    other = transfer_set(TEXTS, 20, methods=("mask", "ngram"), seed=6, cache=tmp_path)
    assert list(other) != list(first) and len(list(tmp_path.glob("*.npz"))) == 2


def test_too_few_distinct_texts_warn_and_bad_arguments_say_what_to_fix():
    with pytest.warns(UserWarning, match=r"only \d+ distinct new texts of the 500 asked for"):
        few = transfer_set(["good", "bad film"], 500, seed=0, **_only("mask", 0.5))
    assert 0 < len(few) < 500
    with pytest.raises(ValueError, match=r"n must be a number of texts or a multiple .* Received: n='ten'"):
        transfer_set(TEXTS, "ten")
    with pytest.raises(ValueError, match=r"methods must be some of .* Received: methods=\['shuffle'\]"):
        transfer_set(TEXTS, methods=["shuffle"])
    with pytest.raises(ValueError, match=r"must add up to at most 1"):
        transfer_set(TEXTS, rates={"mask": 0.6, "pos_swap": 0.6})
    with pytest.raises(ValueError, match=r"rates\['ngram'\] must be a probability in \[0, 1\]"):
        transfer_set(TEXTS, rates={"ngram": 2})
    with pytest.raises(TypeError, match=r"received one string"):
        transfer_set("a text")
    with pytest.raises(TypeError, match=r"texts\[1\] is a int"):
        transfer_set(["a text", 3])


def test_missing_tagger_data_is_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(MissingNLTKData, match=r"(?s)'averaged_perceptron_tagger_eng' is missing.*pos_swap.*tfcompress text download averaged_perceptron_tagger_eng"):
        transfer_set(TEXTS, 10, cache=False)
    assert len(transfer_set(TEXTS, 10, methods=("mask", "ngram"), cache=False)) == 10  # the data-free methods still work


# ------------------------------------------------------------------ the distill step


def test_a_recipe_distills_on_a_transfer_set_of_its_training_rows(tmp_path):
    from test_recipe import small_recipe

    from tfcompress import recipe
    from tfcompress.recipe.schema import RecipeError

    config = small_recipe(tmp_path, seed=2, steps=[
        {"train": {"epochs": 3, "batch_size": 32}},
        {"distill": {"student": {"units": 4}, "epochs": 1, "batch_size": 32, "transfer": {"size": "3x", "methods": ["mask", "ngram"]}}},
    ])
    lines = []
    report = recipe.run(config, tmp_path / "out", log=lines.append, verbose=0)
    row = next(r for r in report.records if r.step.startswith("distill"))
    assert "transfer set: 1,800 texts (mask, ngram) for 600 labelled" in row.notes
    assert any("[transfer] 1,800 texts from 600" in line for line in lines)
    bad = dict(config, steps=[config["steps"][0], {"distill": {"transfer": {"size": "many"}}}])
    with pytest.raises(RecipeError, match=r"steps\[1\]\.distill\.transfer\.size.*size must be a number of texts or a multiple .* Received: size='many'. Fix: size: 10x"):
        recipe.run(bad, tmp_path / "bad", verbose=0)
    bad = dict(config, steps=[config["steps"][0], {"distill": {"transfer": {"methods": ["mask", "shuffle"]}}}])
    with pytest.raises(RecipeError, match=r"transfer\.methods.*methods must be some of \['mask', 'pos_swap', 'ngram', 'wordnet_synonym'\]"):
        recipe.run(bad, tmp_path / "bad", verbose=0)
    bad = dict(config, steps=[config["steps"][0], {"distill": {"transfer": {"rates": {"mask": 0.6, "pos_swap": 0.6}}}}])
    with pytest.raises(RecipeError, match=r"transfer\.rates.*must add up to at most 1.*Fix: rates: "):
        recipe.run(bad, tmp_path / "bad", verbose=0)  # checked before any step runs, as transfer_set checks it
    assert not (tmp_path / "bad").exists()
