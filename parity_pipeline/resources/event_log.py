"""Dagster's SQLite event log, with its database engines kept open instead of rebuilt per event.

``SqliteEventLogStorage`` builds a new SQLAlchemy engine for every connection (``NullPool``)
and disposes it afterwards: each event costs an engine, a first-connect dialect set-up, an SQL
compile (the compiled-statement cache lives on the engine, so it never hits), and a close that,
as the database's last connection, checkpoints the write-ahead log. A run writes about 216
events in the run process and more in its step processes; measured 2026-12-05 on the default
sample (``store_event`` timed inside one in-process run, both sides beside a running test
suite, so slower than on a quiet machine), it took 2.8 s of wall and 1.3 s of CPU per run this
way, 1.3 s and 0.55 s with the engines kept (see docs/performance.md).

Kept here: one engine per database file (the run's shard, the index shard) and process, with
SQLAlchemy's default pool, so the connection stays open between events. Dagster's own lock
still serialises the storage's connections; everything else (schema, queries, watchers, wipe)
is Dagster's. Three cases where a kept connection would be wrong are handled:

- **fork**: a connection must not cross ``fork`` (SQLite's rule); a child process drops the
  engines it inherited, unused and unclosed (closing them could checkpoint the parent's log);
- **a database file replaced or deleted** (``dagster instance wipe``, a deleted run, a restored
  backup): the file's identity is checked on every connection, and a changed file gets a new
  engine, so no event is written to a file no longer at the path;
- **many runs read** (the webserver): at most ``MAX_OPEN_DATABASES`` engines stay open, the
  least recently used one is closed;

and each database's write-ahead log is kept under ``WAL_LIMIT_BYTES`` (Dagster's closes remove
it after every event).

The durability is Dagster's: the same journal mode (WAL) and synchronous setting; each event
is committed before ``store_event`` returns.
"""

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData

MAX_OPEN_DATABASES = 8


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` that keeps one engine per database file and process."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, tuple[db.Engine, tuple[int, int]]] = OrderedDict()
        self._engines_pid = os.getpid()
        self._inherited: list[OrderedDict] = []  # kept referenced, never closed (see fork above)
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Mapping[str, Any]) -> "PooledSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _own_engines(self) -> None:
        """Engines inherited through ``fork`` set aside (kept referenced: never used or closed)."""
        if self._engines_pid != os.getpid():
            self._inherited.append(self._engines)
            self._engines, self._engines_pid = OrderedDict(), os.getpid()

    def _engine(self, shard: str) -> db.Engine:
        self._own_engines()
        path = self.path_for_shard(shard)
        identity = _file_identity(path)
        kept = self._engines.pop(shard, None)
        if kept is not None and kept[1] != identity:
            kept[0].dispose()  # the file at the path changed: its connections point elsewhere
            kept = None
            self._initialized_dbs.discard(shard)
        if kept is None:
            engine = db.create_engine(self.conn_string_for_shard(shard),
                                      connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            db.event.listen(engine, "connect", _bound_write_ahead_log)
            if identity == _MISSING:  # a new database: its identity once the first connect made it
                with engine.connect():
                    pass
                identity = _file_identity(path)
            kept = (engine, identity)
        self._engines[shard] = kept
        while len(self._engines) > MAX_OPEN_DATABASES:
            _, (oldest, _) = self._engines.popitem(last=False)
            oldest.dispose()
        return kept[0]

    def wipe(self) -> None:
        with self._db_lock:
            self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        with self._db_lock:
            self._dispose_engines()
        super().dispose()

    def _dispose_engines(self) -> None:
        self._own_engines()
        for engine, _ in self._engines.values():
            engine.dispose()
        self._engines.clear()


_MISSING = (0, 0)
# Dagster's connections close after each use, and the last close folds the write-ahead log into
# the database and deletes it; a kept connection lets it grow to SQLite's default checkpoint of
# 1000 pages (4 MiB) per database and stay that size. Bounded here to 1 MiB.
WAL_LIMIT_BYTES = 1 << 20


def _bound_write_ahead_log(dbapi_connection: Any, _record: Any) -> None:
    page_size = dbapi_connection.execute("PRAGMA page_size").fetchone()[0]
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={WAL_LIMIT_BYTES // page_size}")
    dbapi_connection.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")


def _file_identity(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return _MISSING
    return stat.st_dev, stat.st_ino
