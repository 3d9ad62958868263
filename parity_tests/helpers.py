"""Test helpers: run the real `parity` CLI in a subprocess against a private PARITY_HOME."""

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from parity_pipeline.runner import RunOutcome, summarize_run


@dataclass(frozen=True)
class CliRun:
    home: Path
    exit_code: int
    stdout: str
    stderr: str
    outcome: RunOutcome | None


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def run_dir_of(run: CliRun) -> Path:
    return run.home / "artifacts" / "runs" / run.outcome.run_id


def parity_cli(home: Path, *args: str, env: dict | None = None,
               timeout: int = 900) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    environment.update({"PARITY_HOME": str(home), **(env or {})})
    return subprocess.run([sys.executable, "-m", "parity_pipeline.cli", *args],
                          capture_output=True, text=True, env=environment, timeout=timeout,
                          check=False)


def parity_run(home: Path, *args: str, env: dict | None = None) -> CliRun:
    """`parity run ...`; the outcome is read back from the instance the run wrote to."""
    done = parity_cli(home, "run", *args, env=env)
    match = re.search(r"^run_id: (\S+)$", done.stdout, re.MULTILINE)
    outcome = None
    if match:
        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            outcome = summarize_run(instance, match.group(1))
    return CliRun(home, done.returncode, done.stdout, done.stderr, outcome)
