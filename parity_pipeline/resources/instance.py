"""The Dagster instance of ``PARITY_HOME``, opened safely by any number of processes at once.

``DagsterInstance.get()`` creates (or migrates) the SQLite run, event-log and schedule databases
the first time; two processes doing that together leave two ``alembic_version`` heads and a home
no command can open again. Opening under one inter-process lock (``filelock``, a kernel flock
released even when its holder is killed) makes the first opener create them and the rest wait.
"""

import dagster as dg
import filelock

from parity_pipeline.core import home
from parity_pipeline.core.errors import ParityStorageError

INIT_LOCK_TIMEOUT_S = 300


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
            instance.schedule_storage.all_instigator_state()
    except OSError as exc:
        raise ParityStorageError(
            f"cannot create or open the Dagster instance under {home.dagster_home()}: "
            f"{exc.strerror or exc}; make that folder writable, free space on its disk, or set "
            "PARITY_HOME to a writable folder") from exc
    return instance
