"""Stages fanned out into steps: a stage in parts equals the one-process stage, parts run side by
side on two workers, and one-target runs next to full runs (the pure split and merge:
core/stages/test_fanout.py)."""

import os
import random
import re

import dagster as dg
import pytest

from parity_pipeline.cli.main import build_parser
from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.sampling import load_panel
from parity_pipeline.core.data.synth import synthesize_dataset
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.stages.fanout import SS_SYMBOLS_PER_PIECE, symbol_groups
from parity_pipeline.core.stages.ranking import (
    VIEWS,
    RankingConfig,
    assemble_ranking,
    plan_ranking,
    prepared_panel,
    rank_targets,
    ranking_table,
    routed_pairs,
    score_planned_view,
    symbols_of,
)
from parity_pipeline.core.stages.selection import (
    SelectionConfig,
    select_features,
    selection_table,
)
from parity_pipeline.core.stages.training import check_distinct_dirs, planned_model_dirs
from parity_tests.helpers import parity_cli, parity_run, read_json, run_dir_of

DAGSTER_KEY = re.compile(r"^[A-Za-z0-9_]+$")
ONE_TARGET = "fwd_ret_60m"


def test_ranking_by_view_pieces_equals_the_one_process_ranking(small_dataset):
    registry = load_registry(small_dataset)
    panel = load_panel(small_dataset, registry, 800).panel
    config = RankingConfig(n_folds=3, n_estimators=20, ss_n_estimators=10)
    whole = rank_targets(panel, registry, config, 42)
    # what the Dagster steps do: plan, score each (target, view) on its own (any order),
    # assemble
    frame = prepared_panel(panel)
    plan = plan_ranking(frame, registry, config)
    order = [(target, view) for target in plan.targets for view in VIEWS]
    random.Random(7).shuffle(order)
    scored = {unit: score_planned_view(prepared_panel(panel), registry, plan, *unit, 42)
              for unit in order}
    pairs = {target: (scored[target, VIEWS[0]], scored[target, VIEWS[1]])
             for target in plan.targets}
    assert assemble_ranking(frame, registry, plan, pairs, 42) == whole
    with pytest.raises(ValueError, match="unknown ranking view"):
        score_planned_view(frame, registry, plan, ONE_TARGET, "BOTH", 42)
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
    """A full run on 2 workers, then a run of one target on 2 workers, in the same home."""
    home = tmp_path_factory.mktemp("fanout") / "home"
    full = parity_run(home, "--data", str(small_dataset), "--workers", "2")
    assert full.exit_code == 0, full.stdout + full.stderr
    one = parity_run(home, "--data", str(small_dataset), "--targets", ONE_TARGET, "--workers", "2")
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


def _parts(steps: dict, op: str) -> list[str]:
    return sorted(k for k in steps if k.startswith(f"{op}["))


