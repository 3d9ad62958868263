"""The cluster path: the code location with Dagster's Celery executor loads, and the documented
run config validates against it (no broker or worker here, so nothing is launched)."""


import dagster as dg
import pytest
import yaml

from parity_pipeline.cluster import defs
from parity_tests.helpers import PROJECT

DEPLOY = PROJECT / "deploy"
ASSETS = {"sampled_data", "ranked_targets", "selected_features", "trained_models", "snapshots"}


def _job():
    return defs.resolve_job_def("parity_all")


def test_cluster_definitions_load_with_the_celery_executor():
    dg.Definitions.validate_loadable(defs)
    job = _job()
    assert job.executor_def.name == "celery"
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == ASSETS
    schedule = defs.resolve_schedule_def("nightly_parity")
    assert schedule.job_name == "parity_all" and schedule.cron_schedule == "0 2 * * *"
    assert defs.resolve_sensor_def("parity_alerts") is not None


def test_documented_run_config_validates():
    config = yaml.safe_load((DEPLOY / "run_config.celery.yaml").read_text())
    resolved = dg.validate_run_config(_job(), config)
    celery = resolved["execution"]["celery"]
    assert celery["broker"].startswith("redis://")
    assert celery["config_source"]["task_acks_late"] is True
    assert celery["config_source"]["result_backend_always_retry"] is True
    assert resolved["resources"]["store"]["config"]["root"] == "/mnt/parity-artifacts"


def test_worker_config_matches_the_run_config():
    worker = yaml.safe_load((DEPLOY / "celery.yaml").read_text())["execution"]["config"]
    run = yaml.safe_load((DEPLOY / "run_config.celery.yaml").read_text())["execution"]["config"]
    assert {k: run[k] for k in ("broker", "backend", "include", "config_source")} == worker


@pytest.mark.parametrize("execution", [
    {"config": {"broker": 5}},
    {"config": {"no_such_option": True}},
    {"config": {"in_process": {}}},  # the local executor's config is not the Celery one
])
def test_wrong_executor_config_is_rejected(execution):
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(_job(), {"execution": execution})


def test_cluster_workspace_points_at_the_cluster_module():
    location = yaml.safe_load((DEPLOY / "workspace.cluster.yaml").read_text())["load_from"][0]
    assert location["python_module"]["module_name"] == "parity_pipeline.cluster"
    assert location["python_module"]["attribute"] == "defs"
