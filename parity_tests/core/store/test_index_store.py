"""Locked, atomic index files and atomic writes (DESIGN §8: unlocked read-modify-write,
non-atomic writes, swallowed failures).

Child processes are real interpreters started with ``subprocess`` (no fork, no shared state),
so the lock is exercised exactly as two parity runs would exercise it.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import filelock
import pytest

from parity_pipeline.core.errors import ArtifactIntegrityError, ParityStorageError
from parity_pipeline.core.store import atomic
from parity_pipeline.core.store.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from parity_pipeline.core.store.indexes import JsonIndex, append_jsonl
from parity_tests.helpers import PROJECT

N_PROCS = 8
N_PER_PROC = 50

# Each worker announces it is ready, waits for a shared "go" file (so all eight really contend),
# then appends N entries to the index and N lines to the jsonl log.
APPEND_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from parity_pipeline.core.store.indexes import JsonIndex, append_jsonl

    index_path, log_path, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    proc, n = int(sys.argv[4]), int(sys.argv[5])
    Path(str(go) + f".ready{proc}").touch()
    while not go.exists():
        time.sleep(0.005)
    index = JsonIndex(index_path)
    for i in range(n):
        index.append(lambda entries, i=i: {"proc": proc, "i": i, "seq": len(entries) + 1})
        append_jsonl(log_path, {"proc": proc, "i": i, "text": "line\\nbreak é"})
""")

# The worker blocks at one point inside JsonIndex.append, tells the parent through a file,
# and sleeps until the parent SIGKILLs it.
BLOCKING_WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from parity_pipeline.core.store.indexes import JsonIndex

    index_path, signal_file, where = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def block():
        signal_file.write_text(where)
        time.sleep(600)

    if where == "os.replace":
        real_replace = os.replace
        def replace(src, dst, *args, **kwargs):
            if Path(dst) == index_path:
                block()
            return real_replace(src, dst, *args, **kwargs)
        os.replace = replace
    elif where == "fsync":
        real_fsync = os.fsync
        def fsync(fd):
            # Only the index's own temp file (written, not yet fsync'd), not the .bak one.
            name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
            if name.startswith(f".{index_path.name}.") and ".bak." not in name:
                block()
            return real_fsync(fd)
        os.fsync = fsync
    JsonIndex(index_path).append(
        lambda entries: block() if where == "make_entry" else {"seq": len(entries) + 1})