@pytest.mark.slow
def test_two_workers_run_two_parts_side_by_side_each_target_once(full_then_one_target,
                                                                 small_dataset):
    home, full, _ = full_then_one_target
    targets = sorted(load_registry(small_dataset).target_names)
    steps = _steps(home, full.outcome.run_id)
    # one part per worker in each stage (8 targets, 2 workers), not a step per target
    for op in ("ranked_targets.rank_targets_part", "selected_features.select_targets_part",
               "trained_models.train_targets_part"):
        assert _parts(steps, op) == [f"{op}[part_1_of_2]", f"{op}[part_2_of_2]"], steps
    # each part logs one line per piece it claimed: every target scored once in each view,
    # by either part, both parts busy (a part that is free takes the next piece)
    output = full.stdout + full.stderr
    scored = [re.findall(rf"rank_targets_part\[{part}\]: TARGET_RANKING (\S+) (\S+) \(target",
                         output) for part in ("part_1_of_2", "part_2_of_2")]
    assert sorted(scored[0] + scored[1]) == [(target, view) for target in targets
                                             for view in VIEWS]
    assert all(scored), scored
    # a CROSS_SECTIONAL selection unit is two pieces, its main fits and its resamples, so the
    # last pieces the selection parts claim are half a unit
    halves: dict[str, list[str]] = {}
    for target, fits in re.findall(r"select_targets_part\[part_\d_of_2\]: FEATURE_SELECTION "
                                   r"(\S+) CROSS_SECTIONAL: symbols \S+ \(\d+ symbols\), "
                                   r"(main|resamples) fits done", output):
        halves.setdefault(target, []).append(fits)
    assert halves and all(sorted(fits) == ["main", "resamples"] for fits in halves.values())
    claims = home / "artifacts" / "steps" / full.outcome.run_id / "claims" / "rank_targets_part"
    owners = sorted(path.read_text().split("\n")[0] for path in claims.glob("*.claim"))
    assert owners == sorted(["part_1_of_2"] * len(scored[0]) + ["part_2_of_2"] * len(scored[1]))
    # the two parts of a stage overlapped in time
    first, second = (steps[k] for k in _parts(steps, "ranked_targets.rank_targets_part"))
    assert second[0] < first[1] and first[0] < second[1]
    # only the parts after the first were forked; sampling, plans, first parts, collects and
    # snapshots ran in the executor's process (a process each cost 0.2-1.1 s on the critical
    # path)
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        forked = {r.step_key for r in instance.all_logs(full.outcome.run_id)
                  if r.dagster_event and r.dagster_event.event_type
                  == dg.DagsterEventType.STEP_WORKER_STARTED}
    assert forked == {key for key in steps if key.endswith("[part_2_of_2]")}
    assert {key for key in steps if "_part[" not in key} == {
        "sampled_data", "snapshots", *(f"{asset}.{op}" for asset, op in (
            ("ranked_targets", "plan_ranking_step"), ("ranked_targets", "collect_ranking"),
            ("selected_features", "plan_selection_step"),
            ("selected_features", "collect_selection"),
            ("trained_models", "plan_training_step"), ("trained_models", "collect_training")))}


@pytest.mark.slow
def test_a_one_target_run_reproduces_that_target_of_the_full_run(full_then_one_target):
    home, full, one = full_then_one_target
    assert all(check.passed for check in one.outcome.checks)  # output_parity included
    snapshots = read_json(run_dir_of(one) / "snapshots" / "data.json")["entries"]
    assert {s["target"] for s in snapshots} == {ONE_TARGET}
    assert {s["stage"] for s in snapshots} == {"TARGET_RANKING", "FEATURE_SELECTION",
                                               "TRAINING"}
    steps = _steps(home, one.outcome.run_id)
    # one target's two views are two pieces in every stage, so two parts (one per worker),
    # merged into the very snapshots of the full run (the diff below)
    assert {s["view"] for s in snapshots} == {"CROSS_SECTIONAL", "SYMBOL_SPECIFIC"}
    assert sorted(k for k in steps if "[" in k) == [
        f"{op}[part_{i}_of_2]" for op in ("ranked_targets.rank_targets_part",
                                          "selected_features.select_targets_part",
                                          "trained_models.train_targets_part")
        for i in (1, 2)]
    same = parity_cli(home, "diff", "--targets", ONE_TARGET, full.outcome.run_id,
                      one.outcome.run_id)
    assert same.returncode == 0, same.stdout + same.stderr
    compared = int(re.search(r"units: (\d+) compared, (\d+) identical", same.stdout).group(1))
    assert compared == len(snapshots) and same.stdout.rstrip().endswith("identical")
    whole = parity_cli(home, "diff", full.outcome.run_id, one.outcome.run_id)
    assert whole.returncode == 1 and "only in A" in whole.stdout
    assert re.search(r"[1-9]\d* only in A", whole.stdout), whole.stdout


