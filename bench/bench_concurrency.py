"""Benchmark: N `parity run` processes started together on one fresh PARITY_HOME.

Each is the real console command (`python -m parity_pipeline.cli.main run --symbols ...`), started
at the same moment on an empty home, so all of them race to create the Dagster instance and the
artifact store. Prints each exit code and wall time, the total wall time against one run alone
(the same command first, on its own fresh home), the alembic heads in runs.db (must be 1), and
per global index: entries, runs holding entries, and whether the sequence numbers of each
comparison group run 1..n. Always exits
0: it reports, it does not gate (parity_tests/e2e/test_faults.py asserts the same facts).

    .venv/bin/python bench/bench_concurrency.py [--processes 8] [--symbols AAPL,MSFT,NVDA]
"""

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ensure_dataset

from parity_pipeline.core.repro.snapshot_index import INDEX_FILES


def _start(home: Path, data: Path, symbols: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["PARITY_HOME"] = str(home)
    return subprocess.Popen([sys.executable, "-m", "parity_pipeline.cli.main", "run", "--data",
                             str(data), "--symbols", symbols], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _timed(procs: list[subprocess.Popen]) -> tuple[list[int], float]:
    started = time.perf_counter()
    codes = [proc.wait() for proc in procs]
    return codes, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--symbols", default="AAPL,MSFT,NVDA")
    args = parser.parse_args()
    data = ensure_dataset(4, 3000)
    root = Path(tempfile.mkdtemp(prefix="parity-bench-concurrency-"))
    (alone_code,), alone_s = _timed([_start(root / "alone", data, args.symbols)])
    home = root / "shared"
    codes, together_s = _timed([_start(home, data, args.symbols)
                                for _ in range(args.processes)])
    print(f"one run alone: exit {alone_code}, {alone_s:.1f} s")
    print(f"{args.processes} runs together on one fresh home: exits {codes}, "
          f"{together_s:.1f} s wall ({together_s / alone_s:.2f}x one run; "
          f"{os.cpu_count()} CPUs)")
    with contextlib.closing(sqlite3.connect(home / "dagster" / "history" / "runs.db")) as db:
        heads = db.execute("SELECT COUNT(*) FROM alembic_version").fetchone()[0]
    print(f"alembic_version rows in runs.db: {heads}")
    for stage, name in sorted(INDEX_FILES.items()):
        entries = json.loads((home / "artifacts" / "globals" / name).read_text())["entries"]
        groups: dict[str, list[int]] = {}
        for entry in entries:  # snapshot_seq numbers a snapshot within its comparison group
            groups.setdefault(entry["comparable_key"], []).append(entry["snapshot_seq"])
        consecutive = all(seqs == list(range(1, len(seqs) + 1)) for seqs in groups.values())
        print(f"{stage}: {len(entries)} entries from {len({e['run_id'] for e in entries})} runs "
              f"in {len(groups)} comparison groups; seqs 1..n consecutive in each: {consecutive}")
    print(f"homes kept under {root}")


if __name__ == "__main__":
    main()
