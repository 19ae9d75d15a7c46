"""Writing files completely or not at all.

Every file or folder tfcompress writes goes through here: it is produced under
a temporary name in the destination folder and renamed into place only when
complete, so a failure (or a kill) never leaves a half-written output behind.
"""

import contextlib
import os
import shutil
import tempfile

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_writable_dir"]


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