@pytest.mark.slow
def test_unknown_targets_are_refused_before_a_run(full_then_one_target, small_dataset):
    home, full, one = full_then_one_target
    bad = parity_cli(home, "run", "--data", str(small_dataset), "--targets", "fwd_nope")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "fwd_nope" in bad.stderr and "feature_registry.json" in bad.stderr
    assert ONE_TARGET in bad.stderr  # the declared targets are listed
    missing = parity_cli(home, "diff", "--targets", "fwd_nope", full.outcome.run_id,
                         one.outcome.run_id)
    assert missing.returncode == 2 and "fwd_nope" in missing.stderr


def test_parity_run_uses_one_step_per_cpu_by_default():
    # the issue: `parity run` defaulted to one worker, unlike the UI (one step per CPU)
    assert build_parser().parse_args(["run"]).workers == (os.cpu_count() or 1)


@pytest.mark.slow
def test_symbol_specific_units_of_many_symbols_are_computed_in_groups_as_one(tmp_path_factory):
    """Above SS_SYMBOLS_PER_PIECE symbols, a SYMBOL_SPECIFIC unit of ranking and of selection
    is one piece per group of symbols (the parts end closer together): the groups are shared
    out between the two parts, the artifacts joined from them are the one-process stages' to
    the byte, and an unchanged rerun reuses every group."""
    folder = tmp_path_factory.mktemp("many_symbols")
    data, home = folder / "data", folder / "home"
    synthesize_dataset(data, n_symbols=SS_SYMBOLS_PER_PIECE + 1, n_rows=1200, seed=42)
    run = parity_run(home, "--data", str(data), "--workers", "2", "--max-rows-per-symbol", "800")
    assert run.exit_code == 0, run.stdout + run.stderr
    registry = load_registry(data)
    panel = load_panel(data, registry, 800).panel
    groups = symbol_groups(symbols_of(panel))
    assert len(groups) == 2
    ranking = rank_targets(panel, registry, RankingConfig(), 42)
    routed = routed_pairs(ranking)
    specific = sorted(target for target, view in routed if view == "SYMBOL_SPECIFIC")
    assert specific, routed  # the data routes some units to SYMBOL_SPECIFIC selection
    output = run.stdout + run.stderr
    for op, stage, targets in (("rank_targets_part", "TARGET_RANKING", registry.target_names),
                               ("select_targets_part", "FEATURE_SELECTION", specific)):
        shares = re.findall(rf"{op}\[(part_\d_of_2)\]: {stage} (\S+) SYMBOL_SPECIFIC"
                            rf"(?: \(target \d of \d\))?: symbols (\S+)\.\.(\S+) ", output)
        assert sorted((target, first, last) for _, target, first, last in shares) == sorted(
            (target, group[0], group[-1]) for target in targets for group in groups)
        assert {part for part, *_ in shares} == {"part_1_of_2", "part_2_of_2"}
    selection = select_features(panel, registry, routed, ranking.candidate_features,
                                SelectionConfig(), 42)
    for name, table in (("ranked_targets.csv", ranking_table(ranking)),
                        ("selected_features.csv", selection_table(selection))):
        assert (run_dir_of(run) / name).read_text(encoding="utf-8") == table.to_csv(index=False)
    again = parity_run(home, "--data", str(data), "--workers", "2", "--max-rows-per-symbol", "800")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert (read_json(run_dir_of(again) / "snapshots" / "data.json")["entries"]
            == read_json(run_dir_of(run) / "snapshots" / "data.json")["entries"])
    reused = {(snap["stage"], snap["target"]): snap["reused"] for snap in map(
        read_json, run_dir_of(again).glob("*/**/*_snapshot.json"))
        if snap["view"] == "SYMBOL_SPECIFIC" and snap["stage"] != "TRAINING"}
    assert sorted(reused) == sorted([("TARGET_RANKING", target) for target in list(
        registry.target_names)] + [("FEATURE_SELECTION", target) for target in specific])
    assert all(reused.values()), reused
