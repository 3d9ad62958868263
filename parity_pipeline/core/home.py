"""Where parity keeps its state: one home folder (``PARITY_HOME``) per installation.

``$PARITY_HOME/dagster`` is the Dagster instance (DAGSTER_HOME unless that is set) and
``$PARITY_HOME/artifacts`` the artifact store (``runs/<run_id>/...``, ``globals/...``).
Resolved when called, never at import time, so tests and users can point it anywhere.
"""

import os
from pathlib import Path

DAGSTER_YAML = """\
# Written by parity. Embedded default: SQLite storage under this folder.
telemetry:
  enabled: false
nux:
  enabled: false
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
    """Create the instance folder with telemetry and the NUX pop-up disabled; set DAGSTER_HOME."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home
