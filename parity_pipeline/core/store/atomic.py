"""Atomic file writes: a reader sees the old file or the new one, never a torn mix.

Recipe (DESIGN §8, "non-atomic writes"): write a temp file in the *same* directory (so the
final ``os.replace`` is a rename within one filesystem, which POSIX makes atomic), flush and
fsync it (so the rename never points at unwritten blocks after a crash), ``os.replace`` it onto
the target, then fsync the directory (so the rename itself survives a crash). On any failure
the temp file is removed and the error re-raised; OS errors become ``ParityStorageError``.
"""

import errno
import json
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from parity_pipeline.core import hashing
from parity_pipeline.core.errors import ParityStorageError


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once at import, before worker threads exist.
    current = os.umask(0)
    os.umask(current)
    return current


# NamedTemporaryFile creates files 0600; give new files the mode a plain open() would have.
_NEW_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write_bytes(path: os.PathLike | str, data: bytes, durable: bool = True) -> Path:
    """Atomically replace ``path`` with ``data``; parent directories are created. Returns path.

    ``durable=False`` skips both fsyncs: still atomic for readers, but a crash may lose the
    write. Only for files whose loss costs a recomputation (the reuse keys and results of
    ``core.store.reuse``)."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _replace_with(target, data, durable)
        if durable:
            fsync_directory(target.parent)
    except OSError as exc:
        raise _storage_error(target, exc) from exc
    return target


def atomic_write_text(path: os.PathLike | str, text: str) -> Path:
    """Atomically write ``text`` as UTF-8 (no newline translation, so bytes match on every OS)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: os.PathLike | str, value: Any) -> Path:
    """Atomically write ``value`` as readable JSON under the canonical encoding rule.

    Serialized before anything touches the disk, so an unencodable value (TypeError from
    ``hashing.to_canonical``) leaves neither a temp file nor a changed target.
    """
    text = json.dumps(hashing.to_canonical(value), indent=2, sort_keys=True, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def _replace_with(target: Path, data: bytes, durable: bool = True) -> None:
    mode = _mode_for(target)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, delete=False,
                                         prefix=f".{target.name}.", suffix=".tmp")
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except BaseException:
        # BaseException too: a Ctrl-C mid-write must not leave a stray temp file behind.
        with suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise


def _mode_for(target: Path) -> int:
    """Keep an existing file's permissions; new files get the umask default."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return _NEW_FILE_MODE


def fsync_directory(directory: Path) -> None:
    """Persist the rename. Some filesystems cannot fsync a directory; the data is already safe."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    fd = os.open(directory, flags)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _storage_error(target: Path, exc: OSError) -> ParityStorageError:
    reason = exc.strerror or type(exc).__name__
    return ParityStorageError(
        f"cannot write {target}: {reason} ({exc.filename or target}). Check that its directory "
        f"exists as a directory, is writable by this user and the disk is not full, or point "
        f"parity at another artifact directory."
    )
