"""Text pipeline throughput: tfcompress (NLTK) vs Keras TextVectorization on SST-2 train.

Both turn all 67,349 training sentences into a vocabulary and padded id
arrays of length 64. The tfcompress pipeline is `TextEncoder.fit_transform`
(preprocess in all cores, build the vocabulary, encode); "cold" starts from an
empty cache folder, "cached" repeats the same call. TextVectorization
(adapt + call; tf_keras's and Keras 3's) has no cache: its first run is
"cold", and the faster second run (graphs already traced) is the baseline every
ratio uses.
"""

import tempfile

from common import Timer, emit, parser, sst2, table


def main():
    args = parser(__doc__).parse_args()
    from tfcompress import keras, text

    train, _ = sst2()
    texts = train.texts
    n = len(texts)
    rows = []

    def rate(seconds):
        return n / seconds

    # Baselines: TextVectorization of tf_keras and of Keras 3, each run twice.
    import keras as keras3

    tv_times = {}
    for name, layers in (("tf_keras", keras.layers), ("Keras 3", keras3.layers)):
        for run in ("first", "second"):
            with Timer() as t:
                tv = layers.TextVectorization(max_tokens=20000, output_sequence_length=64)
                tv.adapt(texts)
                ids = tv(texts)
            assert tuple(ids.shape) == (n, 64)
            tv_times[name, run] = t.seconds
    best_name = min(("tf_keras", "Keras 3"), key=lambda k: tv_times[k, "second"])
    tv_warm = tv_times[best_name, "second"]

    # Candidate: NLTK pipeline, cold then cached.
    with tempfile.TemporaryDirectory() as cache:
        with Timer() as cold:
            encoder, ids_cold = text.TextEncoder.fit_transform(texts, max_len=64, max_size=20000, cache=cache)
        with Timer() as cached:
            _, ids_cached = text.TextEncoder.fit_transform(texts, max_len=64, max_size=20000, cache=cache)
        assert (ids_cold == ids_cached).all()
    pre = text.TextPreprocessor()
    with tempfile.TemporaryDirectory() as cache:
        with Timer() as pre_cold:
            pre.table(texts, cache=cache)
        with Timer() as pre_cached:
            pre.table(texts, cache=cache)
        with Timer() as lists_cached:
            pre(texts, cache=cache)
    with Timer() as serial:
        text.TextEncoder.fit_transform(texts, max_len=64, max_size=20000, cache=False, n_jobs=1)

    for (name, run), seconds in tv_times.items():
        ratio = f"{tv_warm / seconds:.2f}×" if run == "second" else "—"
        rows.append([f"TextVectorization ({name}), {run} run", f"{seconds:.2f}", f"{rate(seconds):,.0f}", ratio])
    rows.append(
        ["tfcompress, one process, no cache", f"{serial.seconds:.2f}", f"{rate(serial.seconds):,.0f}", f"{tv_warm / serial.seconds:.2f}×"]
    )
    rows.append(["tfcompress, all cores, cold", f"{cold.seconds:.2f}", f"{rate(cold.seconds):,.0f}", f"{tv_warm / cold.seconds:.2f}×"])
    rows.append(["tfcompress, cached", f"{cached.seconds:.2f}", f"{rate(cached.seconds):,.0f}", f"{tv_warm / cached.seconds:.2f}×"])

    # Tokenizer speeds (one process, preprocessing only), for the default's choice.
    tok_rows = []
    for name in ("regexp", "treebank", "tweet", "word_tokenize"):
        p = text.TextPreprocessor(tokenizer=name)
        with Timer() as t:
            p(texts, n_jobs=1, cache=False)
        tok_rows.append([name, f"{rate(t.seconds):,.0f}"])

    body = f"""
All {n:,} SST-2 training sentences → vocabulary (20,000) → int32 ids (n, 64).
Speed ratio = the faster TextVectorization's second-run time ({best_name}, {tv_warm:.2f} s) / this run's time
(higher is faster).
Targets: cold ≥ 0.5×, cached ≥ 2×.

{table(["pipeline", "seconds", "sentences/s", "vs TextVectorization"], rows)}

Preprocessing alone (default `TextPreprocessor.table`, all cores): first run {pre_cold.seconds:.2f} s
(including writing the cache), second run {pre_cached.seconds:.3f} s: **{pre_cold.seconds / pre_cached.seconds:.1f}× faster**
(target ≥ 10×). Asking for Python token lists instead (`preprocessor(texts)`) costs
{lists_cached.seconds:.3f} s from the cache ({pre_cold.seconds / lists_cached.seconds:.1f}×), the rest being the creation of
{sum(map(len, pre(texts[:1000]))) * n // 1000:,} string references.

Tokenizer speed, one process, preprocessing only:

{table(["tokenizer", "sentences/s"], tok_rows)}
"""
    emit(args, "Text pipeline throughput (issue 3)", body)


if __name__ == "__main__":
    main()
