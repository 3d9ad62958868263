"""Where parity keeps its state: one home folder (``PARITY_HOME``) per installation.

``$PARITY_HOME/dagster`` is the Dagster instance (DAGSTER_HOME unless that is set) and
``$PARITY_HOME/artifacts`` the artifact store (``runs/<run_id>/...``, ``globals/...``).
Resolved when called, never at import time, so tests and users can point it anywhere.
"""

import json
import os
from pathlib import Path

from parity_pipeline.core.store.atomic import atomic_write_text

PARITY_HEADER = "# Written by parity."
DAGSTER_YAML_TEMPLATE = f"""\
{PARITY_HEADER} Embedded default: SQLite storage under this folder.
telemetry:
  enabled: false
nux:
  enabled: false
# Dagster's default launcher plus a worker health check: the daemon's run monitoring marks a
# run whose process died (SIGKILL, crash) as failed ("process gone") instead of STARTED forever.
run_launcher:
  module: parity_pipeline.resources.runs
  class: PidCheckingRunLauncher
run_monitoring:
  enabled: true
  poll_interval_seconds: 15
  start_timeout_seconds: 300
  max_resume_run_attempts: 0
# Dagster's console lines below INFO (each step process announcing itself) stay out of the
# terminal and `parity run`'s output; the event log keeps every event.
python_logs:
  python_log_level: INFO
# Steps' stdout/stderr captured where Dagster's default manager puts them, copied by a thread
# instead of tail and watcher processes (resources/compute_logs.py).
compute_logs:
  module: parity_pipeline.resources.compute_logs
  class: TeeComputeLogManager
  config:
    base_dir: {{storage}}
# Dagster's SQLite event log in Dagster's default folder, its database engines kept open
# between events instead of rebuilt for each (resources/event_log.py); runs and schedules are
# Dagster's defaults.
event_log_storage:
  module: parity_pipeline.resources.event_log
  class: PooledSqliteEventLogStorage
  config:
    base_dir: {{event_logs}}
"""


def project_root() -> Path:
    """The checkout this package runs from (editable install), else the working directory."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


def parity_home() -> Path:
    configured = os.environ.get("PARITY_HOME")
    return Path(configured).resolve() if configured else project_root() / ".parity_home"


def artifacts_root() -> Path:
    return parity_home() / "artifacts"


def dagster_home() -> Path:
    configured = os.environ.get("DAGSTER_HOME")
    return Path(configured).resolve() if configured else parity_home() / "dagster"


def ensure_dagster_home() -> Path:
    """Create the instance folder with its dagster.yaml (telemetry and the NUX pop-up off, the
    run monitoring on); set DAGSTER_HOME. Callers serialize first use with ``init_lock``."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    current = config.read_text(encoding="utf-8") if config.exists() else None
    # the capture files and the event log where Dagster's defaults keep them (json quoting is
    # valid YAML)
    wanted = DAGSTER_YAML_TEMPLATE.format(
        storage=json.dumps(str(home / "storage")),
        event_logs=json.dumps(str(home / "history" / "runs")))
    # a file parity wrote for an older version (or another folder) is brought up to date; one a
    # user wrote is kept
    if current is None or (current.startswith(PARITY_HEADER) and current != wanted):
        atomic_write_text(config, wanted)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def init_lock_path() -> Path:
    """The lock held while a process creates or migrates the instance's databases: N processes
    starting together on a fresh home would otherwise each create the schema (SQLite's
    ``alembic_version`` then holds two heads and every later command fails)."""
    return parity_home() / ".init.lock"
