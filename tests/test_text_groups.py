"""Held-out splits of phrase data: a held-out text is never a part of a kept
one, nor the other way round."""

import numpy as np
import pytest

from tfcompress import text
from tfcompress.recipe import Recipe
from tfcompress.recipe.data import carve_selection
from tfcompress.text import containment_groups, grouped_split, id_sequences, word_sequences


def phrase_data(n_sentences=60, seed=0):
    """Sentences of 8 distinct made-up words, each followed by three of its
    own phrases (contiguous slices), as SST-2 lists them."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    texts, sentence_of = [], []
    for s in range(n_sentences):
        words = ["".join(rng.choice(letters, 6)) for _ in range(8)]
        texts.append(" ".join(words))
        sentence_of.append(s)
        for _ in range(3):
            a = int(rng.integers(0, 6))
            b = int(rng.integers(a + 1, 9))
            texts.append(" ".join(words[a:b]))
            sentence_of.append(s)
    return texts, np.array(sentence_of)


def _inside(part, whole):
    return f" {' '.join(part)} " in f" {' '.join(whole)} "


def test_phrases_go_with_their_sentence_and_only_whole_texts_are_held_out():
    texts, sentence_of = phrase_data()
    seqs = word_sequences(texts)
    groups = containment_groups(seqs)
    assert groups.grouped and groups.contained_share > 0.6
    assert groups.root.sum() == 60 and np.all(groups.root[::4])  # every sentence is a root, no phrase is
    assert np.all(sentence_of[groups.group] == sentence_of)  # each phrase is grouped with its own sentence
    kept, held = grouped_split(groups, 0.2, seed=3)
    assert len(held) == 12 and len(kept) == 240 - 4 * 12  # 12 whole groups of 4 leave training
    assert np.all(groups.root[held])
    for h in held:
        assert not any(_inside(seqs[k], seqs[h]) or _inside(seqs[h], seqs[k]) for k in kept)


def test_independent_texts_are_not_grouped_and_split_as_before():
    data = text.LabeledTexts([f"text number {i} {'x' * i}" for i in range(50)], np.arange(50) % 2, ["0", "1"])
    groups = containment_groups(word_sequences(data.texts))
    assert not groups.grouped and groups.contained_share == 0.0
    kept, held = grouped_split(groups, 0.2, seed=5)
    plain = np.random.default_rng(5).permutation(50)  # a plain random split, as without groups
    np.testing.assert_array_equal(held, np.sort(plain[:10]))
    np.testing.assert_array_equal(kept, np.sort(plain[10:]))
    with pytest.raises(ValueError, match=r"split fraction must be in \(0, 1\)"):
        grouped_split(groups, 1.0)


def test_padded_id_rows_group_like_their_words():
    texts, _ = phrase_data(n_sentences=20, seed=1)
    encoder, rows = text.TextEncoder.fit_transform(texts, text.TextPreprocessor(), max_len=12)
    by_ids = containment_groups(id_sequences(rows))
    by_words = containment_groups(word_sequences(texts))
    np.testing.assert_array_equal(by_ids.group, by_words.group)


def test_the_selection_split_of_a_recipe_holds_whole_texts_only(tmp_path):
    texts, _ = phrase_data(n_sentences=50, seed=2)
    encoder, rows = text.TextEncoder.fit_transform(texts, text.TextPreprocessor(), max_len=12)
    labels = np.arange(len(texts)) % 2
    (tmp_path / "t.tsv").write_text("text\tlabel\n", encoding="utf-8")  # only checked to exist here
    files = {"train": str(tmp_path / "t.tsv"), "dev": str(tmp_path / "t.tsv")}
    recipe = Recipe.from_dict({"data": {**files, "selection_fraction": 0.2}, "steps": ["train"]})
    data = {"x_train": rows, "y_train": labels, "x_dev": rows[:4], "y_dev": labels[:4]}
    carved, note = carve_selection(recipe, data, {"task": "classification"})
    assert len(carved["x_sel"]) == 10 and len(carved["x_train"]) == 200 - 40  # 10 sentences; their 30 phrases leave too
    assert "10 whole texts held out with the 30 phrases found inside them" in note
    # The held-out sentences with their phrases, each example with its sentence's group (for `auto: {phrases: true}`).
    x_parts, y_parts, group = carved["sel_parts"]
    assert len(x_parts) == 40 and len(np.unique(group)) == 10
    sentences = {tuple(r[r != 0]): g for r, g in zip(x_parts, group) if any(np.array_equal(r, s) for s in carved["x_sel"])}
    assert len(sentences) == 10
    for r, g in zip(x_parts, group):
        whole = next(s for s, sg in sentences.items() if sg == g)
        assert _inside(map(str, r[r != 0]), map(str, whole))  # a phrase of its own sentence
    from tfcompress import sensitivity

    means = sensitivity.group_means(np.arange(40.0), group)
    assert means.shape == (10,) and means.mean() == pytest.approx(np.mean([np.arange(40.0)[group == g].mean() for g in np.unique(group)]))
    kept = [tuple(r[r != 0]) for r in carved["x_train"]]
    for r in carved["x_sel"]:
        held = tuple(r[r != 0])
        assert held not in kept and not any(_inside(map(str, k), map(str, held)) for k in kept)


def test_a_recipe_without_a_dev_file_holds_out_whole_sentences(tmp_path):
    from tfcompress import recipe

    texts, sentence_of = phrase_data(n_sentences=80, seed=4)
    rows = [f"{t}\t{'pos' if sentence_of[i] % 2 else 'neg'}" for i, t in enumerate(texts)]
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    config = {
        "data": {"train": str(tmp_path / "train.tsv"), "dev_fraction": 0.1},
        "text": {"max_len": 10},
        "model": {"build": {"embedding_dim": 4, "units": 4}},
        "steps": [{"train": {"epochs": 1, "batch_size": 64}}],
    }
    lines = []
    report = recipe.run(config, tmp_path / "out", log=lines.append)
    assert report.meta["dev examples"] == 8 and report.meta["train examples"] == 320 - 32
    assert "8 whole texts held out with the 24 phrases found inside them" in report.meta["dev split"]
    assert any(line.startswith("[data] dev set: 8 whole texts") for line in lines)


@pytest.mark.slow
def test_sst2_phrases_are_held_out_with_their_sentences(sst2_dir):
    train = text.load_texts(sst2_dir / "train.tsv")
    dev = text.load_texts(sst2_dir / "dev.tsv", label_names=train.label_names)
    seqs = word_sequences(train.texts)
    groups = containment_groups(seqs)
    assert groups.contained_share > 0.85  # phrases of sentences
    assert 6500 < groups.root.sum() < 6920  # about one root per parsed sentence
    assert not containment_groups(word_sequences(dev.texts)).grouped  # dev: whole sentences only
    kept, held = grouped_split(groups, 0.1, seed=0)
    kept_text = "\n".join(" " + " ".join(seqs[i]) + " " for i in kept)
    sample = np.random.default_rng(0).choice(held, 200, replace=False)
    assert sum(f" {' '.join(seqs[i])} " in kept_text for i in sample) == 0
