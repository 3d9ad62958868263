"""The artifact store: its layout, and the only module that joins paths inside it.

    <root>/objects/<aa>/<sha256>.<ext>   every stored file, written once, named by its content
    <root>/runs/<run_id>/...             a per-run view for people: hard links to objects
    <root>/steps/<run_id>/...            hand-offs between a stage's steps (not artifacts)
    <root>/globals/...                   the snapshot indexes, comparison-group ledgers, reuse keys
    <root>/alerts/...                    the alert log

An object's name is ``<sha256>.<ext>``; the extension picks the rule that computes the sha256
(the canonical logical hash where the project defines one), and verification re-applies it:

    .parquet  ``table_sha256`` with rows ordered by (symbol, ts) where present (logical content)
    .txt      ``lightgbm_model_sha256`` (LightGBM model text without config-echo lines)
    other     SHA-256 of the bytes (JSON objects are canonical JSON, so this is ``sha256_json``)

Objects are immutable: a second write of the same content stores nothing (dedup), files are
made read-only, and anything that reads an object re-hashes it first. The per-run view is
derived: deleting ``runs/`` loses nothing, and a view file edited in place changes its object,
which verification then reports.
"""

import errno
import io
import json
import os
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pandas as pd

from parity_pipeline.core.errors import ArtifactIntegrityError, ParityStorageError
from parity_pipeline.core.hashing import (
    canonical_json,
    lightgbm_model_sha256,
    sha256_bytes,
    table_sha256,
)
from parity_pipeline.core.store.atomic import atomic_write_bytes

OBJECTS, RUNS, STEPS, GLOBALS, ALERTS = "objects", "runs", "steps", "globals", "alerts"
_READ_ONLY = 0o444

# Objects this process wrote or has hashed: path -> (size, mtime_ns, inode) at that time.
# Objects are immutable and read-only, so a file whose stat is unchanged is not re-hashed by
# the same process (a run's steps read the panel and the predictions many times); an edit
# changes the stat and is hashed again. `parity verify` always re-hashes (``fresh``).
_VERIFIED: dict[str, tuple[int, int, int]] = {}


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _verified(path: Path) -> bool:
    stamp = _stamp(path)
    return stamp is not None and _VERIFIED.get(str(path)) == stamp


def _mark_verified(path: Path) -> None:
    stamp = _stamp(path)
    if stamp is not None:
        _VERIFIED[str(path)] = stamp


def table_key_columns(frame: pd.DataFrame) -> list[str] | None:
    """The row order every stored table is hashed in: (symbol, ts) where present."""
    keys = [c for c in ("symbol", "ts") if c in frame.columns]
    return keys or None


def frame_sha256(frame: pd.DataFrame) -> str:
    return table_sha256(frame, sort_by=table_key_columns(frame))


def content_sha256(data: bytes, suffix: str) -> str:
    """The sha256 an object with these bytes and this extension is named by."""
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
        except (OSError, ValueError) as exc:
            raise ArtifactIntegrityError(f"not a readable parquet table ({exc})") from exc
        return frame_sha256(frame)
    if suffix == ".txt":
        return lightgbm_model_sha256(data.decode("utf-8", errors="replace"))
    return sha256_bytes(data)


def split_name(name: str) -> tuple[str, str]:
    """``"<sha>.<ext>"`` -> (sha, ".ext"); refuses anything that is not an object name."""
    sha, dot, ext = name.partition(".")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or not dot \
            or not ext.isalnum():
        raise ArtifactIntegrityError(f"{name!r} is not an object name (<sha256>.<ext>)")
    return sha, f".{ext}"


