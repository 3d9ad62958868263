"""The Dagster instance of ``PARITY_HOME``, opened safely by any number of processes at once.

``DagsterInstance.get()`` creates (or migrates) the SQLite run, event-log and schedule databases
the first time; two processes doing that together leave two ``alembic_version`` heads and a home
no command can open again. Opening under one inter-process lock (``filelock``, a kernel flock
released even when its holder is killed) makes the first opener create them and the rest wait.
"""

import sqlite3

import dagster as dg
import filelock
import sqlalchemy.exc

from parity_pipeline.core.errors import ParityStorageError
from parity_pipeline.core.store import home

INIT_LOCK_TIMEOUT_S = 300
# errors of the instance's databases (SQLite, PostgreSQL): a full or read-only disk, I/O errors
INSTANCE_ERRORS = (sqlalchemy.exc.DBAPIError, sqlite3.Error)


def open_instance() -> dg.DagsterInstance:
    """The instance at DAGSTER_HOME (default ``$PARITY_HOME/dagster``), created if needed."""
    lock_path = home.init_lock_path()
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(lock_path, timeout=INIT_LOCK_TIMEOUT_S):
            home.ensure_dagster_home()
            instance = dg.DagsterInstance.get()
            # touch every storage so each creates its schema while the lock is held
            instance.get_runs(limit=1)
            instance.event_log_storage.get_maximum_record_id()
            if instance.schedule_storage is not None:  # an instance without one has none to make
                instance.schedule_storage.all_instigator_state()
    except (OSError, *INSTANCE_ERRORS) as exc:
        raise instance_error(exc) from exc
    return instance


def instance_error(exc: Exception, consequence: str = "") -> ParityStorageError:
    """One paragraph for an instance that cannot be opened or written."""
    cause = getattr(exc, "orig", None) or getattr(exc, "strerror", None) or exc
    return ParityStorageError(
        f"the Dagster instance at {home.dagster_home()} cannot be written or read ({cause}): "
        f"free space on its disk or make that folder writable (or set PARITY_HOME to another "
        f"folder), then run again{consequence}")
