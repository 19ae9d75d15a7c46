"""Preprocessing many texts: in worker processes, cached on disk, with progress.

`run(preprocessor, texts, ...)` is what `TextPreprocessor.table` (and so
calling a preprocessor) does; it works for any object with `tokens(text)`
and `get_config()` whose class has `from_config`.

The cache: `$TFCOMPRESS_CACHE_DIR/text` (default `~/.cache/tfcompress/text`,
or under `$XDG_CACHE_HOME`), one `.npz` per (texts, configuration), no pickle.
It holds at most `$TFCOMPRESS_CACHE_MAX_MB` (default 1024 MB): after each
write the files used least recently are deleted. `TFCOMPRESS_CACHE=off`
turns it off. Only fitting writes it by default (`TextEncoder.fit`,
`fit_transform`); encoding texts with a fitted encoder does not.
"""

import functools
import hashlib
import json
import multiprocessing
import os
import sys

import numpy as np

from tfcompress.text.token_table import TokenTable, token_table

# Below this many texts a call runs in this process; above, in worker
# processes (forking costs ~0.1 s). Caching and the progress bar likewise.
PARALLEL_MIN_TEXTS = 20_000
CACHE_MIN_TEXTS = 10_000
PROGRESS_MIN_TEXTS = 50_000
CACHE_FORMAT = 2
CACHE_MAX_MB = 1024


def run(pre, texts, n_jobs=None, cache=None, progress=None):
    """Preprocesses `texts` with `pre` into a `TokenTable` (arguments as for
    `TextPreprocessor.__call__`)."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"{type(pre).__name__} expects a list of strings; received one string. "
            "Fix: wrap it in a list: preprocessor([text])."
        )
    texts = list(texts)
    jobs = resolve_jobs(n_jobs, len(texts))
    path = cache_path(pre, texts, cache)
    limit = cache_limit_bytes() if path is not None else None  # a bad setting fails before the work
    if path is not None and os.path.exists(path):
        try:
            os.utime(path)  # recently used: evicted last
            return read_cache(path)
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: recompute and overwrite
    show = show_progress(progress, len(texts))
    result = _serial(pre, texts, show) if jobs == 1 else _parallel(pre, texts, jobs, show)
    if path is not None:
        write_cache(path, result, limit)
    return result


def _serial(pre, texts, show):
    if show:
        from tqdm.auto import tqdm

        texts = tqdm(texts, desc="preprocessing", unit="text")
    return token_table(pre, texts)


def _parallel(pre, texts, jobs, show):
    chunks = max(jobs * 4, len(texts) // 20000)
    size = -(-len(texts) // chunks)
    pieces = [texts[i : i + size] for i in range(0, len(texts), size)]
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs, initializer=_init_worker, initargs=(type(pre), pre.get_config())) as pool:
        it = pool.imap(_work, pieces)
        if show:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(pieces), desc="preprocessing", unit="chunk")
        parts = list(it)
    return TokenTable.concat(parts)


def cache_key(pre, texts):
    """The cache key of preprocessing `texts` with `pre`'s configuration."""
    h = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "nltk": _nltk_version(), "config": pre.get_config()}
    h.update(json.dumps(header, sort_keys=True).encode())
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def cache_path(pre, texts, cache):
    """The cache file for `texts`, or None when not caching."""
    if cache is False or (cache is None and len(texts) < CACHE_MIN_TEXTS):
        return None
    if isinstance(cache, (str, os.PathLike)):
        folder = os.fspath(cache)
    elif cache_disabled():
        return None
    else:
        folder = os.path.join(cache_root(), "text")
    return os.path.join(folder, cache_key(pre, texts) + ".npz")


def cache_disabled():
    """True when `$TFCOMPRESS_CACHE` is 0/off/false/no: nothing is cached
    unless a call names a folder (`cache=path`)."""
    return os.environ.get("TFCOMPRESS_CACHE", "").strip().lower() in ("0", "off", "false", "no")


def cache_limit_bytes():
    """`$TFCOMPRESS_CACHE_MAX_MB` (default 1024) in bytes: the most the cache
    folder may hold; the files used least recently go first."""
    value = os.environ.get("TFCOMPRESS_CACHE_MAX_MB", "")
    try:
        return int(float(value) * 2**20) if value.strip() else CACHE_MAX_MB * 2**20
    except ValueError:
        raise ValueError(
            f"TFCOMPRESS_CACHE_MAX_MB={value!r} is not a number. Fix: set it to the cache's size limit in MB "
            "(e.g. 512), or unset it (1024)."
        ) from None


def evict(folder, limit, keep=None):
    """Deletes the least recently used `.npz` files of `folder` until it holds
    at most `limit` bytes (never `keep`, the file just written)."""
    try:
        entries = [e for e in os.scandir(folder) if e.is_file() and e.name.endswith(".npz")]
    except FileNotFoundError:
        return
    stats = sorted(((e.stat().st_mtime, e.stat().st_size, e.path) for e in entries), key=lambda t: t[0])
    total = sum(size for _, size, _ in stats)
    for _, size, path in stats:
        if total <= limit:
            break
        if keep is not None and os.path.abspath(path) == os.path.abspath(keep):
            continue
        try:
            os.remove(path)
            total -= size
        except OSError:
            pass


@functools.lru_cache(maxsize=None)
def _nltk_version():
    # From package metadata: importing NLTK costs half a second, and the
    # default tokenizer does not need it.
    import importlib.metadata

    return importlib.metadata.version("nltk")


def cache_root():
    """`$TFCOMPRESS_CACHE_DIR`, else `$XDG_CACHE_HOME/tfcompress` or `~/.cache/tfcompress`."""
    root = os.environ.get("TFCOMPRESS_CACHE_DIR")
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfcompress")


def write_cache(path, table, limit=None):
    """Stores a TokenTable as three arrays (no pickle: safe to read back)."""
    import io

    from tfcompress._io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(
        buf,
        ids=table.ids,
        lengths=table.lengths,
        tokens=np.frombuffer(json.dumps(table.tokens, ensure_ascii=False).encode("utf-8", "surrogatepass"), np.uint8),
    )
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        return  # a cache that cannot be written is not an error
    evict(os.path.dirname(path), cache_limit_bytes() if limit is None else limit, keep=path)


def read_cache(path):
    with np.load(path, allow_pickle=False) as data:
        tokens = json.loads(data["tokens"].tobytes().decode("utf-8", "surrogatepass"))  # lone surrogates survive
        table = TokenTable(tokens, data["ids"], data["lengths"])
    if (table.ids.size and int(table.ids.max()) >= len(tokens)) or int(table.lengths.sum()) != table.ids.size:
        raise ValueError(f"inconsistent cache file {path}")
    return table


def resolve_jobs(n_jobs, n_texts):
    if n_jobs is None:
        if n_texts < PARALLEL_MIN_TEXTS:
            return 1
        n_jobs = os.cpu_count() or 1
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer or None. Received: n_jobs={n_jobs!r}.")
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1  # worker processes would re-import TensorFlow; not worth it
    return min(n_jobs, max(1, n_texts))


def show_progress(progress, n_texts):
    if progress is not None:
        return bool(progress)
    if n_texts < PROGRESS_MIN_TEXTS:
        return False
    return sys.stderr.isatty() or "ipykernel" in sys.modules


_WORKER = None


def _init_worker(cls, config):
    global _WORKER
    _WORKER = cls.from_config(config)


def _work(texts):
    return token_table(_WORKER, texts)