class ContentStore:
    """One artifact root: content-addressed objects plus the views and indexes around them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- layout -------------------------------------------------------------------------------
    def object_path(self, name: str) -> Path:
        sha, _ = split_name(name)
        return self.root / OBJECTS / sha[:2] / name

    def run_view(self, run_id: str) -> Path:
        return self.root / RUNS / _component(run_id)

    def view_path(self, run_id: str, relative: str) -> Path:
        return self.run_view(run_id) / _relative(relative)

    def steps_dir(self, run_id: str) -> Path:
        return self.root / STEPS / _component(run_id)

    def globals_dir(self) -> Path:
        return self.root / GLOBALS

    def reuse_entry_path(self, reuse_key: str) -> Path:
        """Where ``core.store.reuse`` records which object holds the result of a reuse key."""
        return self.globals_dir() / "reuse" / reuse_key[:2] / f"{_component(reuse_key)}.json"

    def ledger_path(self, comparable_key: str) -> Path:
        return self.globals_dir() / "ledgers" / f"{_component(comparable_key)}.json"

    def alerts_dir(self) -> Path:
        return self.root / ALERTS

    # --- writing ------------------------------------------------------------------------------
    def put_bytes(self, data: bytes, suffix: str, sha256: str | None = None,
                  durable: bool = True) -> str:
        """Store ``data`` once; return its object name. ``sha256`` when the caller has it.
        ``durable=False`` (only for results that can be recomputed, ``core.store.reuse``) skips
        the fsyncs: a crash may leave the object damaged, which its hash shows on every read."""
        name = f"{sha256 or content_sha256(data, suffix)}{suffix}"
        path = self.object_path(name)
        if _holds(path, data):
            _mark_verified(path)
            return name  # already stored: content addressing makes the second write a no-op
        atomic_write_bytes(path, data, durable=durable)
        with suppress(OSError):  # a filesystem without modes keeps the file writable
            os.chmod(path, _READ_ONLY)
        _mark_verified(path)
        return name

    def put_json(self, value: Any) -> str:
        data = canonical_json(value).encode("utf-8")
        return self.put_bytes(data, ".json", sha256_bytes(data))

    def put_table(self, frame: pd.DataFrame, sha256: str | None = None) -> str:
        """Store a table; ``sha256``: its ``frame_sha256`` when the caller already has it."""
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False, engine="pyarrow")
        return self.put_bytes(buffer.getvalue(), ".parquet", sha256 or frame_sha256(frame))

    def put_text(self, text: str, suffix: str, sha256: str | None = None) -> str:
        return self.put_bytes(text.encode("utf-8"), suffix, sha256)

    def link_view(self, run_id: str, relative: str, name: str) -> Path:
        """Show object ``name`` at ``runs/<run_id>/<relative>`` (a hard link; a copy where the
        filesystem has none). Replaces what was there atomically."""
        source, target = self.object_path(name), self.view_path(run_id, relative)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() and os.path.samefile(source, target):
                return target
            temp = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
            with suppress(FileNotFoundError):
                temp.unlink()
            try:
                os.link(source, temp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                temp.write_bytes(source.read_bytes())
            os.replace(temp, target)
        except OSError as exc:
            raise ParityStorageError(
                f"cannot write {target}: {exc.strerror or exc}. Check that {self.root} is "
                "writable by this user and the disk is not full.") from exc
        return target

    # --- reading (always verified) ------------------------------------------------------------
    def read_bytes(self, name: str, fresh: bool = False) -> bytes:
        """The object's bytes, hashed and compared with its name (once per process unless
        ``fresh``: see ``_VERIFIED``)."""
        sha, suffix = split_name(name)
        path = self.object_path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactIntegrityError(
                f"object {path} is missing from the store; re-materialize the asset that made "
                "it (or restore the store from a backup)") from exc
        except OSError as exc:
            raise ParityStorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if not fresh and _verified(path):
            return data
        actual = content_sha256_or_unreadable(data, suffix)
        if actual != sha:
            raise ArtifactIntegrityError(
                f"object {path} was modified or corrupted: its content hashes to "
                f"{actual[:12]}…, not the {sha[:12]}… it is named by. Never edit stored files; "
                "re-materialize the asset that made it (`parity verify --all` lists every "
                "damaged object and the runs that use it)")
        _mark_verified(path)
        return data

    def verified_unchanged(self, name: str) -> bool:
        """Whether this process already hashed the object and its file has not changed."""
        return _verified(self.object_path(name))

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name).decode("utf-8"))

    def read_table(self, name: str) -> pd.DataFrame:
        """The table, verified by its logical hash (parsed once: the hash is of this frame)."""
        sha, suffix = split_name(name)
        if suffix != ".parquet":
            raise ArtifactIntegrityError(f"object {name} is not a table")
        path = self.object_path(name)
        known = _verified(path)
        try:
            frame = pd.read_parquet(path, engine="pyarrow")
        except FileNotFoundError:
            self.read_bytes(name)  # raises the store's "missing" error
            raise
        except (OSError, ValueError):
            return pd.read_parquet(io.BytesIO(self.read_bytes(name)), engine="pyarrow")
        if not known:
            if frame_sha256(frame) != sha:
                self.read_bytes(name, fresh=True)  # raises "modified or corrupted"
            _mark_verified(path)
        return frame

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode("utf-8")

    def bytes_sha256(self, name: str) -> str:
        """sha256 of the object file's bytes as stored (not the name's logical hash)."""
        path = self.object_path(name)
        try:
            return sha256_bytes(path.read_bytes())
        except OSError as exc:
            raise ArtifactIntegrityError(f"cannot read object {path}: {exc}") from exc

    def holds_bytes(self, name: str, bytes_sha256: str) -> bool:
        """The object file holds exactly the bytes whose sha256 was recorded when it was
        written: a check that costs one read, where the name's hash would parse the file. The
        same bytes as written carry the name's hash, so a match counts as verified for this
        process (``_VERIFIED``: later reads of the object do not parse it again)."""
        try:
            if self.bytes_sha256(name) != bytes_sha256:
                return False
        except ArtifactIntegrityError:
            return False
        _mark_verified(self.object_path(name))
        return True

    def damage(self, name: str, fresh: bool = True) -> str | None:
        """None when the object is intact, else what is wrong with it (re-hashed unless
        ``fresh`` is False: then once per process)."""
        try:
            self.read_bytes(name, fresh=fresh)
        except (ArtifactIntegrityError, ParityStorageError) as exc:
            return str(exc)
        return None

    def object_names(self) -> Iterator[str]:
        """Every object in the store, in name order."""
        base = self.root / OBJECTS
        if not base.is_dir():
            return
        for folder in sorted(base.iterdir()):
            for path in sorted(folder.iterdir()):
                if not path.name.startswith("."):
                    yield path.name


def _holds(path: Path, data: bytes) -> bool:
    """The object file exists with exactly these bytes (a damaged one is rewritten)."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def content_sha256_or_unreadable(data: bytes, suffix: str) -> str:
    """``content_sha256``, or "unreadable" (which matches no name) for a broken table."""
    try:
        return content_sha256(data, suffix)
    except ArtifactIntegrityError:
        return "unreadable"


def _component(value: str) -> str:
    text = str(value)
    if not text or "/" in text or text in (".", ".."):
        raise ArtifactIntegrityError(f"{value!r} cannot name a folder in the artifact store")
    return text


def _relative(relative: str) -> str:
    parts = str(relative).split("/")
    if not relative or relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ArtifactIntegrityError(f"{relative!r} is not a relative path inside a run view")
    return relative
