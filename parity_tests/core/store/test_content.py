"""ContentStore.holds_bytes: the one-read check of an object's stored bytes against the sha256
recorded when it was written, and what a match means for later reads in the same process."""

import os

import pandas as pd

from parity_pipeline.core.hashing import sha256_bytes
from parity_pipeline.core.store.content import ContentStore


def _stored_table(tmp_path) -> tuple[ContentStore, str, str]:
    """A table stored as another process would have left it: not yet verified by this one (a
    new modification time is a new stat, which this process has not hashed)."""
    store = ContentStore(tmp_path / "artifacts")
    name = store.put_table(pd.DataFrame({"symbol": ["A", "B"], "x": [1.0, 2.5]}))
    path = store.object_path(name)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    return store, name, sha256_bytes(path.read_bytes())


def test_matching_bytes_count_as_verified_for_later_reads(tmp_path):
    store, name, recorded = _stored_table(tmp_path)
    assert not store.verified_unchanged(name)
    assert store.holds_bytes(name, recorded)
    assert store.verified_unchanged(name)  # read_table/read_bytes will not hash it again


def test_other_bytes_are_refused_and_not_marked_verified(tmp_path):
    store, name, recorded = _stored_table(tmp_path)
    assert not store.holds_bytes(name, sha256_bytes(b"something else"))
    assert not store.verified_unchanged(name)


def test_a_missing_object_is_refused(tmp_path):
    store, name, recorded = _stored_table(tmp_path)
    path = store.object_path(name)
    path.chmod(0o644)
    path.unlink()
    assert not store.holds_bytes(name, recorded)
    assert not store.verified_unchanged(name)
