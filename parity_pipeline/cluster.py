"""The same code location with Dagster's Celery executor: every step of a run becomes a Celery
task, so workers on other machines run them (deploy/ holds the workspace and run config).

Load it with ``dagster dev -w deploy/workspace.cluster.yaml``. Workers start with
``dagster-celery worker start -A dagster_celery.app -y deploy/celery.yaml`` on machines that have
this package installed, see the same artifact root (``store.root`` on a shared filesystem) and
the same PostgreSQL-backed instance (docs/dagster.postgres.yaml).
"""

import dagster as dg
from dagster_celery import celery_executor

from parity_pipeline import definitions as local
from parity_pipeline.defs.jobs import PARITY_JOB_NAME
from parity_pipeline.defs.schedules import nightly_schedule
from parity_pipeline.defs.sensors import deliver_alerts_job, parity_alerts

parity_all_celery_job = dg.define_asset_job(
    name=PARITY_JOB_NAME, selection=dg.AssetSelection.all(), executor_def=celery_executor,
    description="The whole graph, each step a Celery task on a worker.")

# same assets, resources, sensor and schedule as the local code location; only the job's
# executor differs
# (the local Definitions through its module: one Definitions object at this module's scope, as
# Dagster's loaders require)
defs = dg.Definitions(
    assets=list(local.defs.assets or []),
    jobs=[parity_all_celery_job, deliver_alerts_job],
    schedules=[nightly_schedule(parity_all_celery_job)],
    sensors=[parity_alerts],
    resources=local.defs.resources,
    loggers=local.defs.loggers,
    executor=celery_executor,
)
