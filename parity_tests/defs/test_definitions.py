"""The code location loads, lists the five assets, checks, schedule and sensor; core is pure."""

import ast
from pathlib import Path

import dagster as dg
import pytest

import parity_pipeline
from parity_pipeline.definitions import defs

CORE = Path(parity_pipeline.__file__).parent / "core"
ASSETS = ["sampled_data", "ranked_targets", "selected_features", "trained_models", "snapshots"]


def test_definitions_load_with_every_object():
    graph = defs.resolve_asset_graph()
    keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert keys == sorted(ASSETS)
    check_names = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for asset in ASSETS[:4]:
        assert {(asset, "n_effective_drift"), (asset, "train_seed_drift"),
                (asset, "n_effective_parity"),
                (asset, "sample_limit_respected")} <= check_names
    assert ("snapshots", "output_parity") in check_names
    assert ("trained_models", "models_trained") in check_names
    assert {("sampled_data", "universe_change"), ("sampled_data", "nan_rate_drift")} <= check_names
    assert defs.resolve_job_def("parity_all") is not None
    assert defs.resolve_schedule_def("nightly_parity").cron_schedule == "0 2 * * *"
    assert defs.resolve_sensor_def("parity_alerts") is not None
    dg.Definitions.validate_loadable(defs)


def test_lineage_is_the_documented_chain():
    graph = defs.resolve_asset_graph()
    parents = {key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
               for key in graph.get_all_asset_keys()}
    assert parents["ranked_targets"] == ["sampled_data"]
    assert parents["selected_features"] == ["ranked_targets", "sampled_data"]
    assert parents["trained_models"] == ["sampled_data", "selected_features"]
    assert parents["snapshots"] == ["ranked_targets", "sampled_data", "selected_features",
                                    "trained_models"]


def test_core_modules_never_import_dagster():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(CORE)}: {n}" for n in names
                          if n.split(".")[0] == "dagster"]
    assert offenders == []


def test_no_python_hash_builtin_in_package():
    calls = []
    for path in sorted(Path(parity_pipeline.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hash":
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []


def test_stages_fan_out_by_target_on_the_preloaded_multiprocess_executor():
    job = defs.resolve_job_def("parity_all")
    for asset, ops in (("ranked_targets", ["collect_ranking", "plan_ranking_step",
                                           "rank_targets_part"]),
                       ("selected_features", ["collect_selection", "plan_selection_step",
                                              "select_targets_part"]),
                       ("trained_models", ["collect_training", "plan_training_step",
                                           "train_targets_part"])):
        node = job.graph.node_named(asset)
        assert sorted(n.name for n in node.definition.nodes) == ops, asset
        plan = node.definition.node_named(ops[1]).definition
        assert any(out.is_dynamic for out in plan.output_defs), f"{asset} plan fans out"
    assert job.executor_def.name == "parity_multiprocess"
    assert job.executor_def.config_schema.as_field().config_type.fields["max_concurrent"]


def test_only_the_first_part_of_a_stage_is_recognised_as_such():
    """The executor runs part 1 of each stage in its own process, recognised by the mapping
    key that ``part_key`` makes (one spelling of the key, read back by ``is_first_part``)."""
    from parity_pipeline.defs.executor import is_first_part, part_key

    assert [is_first_part(part_key(n, 3)) for n in (1, 2, 3)] == [True, False, False]
    assert is_first_part(part_key(1, 1)) and not is_first_part(part_key(11, 12))
    assert not any(is_first_part(key) for key in (None, "", "part_1", "part_1_of_2x",
                                                  "xpart_1_of_2"))


def test_launchpad_config_for_a_one_target_run_and_stage_config_is_valid():
    """What a user types in the UI's launchpad: the targets of a partial run, a stage's
    config at ops.<asset>.config (mapped onto its plan step) and the number of workers."""
    job = defs.resolve_job_def("parity_all")
    config = {"resources": {"settings": {"config": {"targets": ["fwd_ret_60m"]}}},
              "ops": {"ranked_targets": {"config": {"n_folds": 4}},
                      "selected_features": {"config": {"top_k": 10}}},
              "execution": {"config": {"max_concurrent": 2}}}
    assert dg.validate_run_config(job, config)
    mapping = job.graph.node_named("ranked_targets").definition.config_mapping
    assert mapping.resolve_from_unvalidated_config({"n_folds": 4}) == {"plan_ranking_step": {
        "config": {"n_folds": 4, "purge_buffer_minutes": 30, "min_skill": 0.02,
                   "min_t_stat": 2.0}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match="n_fold"):
        dg.validate_run_config(job, {"ops": {"ranked_targets": {"config": {"n_fold": 4}}}})


@pytest.mark.parametrize("targets", [["fwd_ret_60m"], ["fwd_ret_15m", "fwd_ret_60m"],
                                     ["y_will_peak_60m_0.8"] * 5])
def test_partial_run_scope_tags_are_valid_materialization_tags(targets):
    """A run of two targets failed in its collect step: Dagster refuses a ',' (or a space) in
    an Output's tags, which run tags accept."""
    from parity_pipeline.defs.common import scope_tags

    tags = scope_tags({"targets": targets}, output=True)
    dg.Output(value=None, tags=tags)  # raises DagsterInvalidDefinitionError on a bad value
    joined = ",".join(targets)
    assert tags["parity/targets"] == (joined if len(targets) == 1 else f"{len(targets)}_targets")
    run_tags = scope_tags({"targets": targets})
    assert run_tags["parity/targets"] == (joined if len(joined) <= 63 else "5 targets")
