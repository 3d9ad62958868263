"""The nightly schedule: the whole graph at 02:00 UTC."""

import dagster as dg

from parity_pipeline import constants
from parity_pipeline.defs.jobs import parity_all_job


def nightly_schedule(job) -> dg.ScheduleDefinition:
    """The nightly run of ``job`` (the local job here; the Celery one in ``cluster.py``)."""
    return dg.ScheduleDefinition(
        name="nightly_parity", job=job, cron_schedule=constants.NIGHTLY_CRON,
        execution_timezone=constants.NIGHTLY_TIMEZONE,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        # a nightly on unchanged data reuses every verified fit instead of recomputing it
        run_config={"resources": {"settings": {"config": {"reuse": True}}}},
        description="Materialize every asset and run every check nightly at 02:00 UTC, reusing "
                    "every fit whose inputs, code and libraries did not change.")


nightly_parity_schedule = nightly_schedule(parity_all_job)
