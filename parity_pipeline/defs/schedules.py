"""The nightly schedule: the whole graph at 02:00 UTC."""

import dagster as dg

from parity_pipeline import constants
from parity_pipeline.defs.jobs import parity_all_job

nightly_parity_schedule = dg.ScheduleDefinition(
    name="nightly_parity", job=parity_all_job, cron_schedule=constants.NIGHTLY_CRON,
    execution_timezone=constants.NIGHTLY_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Materialize every asset and run every check nightly at 02:00 UTC.")
