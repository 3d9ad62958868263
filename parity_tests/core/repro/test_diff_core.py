"""`core.repro.diff` on hand-made snapshots: lineage order, first divergence, each cause's rule."""

import pytest

from parity_pipeline.core.repro.diff import RunSide, classify, compare_runs, render_text

BASE = {"stage": "TRAINING", "target": "fwd_ret_60m", "view": "CROSS_SECTIONAL",
        "model_family": "lightgbm", "comparable_key": "c1", "replicate_key": "r1",
        "strict_key": "s1", "data_fingerprint": "d1", "split_signature": "sp1",
        "feature_fingerprint_input": "fi1", "feature_fingerprint_output": "fo1",
        "hyperparameters_signature": "h1", "train_seed": 42, "model_artifact_sha256": "m1",
        "predictions_sha256": "p1", "metrics_sha256": "x1", "metrics": {"spearman_ic": 0.1}}


def _side(run_id, snapshots, versions=None, commit="abc"):
    return RunSide(run_id=run_id, snapshots=snapshots, per_symbol_n={"AAPL": 2000},
                   library_versions=versions or {"lightgbm": "4.7.0"}, git_commit=commit,
                   settings={"max_rows_per_symbol": 2000})


@pytest.mark.parametrize(("change", "cause"), [
    ({"comparable_key": "c2", "hyperparameters_signature": "h2"}, "config"),
    ({"replicate_key": "r2", "data_fingerprint": "d2"}, "data"),
    ({"replicate_key": "r2", "model_artifact_sha256": "m2"}, "code/library"),
    ({"strict_key": "s2", "train_seed": 7, "model_artifact_sha256": "m2"}, "seed"),
    ({"model_artifact_sha256": "m2", "predictions_sha256": "p2"}, "non-determinism"),
])
def test_each_cause_has_its_rule(change, cause):
    assert classify(BASE, {**BASE, **change}, code_changed=False) == cause


def test_a_changed_commit_alone_is_code_library():
    changed = {**BASE, "model_artifact_sha256": "m2"}
    assert classify(BASE, changed, code_changed=True) == "code/library"
    report = compare_runs(_side("a", [BASE]), _side("b", [changed], commit="def"))
    assert report.units[0].cause == "code/library"
    assert report.library_changes == {"git": "abc -> def"}


def test_first_divergence_follows_the_lineage_not_the_field_order():
    later = {**BASE, "strict_key": "s2", "metrics_sha256": "x2", "train_seed": 7,
             "feature_fingerprint_output": "fo2", "metrics": {"spearman_ic": 0.12}}
    report = compare_runs(_side("a", [BASE]), _side("b", [later]))
    unit = report.units[0]
    assert unit.differing == ("selected features", "seed", "metrics")
    assert unit.first_divergence == "selected features"
    assert unit.metric_deltas == {"spearman_ic": "0.1 -> 0.12"}


def test_units_are_listed_in_pipeline_order_and_identical_runs_say_so():
    ranking = {**BASE, "stage": "TARGET_RANKING", "model_family": None}
    selection = {**BASE, "stage": "FEATURE_SELECTION", "model_family": None}
    snapshots = [BASE, selection, ranking]
    moved = [{**s, "data_fingerprint": "d2", "replicate_key": "r2"} for s in snapshots]
    report = compare_runs(_side("a", snapshots), _side("b", moved))
    assert [u.unit.split()[0] for u in report.units] == [
        "TARGET_RANKING", "FEATURE_SELECTION", "TRAINING"]
    assert "first divergence: data window x3" in render_text(report)
    same = compare_runs(_side("a", snapshots), _side("b", list(reversed(snapshots))))
    assert not same.differs and render_text(same).endswith("identical")


def test_units_present_in_one_run_only_are_reported():
    extra = {**BASE, "target": "fwd_ret_15m"}
    report = compare_runs(_side("a", [BASE, extra]), _side("b", [BASE]))
    assert report.only_in_a == ("TRAINING fwd_ret_15m CROSS_SECTIONAL lightgbm",)
    assert report.differs
