"""Run status beyond Dagster's own: which process runs a run, whether it is gone, and which runs
are *complete* (their outputs may be read as history).

A run killed with SIGKILL (or a machine that lost power) never writes its failure event, so
Dagster shows it STARTED forever. Two ways mark it failed, both with the same message:

- the daemon's run monitoring (``run_monitoring`` in the instance's dagster.yaml), through
  ``PidCheckingRunLauncher``: Dagster's default launcher plus a worker health check, so runs
  launched from the UI, the schedule or a sensor are marked in the UI within a poll interval;
- ``mark_dead_runs``, called by ``parity runs``, ``parity verify`` and ``parity diff``, for runs
  no daemon watches (``parity run`` executes in its own process).

A process is identified by host, pid and the kernel's start time of that pid (``/proc``), so a
pid reused by another program is not taken for the run's worker.

*Complete* runs: SUCCESS, or FAILURE only because ERROR checks failed after every selected asset
was materialized (the run gate in ``defs.gate`` tags those). Global index and ledger entries of
any other run (killed, crashed, disk full) are ignored by every reader.
"""

import os
import re
import socket
from pathlib import Path

import dagster as dg

# The run-launcher extension API: Dagster exports these types only from its launcher module
# (its own launchers, dagster-docker and dagster-k8s import them from there).
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

from parity_pipeline.core.errors import ArtifactIntegrityError, ParityInputError, ParityStorageError

WORKER_TAG = "parity/worker"  # "<host>:<pid>:<start ticks>" of the process executing the run
GATE_TAG = "parity/checks"  # "failed": the run gate failed a run whose outputs are complete
GATE_FAILED = "failed"
PARITY_ERRORS = {cls.__name__: cls.exit_code for cls in (
    ParityInputError, ArtifactIntegrityError, ParityStorageError)}
STARTED_PROCESS = re.compile(r"Started process for run \(pid: (\d+)\)")
ACTIVE = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.CANCELING)


def _start_ticks(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), '' when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name (field 2) may hold spaces; the fields after its ')' are fixed
    return stat.rsplit(")", 1)[1].split()[19]


def worker_tag(pid: int | None = None) -> dict[str, str]:
    """The tag a process puts on a run it executes itself (``parity run``)."""
    pid = os.getpid() if pid is None else pid
    return {WORKER_TAG: f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"}


def _launched_worker(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """host:pid: of a run worker started by a run launcher (its 'Started process' event)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT,
                                           limit=20).records
    for record in records:
        entry = record.event_log_entry
        found = STARTED_PROCESS.search(entry.message or entry.user_message or "")
        if found:
            return f"{socket.gethostname()}:{found.group(1)}:"
    return None


def process_gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why ``run`` can no longer finish, or None while its process may still be running."""
    # a run `parity run` created (tagged with its process) can die before it is marked started:
    # the instance's disk filled, or the process was killed, between the two writes
    created_by_worker = run.status == dg.DagsterRunStatus.NOT_STARTED and WORKER_TAG in run.tags
    if run.status not in ACTIVE and not created_by_worker:
        return None
    worker = run.tags.get(WORKER_TAG) or _launched_worker(instance, run.run_id)
    if not worker:
        return None  # not started by a process we can see (yet): leave it to run monitoring
    host, pid, ticks = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return None  # another machine's process: only its own host can tell
    current = _start_ticks(int(pid))
    if current and (not ticks or current == ticks):
        return None
    return (f"process gone: the process executing this run (pid {pid} on {host}) no longer "
            "exists (killed, crashed or the machine restarted); nothing it wrote is published")


def mark_dead_runs(instance: dg.DagsterInstance, limit: int = 100) -> list[str]:
    """Mark every run of this host whose process is gone as failed; return their ids."""
    marked = []
    statuses = [*ACTIVE, dg.DagsterRunStatus.NOT_STARTED]
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=statuses), limit=limit):
        reason = process_gone(instance, run)
        if reason:
            instance.report_run_failed(run, reason)
            marked.append(run.run_id)
    return marked


def is_complete(run: dg.DagsterRun | None) -> bool:
    """Outputs of this run may be read as history (drift checks, output parity, defaults)."""
    if run is None:
        return False
    return run.status == dg.DagsterRunStatus.SUCCESS or (
        run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(GATE_TAG) == GATE_FAILED)


class CompleteRuns:
    """``run_id in complete_runs``: a cached status lookup for filtering index entries."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self._instance = instance
        self._known: dict[str, bool] = {}

    def __contains__(self, run_id: str) -> bool:
        if run_id not in self._known:
            self._known[run_id] = is_complete(self._instance.get_run_by_id(run_id))
        return self._known[run_id]


class PidCheckingRunLauncher(dg.DefaultRunLauncher):
    """Dagster's default launcher with a run-worker health check, so the daemon's run
    monitoring marks a run whose worker process died as failed ("process gone")."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        reason = process_gone(self._instance, run)
        if reason:
            return CheckRunHealthResult(WorkerStatus.FAILED, reason)
        return CheckRunHealthResult(WorkerStatus.RUNNING)


def first_failure(instance: dg.DagsterInstance, run_id: str) -> tuple[str | None, str] | None:
    """The parity error class (else the innermost cause; None when the error recorded no class)
    and message of the run's first failed step, else of the run failure itself: what a
    one-paragraph report says. A step failure recorded without an error falls back to the run
    failure."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE,
                                           limit=1).records
    for record in records:
        error = record.event_log_entry.get_dagster_event().step_failure_data.error
        if error is None:
            break
        while error.cause is not None and error.cls_name not in PARITY_ERRORS:
            error = error.cause
        return error.cls_name, error.message.strip()
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE,
                                           limit=1).records
    for record in records:
        return "RunFailure", (record.event_log_entry.get_dagster_event().message or "").strip()
    return None
