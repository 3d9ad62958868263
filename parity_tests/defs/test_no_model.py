"""A run that routes no target: it ends with the WARN check ``trained_models:models_trained``
failed (naming each blocked view and why) and a console line saying no model was trained, exits
0 (no ERROR check failed), and every CSV it writes keeps its header."""

import pandas as pd
import pytest

from parity_pipeline.core.repro import checks
from parity_pipeline.core.stages.ranking import TABLE_COLUMNS
from parity_pipeline.core.stages.training import TRAINING_TABLE_COLUMNS
from parity_tests.helpers import IN_PROCESS, parity_run, run_dir_of

PLACEBO = "fwd_placebo_60m"  # pure noise (ground_truth.json): ranking blocks both views


@pytest.fixture(scope="module")
def placebo_run(small_dataset, tmp_path_factory):
    """A partial run of the placebo target alone: nothing to route, so nothing to train."""
    return parity_run(tmp_path_factory.mktemp("no_model") / "home", "--data",
                      str(small_dataset), "--targets", PLACEBO, *IN_PROCESS)


@pytest.mark.slow
def test_no_routed_target_fails_the_warn_check_and_says_so(placebo_run):
    run = placebo_run
    assert run.outcome is not None and run.exit_code == 0, run.stdout + run.stderr
    ranking = pd.read_csv(run_dir_of(run) / "ranked_targets.csv")
    assert set(ranking["route"]) == {"BLOCKED"}, "the premise: the placebo is not routed"
    failed = [(c.asset, c.check, c.severity) for c in run.outcome.checks if not c.passed]
    assert failed == [("trained_models", "models_trained", "WARN")]
    assert "FAILED [WARN] trained_models:models_trained" in run.stdout
    console = run.stdout + run.stderr
    assert (f"check trained_models.models_trained failed: no model was trained: ranking blocked "
            f"every target ({PLACEBO} CROSS_SECTIONAL: ") in console


@pytest.mark.slow
def test_every_csv_of_the_run_keeps_its_header(placebo_run):
    run_dir = run_dir_of(placebo_run)
    csvs = {path.name: path.read_text().splitlines() for path in run_dir.glob("*.csv")}
    assert set(csvs) == {"ranked_targets.csv", "selected_features.csv", "trained_models.csv"}
    assert csvs["trained_models.csv"] == [",".join(TRAINING_TABLE_COLUMNS)]
    assert csvs["selected_features.csv"][0].startswith("target,view,feature,rank")
    assert len(csvs["selected_features.csv"]) == 1
    assert csvs["ranked_targets.csv"][0] == ",".join(TABLE_COLUMNS)


# --- the verdict -------------------------------------------------------------------------------

def _row(target: str, view: str, route: str, reasons: str = "") -> dict:
    return {"target": target, "view": view, "route": route, "reasons": reasons}


def test_a_trained_model_passes_with_the_count():
    verdict = checks.models_trained(12, [_row("a", "CROSS_SECTIONAL", "BOTH")])
    assert verdict.passed and verdict.severity == checks.WARN
    assert verdict.metadata["observed"] == 12 and verdict.summary == "12 models trained"


def test_no_model_names_each_blocked_view_and_its_first_reason():
    verdict = checks.models_trained(0, [
        _row("a", "CROSS_SECTIONAL", "BLOCKED", "skill 0.0100 < min_skill 0.02; t_stat 1.0 < 2"),
        _row("a", "SYMBOL_SPECIFIC", "BLOCKED", "too few rows: 12 non-null < min_rows 300")])
    assert not verdict.passed and verdict.severity == checks.WARN
    assert verdict.summary.startswith(
        "no model was trained: ranking blocked every target (a CROSS_SECTIONAL: skill 0.0100 < "
        "min_skill 0.02; a SYMBOL_SPECIFIC: too few rows: 12 non-null < min_rows 300)")
    assert [b["reason"] for b in verdict.metadata["blocked"]] == [
        "skill 0.0100 < min_skill 0.02", "too few rows: 12 non-null < min_rows 300"]


def test_a_long_list_is_cut_in_the_summary_not_in_the_metadata():
    rows = [_row(f"t{i:02d}", "SYMBOL_SPECIFIC", "BLOCKED", "t_stat 1.0 < min_t_stat 2.0")
            for i in range(14)]
    verdict = checks.models_trained(0, rows)
    assert "t09 SYMBOL_SPECIFIC" in verdict.summary and "t10" not in verdict.summary
    assert "; and 4 more)" in verdict.summary and len(verdict.metadata["blocked"]) == 14


@pytest.mark.parametrize(("rows", "why"), [
    ([], "no ranking of this run was found"),
    ([_row("a", "CROSS_SECTIONAL", "CROSS_SECTIONAL")], "ranking routed 1 target x view units"),
])
def test_no_model_without_a_blocked_ranking_still_fails(rows, why):
    verdict = checks.models_trained(0, rows)
    assert not verdict.passed and why in verdict.summary
