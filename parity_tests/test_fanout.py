"""Fan-out by target: step keys, merging parts, and one-target runs next to full runs."""

import dataclasses
import random
import re

import dagster as dg
import pytest

from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.fanout import mapping_keys, merge_parts
from parity_pipeline.core.ranking import (
    RankingConfig,
    assemble_ranking,
    plan_ranking,
    prepared_panel,
    rank_targets,
    score_planned_target,
)
from parity_pipeline.core.registry import load_registry
from parity_pipeline.core.sampling import load_panel
from parity_pipeline.core.training import check_distinct_dirs, planned_model_dirs
from parity_tests.helpers import parity_cli, parity_run, read_json, run_dir_of

DAGSTER_KEY = re.compile(r"^[A-Za-z0-9_]+$")
ONE_TARGET = "fwd_ret_60m"


def test_mapping_keys_are_safe_one_to_one_and_independent_of_order():
    names = ["fwd_ret_60m", "y_will_peak_60m_0.8", "a/b", "a_b", "a-b", "ß"]
    keys = mapping_keys(names)
    assert keys == mapping_keys(list(reversed(names)))
    assert keys["fwd_ret_60m"] == "fwd_ret_60m"  # safe names are kept as they are
    assert keys["y_will_peak_60m_0.8"] == "y_will_peak_60m_0_8"
    assert all(DAGSTER_KEY.match(key) for key in keys.values())
    assert len(set(keys.values())) == len(names)
    # the three names that all sanitize to a_b are told apart by a hash suffix
    assert all(keys[n].startswith("a_b_") and keys[n] != "a_b" for n in ("a/b", "a_b", "a-b"))


@dataclasses.dataclass(frozen=True)
class _Result:
    items: tuple
    n_effective: int


def test_merge_parts_sorts_units_and_refuses_disagreeing_or_overlapping_parts():
    base = _Result(items=(), n_effective=10)
    parts = [_Result(items=(("b", 2), ("b", 1)), n_effective=10),
             _Result(items=(("a", 9),), n_effective=10)]
    merged = merge_parts(base, parts, "items", sort_key=lambda item: item)
    assert merged == _Result(items=(("a", 9), ("b", 1), ("b", 2)), n_effective=10)
    assert merge_parts(base, list(reversed(parts)), "items", lambda item: item) == merged
    assert merge_parts(base, [], "items", lambda item: item) == base
    with pytest.raises(ValueError, match="disagrees"):
        merge_parts(base, [*parts, _Result(items=(("c", 1),), n_effective=11)], "items",
                    lambda item: item)
    with pytest.raises(ValueError, match="computed twice"):
        merge_parts(base, [*parts, _Result(items=(("a", 9),), n_effective=10)], "items",
                    lambda item: item)


def test_ranking_by_target_steps_equals_the_one_process_ranking(small_dataset):
    registry = load_registry(small_dataset)
    panel = load_panel(small_dataset, registry, 800).panel
    config = RankingConfig(n_folds=3, n_estimators=20, ss_n_estimators=10)
    whole = rank_targets(panel, registry, config, 42)
    # what the Dagster steps do: plan, score each target on its own (any order), assemble
    frame = prepared_panel(panel)
    plan = plan_ranking(frame, registry, config)
    order = list(plan.targets)
    random.Random(7).shuffle(order)
    scored = {name: score_planned_target(prepared_panel(panel), registry, plan, name, 42)
              for name in order}
    assert assemble_ranking(frame, registry, plan, scored, 42) == whole
    subset = rank_targets(panel, registry, config, 42, targets=[ONE_TARGET])
    assert [r.target for r in subset.routes] == [ONE_TARGET]
    assert subset.routes[0] == next(r for r in whole.routes if r.target == ONE_TARGET)
    assert subset.candidate_features == whole.candidate_features  # same leak scan
    with pytest.raises(ParityInputError, match="not declared"):
        plan_ranking(frame, registry, config, ["fwd_nope"])


