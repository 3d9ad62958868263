"""The event log storage that keeps its SQLite engines (resources/event_log.py): one engine per
database file and process instead of one per event, and no event lost where a kept connection
could go stale (another process reading, the file deleted or replaced, a fork, many runs)."""

import multiprocessing
import os
import time
from unittest import mock

import sqlalchemy as db
from dagster._core.events.log import EventLogEntry

from parity_pipeline.resources import event_log
from parity_pipeline.resources.event_log import (
    MAX_OPEN_DATABASES,
    WAL_LIMIT_BYTES,
    PooledSqliteEventLogStorage,
)


def message(run_id: str, text: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=20, user_message=text, run_id=run_id,
                         timestamp=time.time(), step_key="step", job_name="job",
                         dagster_event=None)


def messages(base_dir, run_id: str) -> list[str]:
    """What a fresh storage (as another process would open it) reads back."""
    reader = PooledSqliteEventLogStorage(str(base_dir))
    try:
        return [entry.user_message for entry in reader.get_logs_for_run(run_id)]
    finally:
        reader.dispose()


def test_one_engine_per_database_not_per_event(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    with mock.patch.object(event_log.db, "create_engine", wraps=db.create_engine) as created:
        for number in range(20):
            storage.store_event(message("run-a", f"event {number}"))
        for number in range(5):
            storage.store_event(message("run-b", f"event {number}"))
    assert created.call_count == 2  # Dagster's own storage: one per event (25)
    assert messages(tmp_path, "run-a") == [f"event {number}" for number in range(20)]
    assert messages(tmp_path, "run-b") == [f"event {number}" for number in range(5)]
    storage.dispose()


def test_each_event_is_visible_to_another_reader_as_soon_as_it_is_stored(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    for number in range(3):
        storage.store_event(message("run-a", f"event {number}"))
        # the writer's connection stays open; a reader opening the file sees the commit
        assert messages(tmp_path, "run-a")[-1] == f"event {number}"
    storage.dispose()


def test_a_deleted_database_is_recreated_not_written_through_a_stale_connection(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    storage.store_event(message("run-a", "before"))
    other = PooledSqliteEventLogStorage(str(tmp_path))
    other.wipe()  # another process deletes the run's database file
    other.dispose()
    assert not (tmp_path / "run-a.db").exists()
    storage.store_event(message("run-a", "after"))
    assert messages(tmp_path, "run-a") == ["after"]
    storage.dispose()


def _store_in_child(report) -> None:
    storage = _INHERITED["storage"]
    storage.store_event(message("run-a", "from the child"))
    # SQLite's rule: a connection must not be used across fork (undefined, may corrupt)
    report.send(id(storage._engines["run-a"][0]) == _INHERITED["parent engine"])
    os._exit(0)


_INHERITED: dict = {}


def test_a_forked_child_uses_engines_of_its_own_and_the_parent_keeps_writing(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    storage.store_event(message("run-a", "parent before"))
    _INHERITED["storage"] = storage
    _INHERITED["parent engine"] = id(storage._engines["run-a"][0])
    fork = multiprocessing.get_context("fork")
    receive, report = fork.Pipe(duplex=False)
    child = fork.Process(target=_store_in_child, args=(report,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert receive.recv() is False  # the child built its own engine
    storage.store_event(message("run-a", "parent after"))
    assert messages(tmp_path, "run-a") == ["parent before", "from the child", "parent after"]
    storage.dispose()


def test_at_most_a_bounded_number_of_databases_stay_open(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    runs = [f"run-{number}" for number in range(MAX_OPEN_DATABASES + 4)]
    for run_id in runs:
        storage.store_event(message(run_id, "hello"))
    # the run shards and the index shard share the bound
    assert len(storage._engines) == MAX_OPEN_DATABASES
    assert all(messages(tmp_path, run_id) == ["hello"] for run_id in runs)
    storage.dispose()


def test_an_instance_written_with_dagsters_default_storage_reads_the_same_events(tmp_path,
                                                                                  monkeypatch):
    # a home from before this storage: Dagster's defaults, then parity's dagster.yaml; the same
    # files under the same folders, so its runs and events are all still there
    import dagster as dg

    from parity_pipeline.core.store import home

    monkeypatch.setenv("PARITY_HOME", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "dagster").mkdir()
    default = dg.DagsterInstance.from_config(str(tmp_path / "dagster"))
    default.run_storage.add_run(dg.DagsterRun(job_name="job", run_id="run-a"))
    default.store_event(message("run-a", "stored by Dagster's storage"))
    default.dispose()
    home.ensure_dagster_home()
    ours = dg.DagsterInstance.from_config(str(tmp_path / "dagster"))
    try:
        assert isinstance(ours.event_log_storage, PooledSqliteEventLogStorage)
        assert [run.run_id for run in ours.get_runs()] == ["run-a"]
        assert [entry.user_message for entry in ours.all_logs("run-a")] == [
            "stored by Dagster's storage"]
    finally:
        ours.dispose()


def test_the_write_ahead_log_stays_bounded_while_the_connection_is_kept(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    wal = tmp_path / "run-a.db-wal"
    largest = 0
    for number in range(1500):  # about 5 MiB of events: past SQLite's default 4 MiB checkpoint
        storage.store_event(message("run-a", f"{number:04d} " + "x" * 3000))
        largest = max(largest, wal.stat().st_size)
    # the checkpoint runs at the limit, after the commit that crosses it (one event's pages)
    assert largest <= WAL_LIMIT_BYTES + 64 * 1024
    assert len(messages(tmp_path, "run-a")) == 1500
    storage.dispose()
    assert not wal.exists()  # closing the last connection folds the log in, as Dagster's do
