"""Launch the whole graph against the local instance (what ``parity run`` and ``make run`` do).

Inputs are checked before a run is launched, so a bad folder or symbol never leaves a half run.
One worker runs in-process; more use Dagster's multiprocess executor through a reconstructable
job, the same engine the schedule and the UI use.
"""

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from parity_pipeline import constants
from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.sampling import check_symbol_name, discover_symbols, preflight
from parity_pipeline.core.errors import ParityInputError, ParityStorageError
from parity_pipeline.core.repro.alerts import validate_webhook_url
from parity_pipeline.core.repro.snapshot_index import INDEX_FILES
from parity_pipeline.core.stages.ranking import RankingConfig, check_history
from parity_pipeline.core.store import home
from parity_pipeline.core.store.content import ContentStore
from parity_pipeline.core.store.indexes import JsonIndex
from parity_pipeline.defs.common import scope_tags
from parity_pipeline.defs.executor import executor_run_config
from parity_pipeline.defs.jobs import PARITY_JOB_NAME
from parity_pipeline.defs.step_server import start_step_server
from parity_pipeline.resources.data_source import ParquetDataSource, configured_data_dir
from parity_pipeline.resources.events import check_evaluation
from parity_pipeline.resources.instance import INSTANCE_ERRORS, instance_error, open_instance
from parity_pipeline.resources.runs import (
    GATE_FAILED,
    GATE_TAG,
    PARITY_ERRORS,
    WORKER_TAG,
    first_failure,
    worker_tag,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequestOptions:
    data_dir: str | None = None
    max_rows_per_symbol: int = constants.MAX_ROWS_PER_SYMBOL
    base_seed: int = constants.BASE_SEED
    symbols: list[str] = field(default_factory=list)
    workers: int = 1
    targets: list[str] = field(default_factory=list)  # empty = every declared target
    # reuse verified fits of earlier runs (core.store.reuse); the CLI turns it on
    reuse: bool = False


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    severity: str


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    checks: tuple[CheckOutcome, ...]
    failure_message: str
    exit_code: int
    summary: str


def run_config(options: RunRequestOptions) -> dict:
    settings = {"base_seed": options.base_seed,
                "max_rows_per_symbol": options.max_rows_per_symbol, "symbols": options.symbols,
                "targets": options.targets, "reuse": options.reuse}
    resources: dict = {"settings": {"config": settings}}
    if options.data_dir:
        resources["data_source"] = {"config": {"data_dir": options.data_dir}}
    # one worker: execute_in_process replaces the job's executor, so no executor config
    execution = {} if options.workers == 1 else {"execution":
                                                  executor_run_config(options.workers)}
    # the console logger (defs.console) at INFO: the stage progress lines, not every engine event
    loggers = {"console": {"config": {"log_level": "INFO"}}}
    return {"resources": resources, **execution, "loggers": loggers}


def validate_options(options: RunRequestOptions) -> None:
    """Fail before launching: the folder, registry, symbol files, the limit and the alert
    webhook must make sense, so bad input never starts a run or touches an index."""
    if options.max_rows_per_symbol <= 0:
        raise ParityInputError(f"--max-rows-per-symbol must be a positive integer, got "
                               f"{options.max_rows_per_symbol}")
    if options.workers < 1:
        raise ParityInputError(f"--workers must be >= 1, got {options.workers}")
    webhook = os.environ.get(constants.ALERT_WEBHOOK_ENV)
    if webhook:
        validate_webhook_url(webhook)
    data_dir = (Path(options.data_dir) if options.data_dir else
                ParquetDataSource(data_dir=configured_data_dir()).path())
    if not data_dir.is_dir():  # a file or no folder: discover_symbols says what to pass instead
        discover_symbols(data_dir, constants.DEFAULT_INTERVAL)
    registry = load_registry(data_dir)
    available = discover_symbols(data_dir, registry.interval)
    registry.check_targets(options.targets)
    for symbol in options.symbols:
        check_symbol_name(symbol)
        if symbol not in available:
            raise ParityInputError(f"symbol {symbol!r} has no data under {data_dir}; available: "
                                   f"{', '.join(available)}")
    windows = preflight(data_dir, registry, options.max_rows_per_symbol,
                        tuple(options.symbols) or None)
    check_history(windows, registry, RankingConfig(), options.max_rows_per_symbol)
    require_writable(home.artifacts_root(), "the artifact store")
    require_writable(home.dagster_home(), "the Dagster instance folder")
    # A damaged index would fail the run at its last step, after hours of work: check it first.
    for name in sorted(INDEX_FILES.values()):
        JsonIndex(ContentStore(home.artifacts_root()).globals_dir() / name).read()


def require_writable(folder: Path, what: str) -> None:
    """Refuse before launching when ``folder`` cannot take a file or its disk is (nearly)
    full: a run that fails at its first write would leave a FAILURE run and nothing else."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise ParityStorageError(
            f"{what} {folder} is not writable ({exc.strerror or exc}): make it writable or set "
            "PARITY_HOME to a writable folder; nothing was run") from exc
    minimum = int(os.environ.get(constants.MIN_FREE_MB_ENV, constants.MIN_FREE_MB)) * 2**20
    if free < minimum:
        raise ParityStorageError(
            f"{what} {folder} has {free / 2**20:.1f} MiB free, less than the "
            f"{minimum / 2**20:.0f} MiB a run needs ({constants.MIN_FREE_MB_ENV}): free space "
            "on that disk or set PARITY_HOME to another; nothing was run")


def parity_job() -> dg.JobDefinition:
    """Module-level so ``dg.reconstructable`` can rebuild it in executor subprocesses."""
    from parity_pipeline.definitions import defs

    return defs.resolve_job_def(PARITY_JOB_NAME)


def execute_pipeline(options: RunRequestOptions,
                     progress: Callable[[str], None] = logger.info) -> RunOutcome:
    if options.workers > 1:
        start_step_server()  # its imports overlap the input checks
    validate_options(options)
    instance = open_instance()
    config = run_config(options)
    # who executes the run: if this process dies, `parity runs` marks the run "process gone"
    tags = {**scope_tags({"targets": sorted(options.targets)}), **worker_tag()}
    try:
        if options.workers == 1:
            run_id = parity_job().execute_in_process(run_config=config, instance=instance,
                                                     raise_on_error=False, tags=tags).run_id
        else:
            with dg.execute_job(dg.reconstructable(parity_job), instance=instance, tags=tags,
                                run_config=config, raise_on_error=False) as result:
                run_id = result.run_id
    except INSTANCE_ERRORS as exc:
        raise instance_storage_error(instance, exc) from exc
    outcome = summarize_run(instance, run_id)
    progress(f"alerts: {deliver_alerts_for(instance, run_id)}")
    return outcome


def instance_storage_error(instance: dg.DagsterInstance, exc: Exception) -> ParityStorageError:
    """The instance could not record the run: mark the run failed now if the instance still
    takes a write, else the next `parity runs` does (its process is gone by then)."""
    marked = "the run will be marked failed (process gone) by the next `parity runs`"
    with contextlib.suppress(*INSTANCE_ERRORS, OSError):
        mine = worker_tag()[WORKER_TAG]
        for run in instance.get_runs(filters=dg.RunsFilter(tags={WORKER_TAG: mine}), limit=1):
            instance.report_run_failed(run, f"the Dagster instance could not be written: "
                                            f"{getattr(exc, 'orig', exc)}")
            marked = f"run {run.run_id} is marked failed"
    return instance_error(exc, f"; {marked}; its outputs are not published")


def deliver_alerts_for(instance: dg.DagsterInstance, run_id: str) -> str:
    """Deliver this run's alerts now, so no daemon is needed (the sensor's job and run keys)."""
    from parity_pipeline.definitions import defs
    from parity_pipeline.defs.sensors import deliver_run_alerts

    results = deliver_run_alerts(instance, defs, run_id)
    if not results:
        return "none"
    failed = [alert.key for alert, ok in results if not ok]
    return (f"{len(results) - len(failed)} of {len(results)} delivered to "
            f"{ContentStore(home.artifacts_root()).alerts_dir()}"
            + (f"; not delivered: {', '.join(failed)} (see `parity runs`)" if failed else ""))


def summarize_run(instance: dg.DagsterInstance, run_id: str) -> RunOutcome:
    run = instance.get_run_by_id(run_id)
    success = run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    gated = run is not None and run.tags.get(GATE_TAG) == GATE_FAILED
    checks = tuple(_check_outcomes(instance, run_id))
    failure = None if success or gated else first_failure(instance, run_id)
    failed_error = [c for c in checks if not c.passed and c.severity == "ERROR"]
    exit_code = 0 if success and not failed_error else 1
    if failure and failure[0] in PARITY_ERRORS:
        exit_code = PARITY_ERRORS[failure[0]]
    n_passed = sum(c.passed for c in checks)
    headline = ("CHECKS FAILED" if gated or (success and failed_error)
                else "SUCCESS" if success else "FAILURE")
    lines = [f"run {run_id}: {headline}",
             f"checks: {n_passed} passed, {len(checks) - n_passed} failed"]
    lines += [f"  FAILED [{c.severity}] {c.asset}:{c.check}" for c in checks if not c.passed]
    if failure:
        lines.append(f"error: {failure[1]}")
    lines.append(f"artifacts: {ContentStore(home.artifacts_root()).run_view(run_id)}")
    return RunOutcome(run_id=run_id, success=success, checks=checks,
                      failure_message=failure[1] if failure else "", exit_code=exit_code,
                      summary="\n".join(lines))


def _check_outcomes(instance: dg.DagsterInstance, run_id: str) -> Iterator[CheckOutcome]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    for record in records:
        evaluation = check_evaluation(record.event_log_entry)
        yield CheckOutcome(asset=evaluation.asset_key.to_user_string(),
                           check=evaluation.check_name, passed=evaluation.passed,
                           severity=evaluation.severity.value)
