"""The run gate: a run whose ERROR checks failed ends FAILURE (red in the runs list).

Checks that must stop the graph are blocking (a wrong sample never reaches training). Others,
such as ``n_effective_drift`` and ``output_parity``, let the run finish so its outputs can be
compared (`parity diff`); the gate then fails the run's last step *after* that step's output and
checks are recorded, and tags the run ``parity/checks=failed``. Such a run is *complete*
(``resources.runs.is_complete``): its snapshots are history and `parity diff` takes it by
default; a run that failed any other way is not.
"""

from collections.abc import Iterable, Iterator

import dagster as dg

from parity_pipeline.defs.common import StepContext
from parity_pipeline.resources.events import check_evaluation
from parity_pipeline.resources.runs import GATE_FAILED, GATE_TAG

CHAIN = ("sampled_data", "ranked_targets", "selected_features", "trained_models", "snapshots")


def gated(context: StepContext, asset_name: str, events: Iterable) -> Iterator:
    """Pass an asset's events through; if it is the last asset this run executes, fail the
    step when any ERROR check of the run failed."""
    yield from events
    if asset_name != _last_executed_asset(context.run):
        return
    failed = failed_error_checks(context.instance, context.run.run_id)
    if failed:
        context.instance.add_run_tags(context.run.run_id, {GATE_TAG: GATE_FAILED})
        raise dg.Failure(
            description=f"ERROR checks failed in this run: {', '.join(failed)}. Every output "
                        "was written; see the check results and alerts, and compare with the "
                        "previous run: parity diff", allow_retries=False)


def _last_executed_asset(run: dg.DagsterRun) -> str:
    selected = ({key.to_user_string() for key in run.asset_selection}
                if run.asset_selection else set(CHAIN))
    if run.step_keys_to_execute is not None:  # a re-execution or a step selection
        selected = {asset for asset in selected if any(
            step == asset or step.startswith(asset + ".") for step in run.step_keys_to_execute)}
    return max(selected, key=CHAIN.index, default="")


def failed_error_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    failed = set()
    for record in records:
        evaluation = check_evaluation(record.event_log_entry)
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.add(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return sorted(failed)