def test_model_folders_that_would_clash_across_target_steps_are_refused(small_dataset):
    registry = load_registry(small_dataset)
    panel = load_panel(small_dataset, registry, 300).panel
    dirs = planned_model_dirs(panel, [("y/a", "CROSS_SECTIONAL"), ("y_a", "CROSS_SECTIONAL")])
    with pytest.raises(ParityInputError, match="y_a/CROSS_SECTIONAL/ALL"):
        check_distinct_dirs(dirs)
    symbols = sorted(panel["symbol"].unique())
    assert len(planned_model_dirs(panel, [(ONE_TARGET, "SYMBOL_SPECIFIC")])) == len(symbols)


@pytest.fixture(scope="session")
def full_then_one_target(small_dataset, tmp_path_factory):
    """A full run on 2 workers, then a run of one target in-process, in the same home."""
    home = tmp_path_factory.mktemp("fanout") / "home"
    full = parity_run(home, "--data", str(small_dataset), "--workers", "2")
    assert full.exit_code == 0, full.stdout + full.stderr
    one = parity_run(home, "--data", str(small_dataset), "--targets", ONE_TARGET)
    assert one.exit_code == 0, one.stdout + one.stderr
    return home, full, one


def _steps(home, run_id: str) -> dict[str, tuple[float, float]]:
    """step key -> (start, end) timestamps of the run's successful steps."""
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        records = instance.all_logs(run_id)
    starts = {r.step_key: r.timestamp for r in records
              if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.STEP_START}
    return {r.step_key: (starts[r.step_key], r.timestamp) for r in records
            if r.dagster_event
            and r.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS}


def test_each_target_is_its_own_step_and_steps_run_side_by_side(full_then_one_target,
                                                                 small_dataset):
    home, full, _ = full_then_one_target
    steps = _steps(home, full.outcome.run_id)
    targets = load_registry(small_dataset).target_names
    keys = mapping_keys(targets)
    ranking_steps = sorted(k for k in steps if k.startswith("ranked_targets.rank_target["))
    assert ranking_steps == sorted(f"ranked_targets.rank_target[{keys[t]}]" for t in targets)
    routed = {s["target"] for s in read_json(run_dir_of(full) / "snapshots" / "data.json")
              ["entries"] if s["stage"] == "TRAINING"}
    assert routed and {k for k in steps if k.startswith("trained_models.train_target[")} == {
        f"trained_models.train_target[{keys[t]}]" for t in routed}
    # two workers: some pair of target steps overlapped in time
    spans = sorted(steps[k] for k in steps if "[" in k)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_a_one_target_run_reproduces_that_target_of_the_full_run(full_then_one_target):
    home, full, one = full_then_one_target
    assert all(check.passed for check in one.outcome.checks)  # output_parity included
    snapshots = read_json(run_dir_of(one) / "snapshots" / "data.json")["entries"]
    assert {s["target"] for s in snapshots} == {ONE_TARGET}
    assert {s["stage"] for s in snapshots} == {"TARGET_RANKING", "FEATURE_SELECTION",
                                               "TRAINING"}
    steps = _steps(home, one.outcome.run_id)
    assert sorted(k for k in steps if "[" in k) == [
        f"ranked_targets.rank_target[{ONE_TARGET}]",
        f"selected_features.select_target[{ONE_TARGET}]",
        f"trained_models.train_target[{ONE_TARGET}]"]
    same = parity_cli(home, "diff", "--targets", ONE_TARGET, full.outcome.run_id,
                      one.outcome.run_id)
    assert same.returncode == 0, same.stdout + same.stderr
    compared = int(re.search(r"units: (\d+) compared, (\d+) identical", same.stdout).group(1))
    assert compared == len(snapshots) and same.stdout.rstrip().endswith("identical")
    whole = parity_cli(home, "diff", full.outcome.run_id, one.outcome.run_id)
    assert whole.returncode == 1 and "only in A" in whole.stdout
    assert re.search(r"[1-9]\d* only in A", whole.stdout), whole.stdout


def test_unknown_targets_are_refused_before_a_run(full_then_one_target, small_dataset):
    home, full, one = full_then_one_target
    bad = parity_cli(home, "run", "--data", str(small_dataset), "--targets", "fwd_nope")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "fwd_nope" in bad.stderr and "feature_registry.json" in bad.stderr
    assert ONE_TARGET in bad.stderr  # the declared targets are listed
    missing = parity_cli(home, "diff", "--targets", "fwd_nope", full.outcome.run_id,
                         one.outcome.run_id)
    assert missing.returncode == 2 and "fwd_nope" in missing.stderr
