"""Launch the whole graph against the local instance (what ``parity run`` and ``make run`` do).

Inputs are checked before a run is launched, so a bad folder or symbol never leaves a half run.
One worker runs in-process; more use Dagster's multiprocess executor through a reconstructable
job, the same engine the schedule and the UI use.
"""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from parity_pipeline import constants
from parity_pipeline.core import home
from parity_pipeline.core.alerts import validate_webhook_url
from parity_pipeline.core.errors import ParityError, ParityInputError
from parity_pipeline.core.index_store import JsonIndex
from parity_pipeline.core.registry import load_registry
from parity_pipeline.core.sampling import check_symbol_name, discover_symbols, preflight
from parity_pipeline.core.snapshot_store import INDEX_FILES
from parity_pipeline.core.store import ContentStore
from parity_pipeline.defs.common import scope_tags
from parity_pipeline.defs.jobs import PARITY_JOB_NAME, executor_run_config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequestOptions:
    data_dir: str | None = None
    max_rows_per_symbol: int = 2000
    base_seed: int = 42
    symbols: list[str] = field(default_factory=list)
    workers: int = 1
    targets: list[str] = field(default_factory=list)  # empty = every declared target


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
                "targets": options.targets}
    resources: dict = {"settings": {"config": settings}}
    if options.data_dir:
        resources["data_source"] = {"config": {"data_dir": options.data_dir}}
    # one worker: execute_in_process replaces the job's executor, so no executor config
    execution = {} if options.workers == 1 else {"execution":
                                                  executor_run_config(options.workers)}
    # Dagster's console logger at INFO: the stage progress lines, not every engine event.
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
    from parity_pipeline.definitions import data_source  # PARITY_DATA_DIR or data/sample

    data_dir = Path(options.data_dir) if options.data_dir else data_source.path()
    registry = load_registry(data_dir) if data_dir.is_dir() else None
    available = discover_symbols(data_dir, registry.interval if registry else "5m")
    if registry:
        registry.check_targets(options.targets)
    for symbol in options.symbols:
        check_symbol_name(symbol)
        if symbol not in available:
            raise ParityInputError(f"symbol {symbol!r} has no data under {data_dir}; available: "
                                   f"{', '.join(available)}")
    preflight(data_dir, registry, options.max_rows_per_symbol, tuple(options.symbols) or None)
    # A damaged index would fail the run at its last step, after hours of work: check it first.
    for name in sorted(INDEX_FILES.values()):
        JsonIndex(ContentStore(home.artifacts_root()).globals_dir() / name).read()


def parity_job() -> dg.JobDefinition:
    """Module-level so ``dg.reconstructable`` can rebuild it in executor subprocesses."""
    from parity_pipeline.definitions import defs

    return defs.resolve_job_def(PARITY_JOB_NAME)


def execute_pipeline(options: RunRequestOptions,
                     progress: Callable[[str], None] = logger.info) -> RunOutcome:
    validate_options(options)
    home.ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    config = run_config(options)
    tags = scope_tags({"targets": sorted(options.targets)})
    if options.workers == 1:
        result = parity_job().execute_in_process(run_config=config, instance=instance,
                                                 raise_on_error=False, tags=tags)
        run_id = result.run_id
    else:
        with dg.execute_job(dg.reconstructable(parity_job), instance=instance, tags=tags,
                            run_config=config, raise_on_error=False) as result:
            run_id = result.run_id
    outcome = summarize_run(instance, run_id)
    progress(f"alert sensor: {evaluate_alert_sensor(instance)}")
    return outcome


def evaluate_alert_sensor(instance: dg.DagsterInstance) -> str:
    """Tick the alert sensor once, so alerts go out without a daemon (same code, same state)."""
    from parity_pipeline.definitions import artifact_store, defs
    from parity_pipeline.defs.sensors import check_failure_alerts

    context = dg.build_sensor_context(instance=instance, definitions=defs,
                                      resources={"store": artifact_store})
    result = check_failure_alerts(context)
    return result.skip_reason.skip_message if result.skip_reason else "evaluated"


def summarize_run(instance: dg.DagsterInstance, run_id: str) -> RunOutcome:
    run = instance.get_run_by_id(run_id)
    success = run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    checks = tuple(_check_outcomes(instance, run_id))
    failure = _first_failure(instance, run_id)
    failed_error = [c for c in checks if not c.passed and c.severity == "ERROR"]
    exit_code = 0 if success and not failed_error else 1
    if failure and failure[0] in {cls.__name__ for cls in _error_classes()}:
        exit_code = next(cls.exit_code for cls in _error_classes() if cls.__name__ == failure[0])
    n_passed = sum(c.passed for c in checks)
    headline = "FAILURE" if not success else ("CHECKS FAILED" if failed_error else "SUCCESS")
    lines = [f"run {run_id}: {headline}",
             f"checks: {n_passed} passed, {len(checks) - n_passed} failed"]
    lines += [f"  FAILED [{c.severity}] {c.asset}:{c.check}" for c in checks if not c.passed]
    if failure:
        lines.append(f"error: {failure[1]}")
    lines.append(f"artifacts: {ContentStore(home.artifacts_root()).run_view(run_id)}")
    return RunOutcome(run_id=run_id, success=success, checks=checks,
                      failure_message=failure[1] if failure else "", exit_code=exit_code,
                      summary="\n".join(lines))


def _error_classes() -> list[type[ParityError]]:
    from parity_pipeline.core.errors import (
        ArtifactIntegrityError,
        ParityStorageError,
    )

    return [ParityInputError, ArtifactIntegrityError, ParityStorageError]


def _check_outcomes(instance: dg.DagsterInstance, run_id: str):
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        yield CheckOutcome(asset=evaluation.asset_key.to_user_string(),
                           check=evaluation.check_name, passed=evaluation.passed,
                           severity=evaluation.severity.value)


def _first_failure(instance: dg.DagsterInstance, run_id: str) -> tuple[str, str] | None:
    """The error class and message of the first failed step, for a one-paragraph report."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    for record in records:
        error = record.event_log_entry.dagster_event.step_failure_data.error
        while error.cause is not None and error.cls_name not in {
                cls.__name__ for cls in _error_classes()}:
            error = error.cause
        return error.cls_name, error.message.strip()
    return None
