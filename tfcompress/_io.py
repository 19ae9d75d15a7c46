"""Writing files completely or not at all.

Every file or folder tfcompress writes goes through here: it is produced under
a temporary name in the destination folder and renamed into place only when
complete, so a failure (or a kill) never leaves a half-written output behind.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_writable_dir", "recover_set", "file_sha256"]


def check_writable_dir(path, what="output"):
    """Creates the parent folder of `path` if needed; raises a clear error if
    it cannot be written."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path))) or "."
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"Cannot create the folder {folder!r} for the {what} file {os.fspath(path)!r}: "
            f"{err.strerror}. Fix: choose a path in a folder you can write to."
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot write the {what} file {os.fspath(path)!r}: the folder {folder!r} "
            "is not writable. Fix: choose a path in a folder you can write to."
        )
    return folder


@contextlib.contextmanager
def atomic_path(path, what="output", directory=False):
    """Yields a temporary path beside `path`; moves it to `path` on success.

    On an exception the temporary file or folder is removed and the previous
    content of `path` (if any) is left untouched.

    Args:
        path: the final file or folder.
        what: a word for error messages ("TFLite", "vocabulary", ...).
        directory: the output is a folder (e.g. a SavedModel).
    """
    path = os.fspath(path)
    folder = check_writable_dir(path, what)
    base = os.path.basename(path.rstrip(os.sep)) or "out"
    tmp_dir = tempfile.mkdtemp(prefix=f".{base}.", suffix=".partial", dir=folder)
    tmp = os.path.join(tmp_dir, base)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise RuntimeError(f"no {what} was written to {path!r}")
        if directory or os.path.isdir(tmp):
            if os.path.isdir(path):
                old = path + ".old-" + os.path.basename(tmp_dir)
                os.rename(path, old)
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                if os.path.exists(path):
                    os.remove(path)
                os.rename(tmp, path)
        else:
            if os.path.isdir(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def atomic_write_bytes(path, data, what="output"):
    with atomic_path(path, what) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text, what="output"):
    atomic_write_bytes(path, text.encode("utf-8"), what)


def set_journal(folder, stem):
    """Where `tfcompress.export` notes a set of files it is committing."""
    return os.path.join(folder, f".{stem}.export-journal.json")


def recover_set(folder, stem, clean_staging=False):
    """Completes an interrupted write of the deployment set `stem` in
    `folder` (see `tfcompress.export.convert._write`); returns whether there
    was one. A writer also passes `clean_staging=True` to remove staging
    folders a killed export left before its journal (readers leave them: one
    may belong to an export still running)."""
    journal_path = set_journal(folder, stem)
    committing = None
    try:
        with open(journal_path, encoding="utf-8") as f:
            journal = json.load(f)
    except FileNotFoundError:
        journal = None
    if journal is not None:
        committing = journal["staging"]
        staging = os.path.join(folder, committing)
        for name in journal["files"]:
            with contextlib.suppress(FileNotFoundError):  # moved already (by us before a kill, or by another reader)
                os.replace(os.path.join(staging, name), os.path.join(folder, name))
        for name in journal["remove"]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(journal_path)
    if clean_staging:
        prefix = f".{stem}.export-"
        for entry in os.listdir(folder):
            if entry.startswith(prefix) and entry != committing and os.path.isdir(os.path.join(folder, entry)):
                shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)  # staged, never committed
    return journal is not None


def file_sha256(path):
    """The SHA-256 of a file, as `NAME.json` records it for each file of its set."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_figure(figure, path):
    """Saves a matplotlib figure as a PNG, completely or not at all."""
    with atomic_path(path, "plot") as tmp:
        figure.savefig(tmp, format="png")
