"""JSON index files shared by runs and processes: snapshot indexes and comparison-group ledgers.

Every read-modify-write happens under an inter-process lock (``<index>.lock``) and every write
is atomic (DESIGN §8: "unlocked read-modify-write of index files; non-atomic writes"). Readers
take no lock: an atomic replace means they see either the old or the new file, never a torn one.

File format: ``{"schema_version": 1, "entries": [...]}``, compact canonical JSON with one entry
per line. The previous good file is kept as
``<index>.bak``. A damaged index is never reset silently: it raises ``ArtifactIntegrityError``.

The lock comes from the ``filelock`` library rather than hand-written ``fcntl.flock`` because it
already solves the parts that are easy to get wrong: a timeout with polling, filesystems
without flock, fork safety, Windows (``msvcrt``), and waiters sharing one lock-file inode. Its
Unix lock is a kernel ``flock``, so a holder killed with SIGKILL releases it automatically; a
lock file left on disk is harmless and never needs to be deleted by hand.
"""

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from parity_pipeline.core import hashing
from parity_pipeline.core.errors import ArtifactIntegrityError, ParityStorageError
from parity_pipeline.core.store.atomic import atomic_write_bytes, fsync_directory

SCHEMA_VERSION = 1
Entry = dict[str, Any]


class JsonIndex:
    """An append-only list of JSON entries in one file, safe across threads and processes."""

    def __init__(self, path: Path, lock_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.backup_path = self.path.with_name(self.path.name + ".bak")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout_s = lock_timeout_s

    def read(self) -> list[Entry]:
        """All entries, oldest first. A missing file is an empty index; a damaged one raises."""
        raw = _read_bytes_or_none(self.path)
        return [] if raw is None else _parse_index(self.path, raw)

    def last(self, keep: Callable[[Entry], bool]) -> Entry | None:
        """The newest entry that ``keep`` accepts, or None."""
        return next((entry for entry in reversed(self.read()) if keep(entry)), None)

    def append(self, make_entry: Callable[[list[Entry]], Entry]) -> Entry:
        """Append ``make_entry(current_entries)`` under the lock and return it.

        ``make_entry`` runs while the lock is held, so a value derived from the current entries
        (e.g. ``snapshot_seq = len(entries) + 1``) is unique across processes. It must be quick
        and must not touch this index itself.
        """
        return self.append_many(lambda entries: [make_entry(entries)])[0]

    def append_many(self, make_entries: Callable[[list[Entry]], list[Entry]]) -> list[Entry]:
        """Append a batch ``make_entries(current_entries)`` in one locked, atomic write."""
        with _locked(self.lock_path, self.lock_timeout_s):
            raw = _read_bytes_or_none(self.path)
            current = [] if raw is None else _parse_index(self.path, raw)
            # The callback gets its own parsed copy: editing an old entry must not rewrite history.
            # (Parsing again with the C decoder is several times faster than copy.deepcopy.)
            new = make_entries([] if raw is None else _parse_index(self.path, raw))
            _check_entries(self.path, new)
            if raw is not None:
                # The bytes just parsed are known good: they become the backup before replacing.
                atomic_write_bytes(self.backup_path, raw)
            _remove_orphan_temps(self.path)
            # compact canonical JSON, one entry per line: an index grows with every run, and
            # indentation was a third of its bytes
            atomic_write_bytes(self.path, _index_bytes(current + new))
        return new


def _index_bytes(entries: list[Entry]) -> bytes:
    lines = [hashing.canonical_json(entry) for entry in entries]
    body = ",\n".join(lines)
    return (f'{{"schema_version":{SCHEMA_VERSION},"entries":[\n{body}\n]}}\n').encode()


def append_jsonl(path: os.PathLike | str, record: Any) -> None:
    """Append one canonical JSON line to a .jsonl file (e.g. the alert log), locked and fsync'd."""
    target = Path(path)
    line = hashing.canonical_json(record).encode("utf-8") + b"\n"
    lock_path = target.with_name(target.name + ".lock")
    with _locked(lock_path, 60.0):
        try:
            _append_line(target, line)
        except OSError as exc:
            raise _storage_error(target, exc) from exc


def _append_line(target: Path, line: bytes) -> None:
    created = not target.exists()
    fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        # A writer killed mid-line leaves a fragment without "\n"; start on a fresh line so the
        # fragment stays one bad line instead of corrupting this record too.
        if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_directory(target.parent)


@contextmanager
def _locked(lock_path: Path, timeout_s: float) -> Iterator[None]:
    lock = _acquire(lock_path, timeout_s)
    try:
        yield
    finally:
        lock.release()


def _acquire(lock_path: Path, timeout_s: float) -> filelock.BaseFileLock:
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(lock_path), timeout=timeout_s)
        lock.acquire()
    except filelock.Timeout as exc:
        raise ParityStorageError(
            f"could not lock {lock_path} within {timeout_s:g} s: another parity process is "
            f"writing this index. The lock is freed when that process exits; wait for it or stop "
            f"it (deleting the lock file does not help)."
        ) from exc
    except OSError as exc:
        raise _storage_error(lock_path, exc) from exc
    return lock


def _read_bytes_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise _integrity_error(path, "it is a directory, not a file") from exc
    except OSError as exc:
        raise _storage_error(path, exc) from exc


def _parse_index(path: Path, raw: bytes) -> list[Entry]:
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _integrity_error(path, f"it is not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or set(document) != {"schema_version", "entries"}:
        raise _integrity_error(path, 'expected {"schema_version": 1, "entries": [...]}')
    if document["schema_version"] != SCHEMA_VERSION:
        raise _integrity_error(path, f"schema_version {document['schema_version']!r} is not "
                                     f"{SCHEMA_VERSION} (written by another parity version?)")
    entries = document["entries"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _integrity_error(path, '"entries" must be a list of JSON objects')
    return entries


def _check_entries(path: Path, entries: Any) -> None:
    # Programming errors in make_entry are TypeErrors, raised before the index is touched.
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TypeError(f"entries for {path} must be a list of dicts, got {entries!r:.80}")
    hashing.to_canonical(entries)


def _remove_orphan_temps(path: Path) -> None:
    """Delete temp files of writers killed mid-write; under the lock no live writer owns one."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}(\.bak)?\.[a-z0-9_]{{8}}\.tmp$")
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        if pattern.match(candidate.name):
            try:
                candidate.unlink(missing_ok=True)
            except OSError as exc:
                raise _storage_error(candidate, exc) from exc


def _integrity_error(path: Path, reason: str) -> ArtifactIntegrityError:
    backup = path.with_name(path.name + ".bak")
    return ArtifactIntegrityError(
        f"index {path} is unreadable: {reason}. parity does not reset it silently. Restore the "
        f"previous good version from {backup} (cp {backup} {path}) or delete {path} to start "
        f"a new index (its history is then lost)."
    )


def _storage_error(path: Path, exc: OSError) -> ParityStorageError:
    reason = exc.strerror or type(exc).__name__
    return ParityStorageError(
        f"cannot access {path}: {reason}. Check that its directory exists, is readable and "
        f"writable by this user and the disk is not full."
    )
