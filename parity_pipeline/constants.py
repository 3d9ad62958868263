"""Defaults in one place. Everything here can be overridden by config or CLI flags."""

BASE_SEED = 42
MAX_ROWS_PER_SYMBOL = 2000
TOP_K_FEATURES = 20
DEFAULT_DATA_DIR = "data/sample"
DEFAULT_INTERVAL = "5m"
NIGHTLY_CRON = "0 2 * * *"
NIGHTLY_TIMEZONE = "UTC"
VIEWS = ("CROSS_SECTIONAL", "SYMBOL_SPECIFIC")
# LightGBM is told this many threads everywhere so results never depend on the host's cores.
LIGHTGBM_NUM_THREADS = 1
# The alert webhook URL (Slack-compatible); unset means alerts go to the JSONL log only.
ALERT_WEBHOOK_ENV = "PARITY_ALERT_WEBHOOK_URL"
# `parity run` refuses to start with less free space than this on the artifact store's or the
# Dagster instance's disk (a default run writes ~30 MB); override with the environment variable.
MIN_FREE_MB = 100
MIN_FREE_MB_ENV = "PARITY_MIN_FREE_MB"
