"""The code location loads, lists the five assets, checks, schedule and sensor; core is pure."""

import ast
from pathlib import Path

import dagster as dg

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
    assert defs.resolve_job_def("parity_all") is not None
    assert defs.resolve_schedule_def("nightly_parity").cron_schedule == "0 2 * * *"
    assert defs.resolve_sensor_def("check_failure_alerts") is not None
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
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "dagster"]
    assert offenders == []


def test_no_python_hash_builtin_in_package():
    calls = []
    for path in sorted(Path(parity_pipeline.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hash":
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []
