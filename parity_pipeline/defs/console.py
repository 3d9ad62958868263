"""The console logger of every parity job: one short line per event, errors without stacks.

Dagster's default console logger prints each failed step's full stack trace (twice: the step and
the run), which buries the one paragraph a user needs. Here an event is one line ("time step:
message"), and a failure shows only its first line; the full error, stack included, stays in
the event log (the run's page in the UI).
"""

import logging
import sys

import dagster as dg


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", {}) or {}
        step = meta.get("step_key") or meta.get("job_name") or "run"
        message = str(meta.get("orig_message") or record.getMessage()).strip()
        first = message.splitlines()[0] if message else ""
        time = self.formatTime(record, "%H:%M:%S")
        return f"{time} {record.levelname:7} {step}: {first}"


@dg.logger(config_schema={"log_level": dg.Field(str, default_value="INFO",
                                                description="DEBUG, INFO, WARNING or ERROR")},
           description="One line per event on stderr; a failure shows its first line only.")
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("parity_console", level=init_context.logger_config["log_level"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    logger.addHandler(handler)
    return logger
