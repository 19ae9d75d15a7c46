"""A second labelled text set for the benchmarks: Amazon fine-food reviews.

`small_fine_foods` from the R package modeldata (MIT), as Debian ships it in
`r-cran-modeldata` 1.1.0-1: 4,000 training and 1,000 test reviews of food
products, each labelled "great" (5 stars) or "other" (1-4 stars); 65% and
66% of them are "great". The reviews are a sample of the Amazon Fine Foods
data of McAuley and Leskovec, "From amateurs to connoisseurs: modeling the
evolution of user expertise through online reviews", WWW 2013 (SNAP).

The benchmarks need no network but the package registries, so the data comes
from the Debian archive: `fetch()` downloads the `.deb` (4.3 MB, checked
against its SHA-256), reads the two data frames from R's lazy-load database
inside it (the `rdata` package, in the `bench` extra) and writes them as JSONL
(`{"text": ..., "label": "great" | "other"}`) to a cache outside the
repository (`$TFCOMPRESS_BENCH_CACHE`, default `~/.cache/tfcompress-bench`).
Nothing of it is kept in the project.

    python benchmarks/fine_foods.py     # fetch once, print the paths
"""

import gzip
import hashlib
import io
import json
import lzma
import os
import pathlib
import tarfile
import tempfile
import urllib.request
import warnings
import zlib

URL = "http://deb.debian.org/debian/pool/main/r/r-cran-modeldata/r-cran-modeldata_1.1.0-1_all.deb"
SHA256 = "66c2e08bb4bf695d972b1e72ea44d5af9ada3c42841793d3871017f7b896bf95"
DATABASE = "usr/lib/R/site-library/modeldata/data/Rdata"
FRAMES = {"train": "training_data", "test": "testing_data"}
ROWS = {"train": 4000, "test": 1000}


def cache_dir():
    return pathlib.Path(os.environ.get("TFCOMPRESS_BENCH_CACHE", pathlib.Path.home() / ".cache" / "tfcompress-bench")) / "fine_foods"


def fetch():
    """`{"train": path, "test": path}`: the two JSONL files, fetched and
    converted on the first call, read from the cache after."""
    folder = cache_dir()
    paths = {split: folder / f"{split}.jsonl" for split in FRAMES}
    if all(p.exists() for p in paths.values()):
        return paths
    try:
        import rdata
    except ImportError:
        raise SystemExit("The fine-food reviews are read with the `rdata` package. Fix: pip install -e '.[bench]'.") from None
    try:
        blob = urllib.request.urlopen(URL, timeout=60).read()
    except OSError as err:
        raise SystemExit(f"Could not download {URL} ({err}). The fine-food benchmark needs the Debian archive.") from None
    got = hashlib.sha256(blob).hexdigest()
    if got != SHA256:
        raise SystemExit(f"{URL}: SHA-256 {got}, expected {SHA256}. The download is damaged or the package changed; nothing was written.")
    files = _deb_files(blob, (DATABASE + ".rdx", DATABASE + ".rdb"))
    with warnings.catch_warnings():  # rdata names R classes it maps to a plain data frame (tbl_df, tbl)
        warnings.simplefilter("ignore")
        return _convert(rdata, files, folder, paths)


def _convert(rdata, files, folder, paths):
    index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(files[DATABASE + ".rdx"])))["variables"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in FRAMES.items():
        offset, length = (int(v) for v in index[frame])
        table = rdata.conversion.convert(rdata.parser.parse_data(_lazyload_object(files[DATABASE + ".rdb"][offset:offset + length])))
        rows = [{"text": " ".join(str(t).split()), "label": str(s)} for t, s in zip(table["review"], table["score"])]
        if len(rows) != ROWS[split]:
            raise SystemExit(f"{frame}: {len(rows)} rows, expected {ROWS[split]}; nothing was written.")
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, delete=False, suffix=".part") as out:
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        os.replace(out.name, paths[split])
    return paths


def _deb_files(blob, names):
    """The named members of a `.deb`'s data archive (an `ar` archive holding `data.tar.xz`)."""
    if blob[:8] != b"!<arch>\n":
        raise SystemExit(f"{URL}: not a Debian package (no ar header).")
    pos = 8
    while pos < len(blob):
        name, size = blob[pos:pos + 16].decode().strip().rstrip("/"), int(blob[pos + 48:pos + 58])
        body = blob[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                return {n: tar.extractfile("./" + n).read() for n in names}
    raise SystemExit(f"{URL}: no data archive inside.")


def _lazyload_object(chunk):
    """One object of R's lazy-load database: a 4-byte length, then a type
    byte and the compressed serialization (`Z` xz/LZMA2 raw, `2` bzip2,
    `0` none; no type byte for zlib)."""
    kind = chunk[4:5]
    if kind == b"Z":
        return lzma.decompress(chunk[5:], format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
    if kind == b"2":
        import bz2

        return bz2.decompress(chunk[5:])
    if kind == b"0":
        return chunk[5:]
    return zlib.decompress(chunk[4:])


if __name__ == "__main__":
    for split, path in fetch().items():
        print(split, path)
