"""The fork server a run's forked steps start from, startable before anything heavy is imported.

Each forked step (``defs.executor``) is a process forked from a server that has already imported
the code location: a spawned step (Dagster's default start method) spends ~3.5 s importing
dagster, LightGBM, scikit-learn and the definitions. The server also imports the SQLite
instance storage (and through it sqlalchemy and alembic), which every step opens before it
starts: without it each step spent ~0.6 s importing them (measured on 2 cores, 2026-12-04).

The server's own imports take ~2.5 s. A run's first forked step waits for them, so whoever
knows a run will fork steps starts the server as early as it can, and the imports overlap its
own: ``parity run --workers N`` before it imports the runner, the executor at the start of a run
launched from the UI or the daemon. This module imports nothing of Dagster's, so starting the
server costs its caller nothing.

A forked step reads parity's variables (``PARITY_HOME``, ``PARITY_DATA_DIR``, the alert
webhook's) from the server's environment, not from its caller's: a process that runs with
other values than its server was started with (a notebook running in one home and then in
another, a benchmark) gets a new server, or the second run's steps would write into the first
home or read the first dataset's registry.
"""

import contextlib
import multiprocessing
import os
import signal
from multiprocessing import forkserver
from typing import Any

from parity_pipeline import constants

INSTANCE_STORAGE_MODULES = ["dagster._core.storage.runs.sqlite",
                            "dagster._core.storage.event_log.sqlite",
                            "dagster._core.storage.schedules.sqlite"]
# the executor's own module first, as Dagster sets it (user code cannot patch it before)
PRELOAD_MODULES = ["dagster._core.executor.multiprocess", "parity_pipeline.definitions",
                   *INSTANCE_STORAGE_MODULES]


# parity's environment (``parity_environment``) of the server this process started (empty: none)
_served: list[dict[str, str]] = []


def parity_environment() -> dict[str, str]:
    """The ``PARITY_*`` variables a forked step reads, as it resolves them: unset, empty and the
    dataset's default are alike (loading the definitions sets those defaults in every process)."""
    return {name: value for name, value in sorted(os.environ.items())
            if name.startswith("PARITY_") and value
            and (name, value) != ("PARITY_DATA_DIR", constants.DEFAULT_DATA_DIR)}


def start_step_server() -> None:
    """Start the fork server (importing ``PRELOAD_MODULES``) without waiting for it; the
    executor then finds it running. Starting it again with the same ``parity_environment``
    does nothing; with another, the server is stopped and started again."""
    wanted = parity_environment()
    server: Any = forkserver._forkserver  # its private parts: typeshed lists none
    if _served and _served[0] != wanted and server._forkserver_pid is not None:
        # no run of this process uses it now (a run returns when its steps have ended); killed,
        # not asked to stop, since a server still importing would only stop once done (~2.5 s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(server._forkserver_pid, signal.SIGKILL)
        server._stop()  # private, but the only way to restart it (CPython 3.8 to 3.13)
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD_MODULES)
    forkserver.ensure_running()
    _served[:] = [wanted]