""")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    return env


def _spawn(script: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=_child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout_s: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"child exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def _seeded_index(tmp_path: Path, n: int) -> JsonIndex:
    index = JsonIndex(tmp_path / "globals" / "training_snapshot_index.json")
    for _ in range(n):
        index.append(lambda entries: {"seq": len(entries) + 1})
    return index


# --- concurrency -------------------------------------------------------------------------------

def test_eight_processes_append_without_loss_or_duplicate_sequence(tmp_path):
    index_path, log_path, go = tmp_path / "index.json", tmp_path / "alerts.jsonl", tmp_path / "go"
    procs = [_spawn(APPEND_WORKER, index_path, log_path, go, p, N_PER_PROC)
             for p in range(N_PROCS)]
    try:
        _wait_for(lambda: all(Path(f"{go}.ready{p}").exists() for p in range(N_PROCS)),
                  120, "workers to start", procs)
        go.touch()
        for proc in procs:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    document = json.loads(index_path.read_text())  # valid JSON on disk
    assert document["schema_version"] == 1
    entries = document["entries"]
    assert len(entries) == N_PROCS * N_PER_PROC
    pairs = [(e["proc"], e["i"]) for e in entries]
    assert sorted(pairs) == [(p, i) for p in range(N_PROCS) for i in range(N_PER_PROC)]
    assert [e["seq"] for e in entries] == list(range(1, N_PROCS * N_PER_PROC + 1))
    # Each process's own entries appear in the order it wrote them.
    for p in range(N_PROCS):
        assert [e["i"] for e in entries if e["proc"] == p] == list(range(N_PER_PROC))
    assert JsonIndex(index_path).read() == entries

    lines = log_path.read_bytes().decode("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted((r["proc"], r["i"]) for r in records) == sorted(pairs)
    assert all(r["text"] == "line\nbreak é" for r in records)
    assert _temp_files(tmp_path) == []


# --- a writer killed mid-write -----------------------------------------------------------------

@pytest.mark.parametrize("where", ["make_entry", "fsync", "os.replace"])
def test_sigkill_mid_write_keeps_previous_index_and_frees_lock(tmp_path, where):
    index = _seeded_index(tmp_path, 3)
    before = index.path.read_bytes()
    signal_file = tmp_path / "blocked"
    victim = _spawn(BLOCKING_WORKER, index.path, signal_file, where)
    try:
        _wait_for(signal_file.exists, 60, f"the child to block in {where}", [victim])
        # While the child holds the lock, another writer times out with an actionable error.
        with pytest.raises(ParityStorageError, match="could not lock"):
            JsonIndex(index.path, lock_timeout_s=0.3).append(lambda e: {"seq": -1})
        if where != "make_entry":
            assert _temp_files(index.path.parent), "the child should be mid-write"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        victim.stdout.close()
        victim.stderr.close()

    assert victim.returncode == -signal.SIGKILL
    assert index.path.read_bytes() == before
    assert [e["seq"] for e in index.read()] == [1, 2, 3]
    # The kernel released the flock with the dead process: the next writer gets it at once.
    JsonIndex(index.path, lock_timeout_s=5).append(lambda e: {"seq": len(e) + 1})
    assert [e["seq"] for e in index.read()] == [1, 2, 3, 4]
    assert _temp_files(index.path.parent) == [], "orphan temp files are swept under the lock"


# --- damaged index -----------------------------------------------------------------------------

@pytest.mark.parametrize("content", [
    b'{"schema_version": 1, "entries": [{"seq": 1}',  # truncated
    b"\xff\xfe not utf-8",
    b"",
    b"[]",
    b'{"entries": []}',
    b'{"schema_version": 1, "entries": {}}',
    b'{"schema_version": 1, "entries": [1, 2]}',
    b'{"schema_version": 2, "entries": []}',
    b'{"schema_version": 1, "entries": [], "extra": 0}',
])
def test_corrupt_index_raises_and_is_left_untouched(tmp_path, content):
    index = _seeded_index(tmp_path, 2)
    index.path.write_bytes(content)
    backup_before = index.backup_path.read_bytes()

    for action in (index.read, lambda: index.append(lambda e: {"seq": len(e) + 1})):
        with pytest.raises(ArtifactIntegrityError) as info:
            action()
        message = str(info.value)
        assert str(index.path) in message
        assert str(index.backup_path) in message and "delete" in message
        assert info.value.exit_code == 3
    assert index.path.read_bytes() == content
    assert index.backup_path.read_bytes() == backup_before
    assert _temp_files(index.path.parent) == []


def test_backup_can_restore_a_damaged_index(tmp_path):
    index = _seeded_index(tmp_path, 3)
    assert [e["seq"] for e in json.loads(index.backup_path.read_text())["entries"]] == [1, 2]
    index.path.write_text("garbage")
    index.backup_path.replace(index.path)
    assert [e["seq"] for e in index.read()] == [1, 2]


# --- API behaviour -----------------------------------------------------------------------------

def test_missing_index_reads_empty_and_first_append_creates_dirs(tmp_path):
    index = JsonIndex(tmp_path / "a" / "b" / "ledger.json")
    assert index.read() == []
    assert index.append(lambda e: {"seq": len(e) + 1, "n_effective": 20000}) == {
        "seq": 1, "n_effective": 20000}
    assert json.loads(index.path.read_text()) == {
        "schema_version": 1, "entries": [{"seq": 1, "n_effective": 20000}]}
    assert not index.backup_path.exists()  # there was no previous good file


def test_append_many_assigns_consecutive_sequence_numbers(tmp_path):
    index = _seeded_index(tmp_path, 2)
    batch = index.append_many(lambda e: [{"seq": len(e) + k} for k in (1, 2, 3)])
    assert [b["seq"] for b in batch] == [3, 4, 5]
    assert [e["seq"] for e in index.read()] == [1, 2, 3, 4, 5]


def test_failing_or_bad_make_entry_changes_nothing(tmp_path):
    index = _seeded_index(tmp_path, 2)
    before = index.path.read_bytes()

    def boom(entries):
        raise RuntimeError("make_entry failed")

    with pytest.raises(RuntimeError, match="make_entry failed"):
        index.append(boom)
    with pytest.raises(TypeError):
        index.append(lambda e: ["not", "a", "dict"])
    with pytest.raises(TypeError):
        index.append(lambda e: {"payload": object()})
    with pytest.raises(TypeError):
        index.append_many(lambda e: {"seq": 1})

    def edit_history(entries):
        entries[0]["seq"] = 999
        return {"seq": len(entries) + 1}

    assert index.path.read_bytes() == before
    index.append(edit_history)
    assert [e["seq"] for e in index.read()] == [1, 2, 3], "callbacks get a copy"
    with filelock.FileLock(str(index.lock_path), timeout=1):
        pass  # the lock was released after every failure


def test_append_jsonl_keeps_records_whole_after_a_torn_line(tmp_path):
    log = tmp_path / "logs" / "alerts.jsonl"
    append_jsonl(log, {"check": "n_effective_drift", "b": 1.5, "nan": float("nan")})
    with open(log, "ab") as handle:
        handle.write(b'{"check": "torn')  # a writer killed mid-line
    append_jsonl(log, {"check": "train_seed_drift"})
    lines = log.read_text().splitlines()
    assert lines == ['{"b":1.5,"check":"n_effective_drift","nan":"NaN"}', '{"check": "torn',
                     '{"check":"train_seed_drift"}']


# --- atomic writes -----------------------------------------------------------------------------

def test_atomic_writes_content_and_format(tmp_path):
    atomic_write_bytes(tmp_path / "x" / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.txt", "é\nline\n")
    atomic_write_json(tmp_path / "c.json", {"z": 1, "a": [float("inf"), 0.5]})
    assert (tmp_path / "x" / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_bytes() == "é\nline\n".encode()
    assert (tmp_path / "c.json").read_text() == (
        '{\n  "a": [\n    "Infinity",\n    0.5\n  ],\n  "z": 1\n}\n')
    assert _temp_files(tmp_path) == [] and _temp_files(tmp_path / "x") == []


def test_atomic_write_file_modes(tmp_path):
    target = tmp_path / "kept.json"
    target.write_text("{}")
    target.chmod(0o640)
    atomic_write_json(target, {"a": 1})
    assert target.stat().st_mode & 0o777 == 0o640
    fresh = atomic_write_text(tmp_path / "fresh.txt", "x")
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~atomic._read_umask()


@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
@pytest.mark.parametrize("exc", [OSError(5, "Input/output error"), KeyboardInterrupt()])
def test_atomic_write_failure_leaves_no_temp_and_old_content(tmp_path, monkeypatch, failing, exc):
    target = tmp_path / "metadata.json"
    target.write_text('{"old": true}\n')

    def fail(*args, **kwargs):
        raise exc

    if failing == "write":
        monkeypatch.setattr(atomic.tempfile, "NamedTemporaryFile", _failing_tempfile(exc))
    else:
        monkeypatch.setattr(atomic.os, failing, fail)
    expected = ParityStorageError if isinstance(exc, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        atomic_write_json(target, {"new": True})
    monkeypatch.undo()
    if expected is ParityStorageError:
        assert str(target) in str(info.value)
    assert target.read_text() == '{"old": true}\n'
    assert _temp_files(tmp_path) == []


def _failing_tempfile(exc):
    import tempfile

    real = tempfile.NamedTemporaryFile

    def make(*args, **kwargs):
        handle = real(*args, **kwargs)
        handle.write(b"partial")

        def write(data):
            raise exc

        handle.write = write
        return handle

    return make


def test_unencodable_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "m.json", {"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_parent_that_is_a_file_gives_storage_error(tmp_path):
    blocker = tmp_path / "artifacts"
    blocker.write_text("I am a file, not a directory")
    target = blocker / "globals" / "index.json"
    writers = [
        lambda: atomic_write_bytes(target, b"x"),
        lambda: atomic_write_text(target, "x"),
        lambda: atomic_write_json(target, {"a": 1}),
        lambda: JsonIndex(target).append(lambda e: {"seq": 1}),
        lambda: append_jsonl(target, {"a": 1}),
    ]
    for write in writers:
        with pytest.raises(ParityStorageError) as info:
            write()
        assert str(blocker) in str(info.value)
        assert info.value.exit_code == 4
    assert blocker.read_text() == "I am a file, not a directory"


def _write_into_read_only_dir(locked_dir: str) -> None:
    """Both writers must raise ParityStorageError naming the folder (run in a child process)."""
    locked = Path(locked_dir)
    for write in (lambda: atomic_write_text(locked / "f.txt", "x"),
                  lambda: JsonIndex(locked / "i.json").append(lambda e: {"seq": 1})):
        try:
            write()
        except ParityStorageError as exc:
            assert str(locked) in str(exc) and exc.exit_code == 4, exc
        else:
            raise AssertionError("a write into a read-only folder succeeded")


def test_read_only_directory_gives_storage_error(tmp_path):
    locked_dir = tmp_path / "ro"
    locked_dir.mkdir()
    locked_dir.chmod(0o500)
    # root bypasses permission bits through CAP_DAC_OVERRIDE: drop it (util-linux setpriv) so
    # the child sees the folder as a normal user would.
    prefix = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]
              if os.geteuid() == 0 else [])
    code = ("from parity_tests.core.store.test_index_store import _write_into_read_only_dir as w; "
            f"w({str(locked_dir)!r}); print('checked')")
    try:
        done = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                              text=True, check=False, timeout=120,
                              cwd=PROJECT)
    finally:
        locked_dir.chmod(0o700)
    assert done.returncode == 0 and done.stdout.strip() == "checked", done.stderr
    assert sorted(p.name for p in locked_dir.iterdir()) == []


def test_last_is_the_newest_entry_accepted(tmp_path):
    index = JsonIndex(tmp_path / "ledger.json")
    assert index.last(lambda _: True) is None
    for run, seq in (("a", 1), ("b", 2), ("a", 3), ("c", 4)):
        index.append(lambda _entries, run=run, seq=seq: {"run_id": run, "seq": seq})
    assert index.last(lambda entry: entry["run_id"] == "a") == {"run_id": "a", "seq": 3}
    assert index.last(lambda entry: entry["run_id"] != "c")["seq"] == 3
    assert index.last(lambda entry: entry["run_id"] == "z") is None
