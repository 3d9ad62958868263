"""Test helpers: run the real `parity` CLI in a subprocess against a private PARITY_HOME."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from parity_pipeline.devcluster import free_port
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


def read_alerts(home: Path) -> list[dict]:
    """Every line of ``$PARITY_HOME/artifacts/alerts/alerts.jsonl`` (none yet: empty)."""
    path = home / "artifacts" / "alerts" / "alerts.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_symbol(data_dir: Path, symbol: str, keep: int) -> None:
    """Keep only the newest ``keep`` rows of one 5-minute symbol file (drift on purpose)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = data_dir / "interval=5m" / f"symbol={symbol}" / f"{symbol}.parquet"
    frame = pq.read_table(path).to_pandas().sort_values("ts")
    pq.write_table(pa.Table.from_pandas(frame.tail(keep), preserve_index=False), path,
                   row_group_size=10_000)


def use_home(patch, home: Path) -> None:
    """Point this process at ``home`` (a pytest MonkeyPatch undoes it): its own instance, no
    inherited DAGSTER_HOME, no webhook from the caller's environment."""
    patch.setenv("PARITY_HOME", str(home))
    patch.delenv("DAGSTER_HOME", raising=False)
    patch.delenv("PARITY_ALERT_WEBHOOK_URL", raising=False)


def parity_cli(home: Path, *args: str, env: dict | None = None,
               timeout: int = 900) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    environment.update({"PARITY_HOME": str(home), **(env or {})})
    return subprocess.run([sys.executable, "-m", "parity_pipeline.cli.main", *args],
                          capture_output=True, text=True, env=environment, timeout=timeout,
                          check=False)


# `parity run` on one worker (the in-process executor), for tests of what a run computes and
# checks rather than of the executor: pytest already runs two test files at once on 2 cores,
# so step processes would only add process starts. The multiprocess default is run by the
# determinism, fan-out, fault, PostgreSQL and browser tests.
IN_PROCESS = ("--workers", "1")


def parity_run(home: Path, *args: str, env: dict | None = None) -> CliRun:
    """`parity run ...`; the outcome is read back from the instance the run wrote to."""
    done = parity_cli(home, "run", *args, env=env)
    match = re.search(r"^run_id: (\S+)$", done.stdout, re.MULTILINE)
    outcome = None
    if match:
        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            outcome = summarize_run(instance, match.group(1))
    return CliRun(home, done.returncode, done.stdout, done.stderr, outcome)


PROJECT = Path(__file__).resolve().parents[1]


def process_group_alive(pgid: int, grace_s: float = 15.0) -> bool:
    """True if a process of the group still exists after ``grace_s`` (children may take a
    moment to exit after their parent); signal 0 only checks."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.5)


def _sigint_default():
    """A script's background job starts with SIGINT ignored; dagster dev must get it to stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def dagster_dev(env: dict, log_path: Path):
    """`dagster dev` (webserver + daemon) on a free port, in its own process group, from the
    project folder (its workspace.yaml); yields (process, base URL); stopped by PID: SIGINT,
    then SIGKILL after 60 s."""
    port = free_port()
    with log_path.open("wb") as log:
        dev = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev",
                                "-h", "127.0.0.1", "-p", str(port)], cwd=PROJECT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=_sigint_default)
        try:
            yield dev, f"http://127.0.0.1:{port}"
        finally:
            if dev.poll() is None:
                os.killpg(dev.pid, signal.SIGINT)
                try:
                    dev.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(dev.pid, signal.SIGKILL)
                    dev.wait()


def step_failures(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every failed step's error messages, causes included, as one text."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    texts = []
    for record in records:
        error = record.event_log_entry.dagster_event.step_failure_data.error
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return "\n".join(texts)


NO_MODEL_CHECK = ("trained_models", "models_trained", "WARN")


def failed_checks_besides_no_model(run: CliRun) -> list[tuple[str, str, str]]:
    """The run's failed checks as (asset, check, severity), leaving out the no-model WARN only
    when the run really trained no model (small test windows can rightly route nothing)."""
    failed = [(c.asset, c.check, c.severity) for c in run.outcome.checks if not c.passed]
    trained = (run_dir_of(run) / "trained_models.csv").read_text().strip().splitlines()
    return [f for f in failed if not (f == NO_MODEL_CHECK and len(trained) == 1)]
