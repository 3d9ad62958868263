"""Benchmark: a default-sample run's CPU with this code against an earlier commit, paired.

The speed work's target is a ratio to "before": one number per side is worth little on a
machine whose speed drifts by 10-20 % over a session, so the two sides run as alternating
pairs (before, now; now, before; ...), each run in a fresh interpreter and a fresh PARITY_HOME,
in-process (one worker), reuse off, on the same dataset and the same installed libraries. The
earlier code is exported with ``git archive`` into a temporary folder and imported from there
(PYTHONPATH), so the checkout is not touched.

    .venv/bin/python bench/bench_before_after.py [--before 9648a2b] [--pairs 3]

Prints each pair and the ratio of the CPU sums (target: now <= 0.6x before). Exits non-zero
only when a run fails (a failed run's time is not a figure).
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEFORE_SPEED_WORK = "9648a2b"  # the last commit before the speed work (issue: speed)
TARGET_RATIO = 0.6
RESULT_PREFIX = "BEFORE_AFTER "

# Run in the child: whichever parity_pipeline PYTHONPATH points at. The options differ between
# versions (``reuse`` came with the speed work), so only the fields this version has are set.
CHILD = """
import dataclasses, json, sys, time
import parity_pipeline
from parity_pipeline.runner import RunRequestOptions, execute_pipeline
fields = {f.name for f in dataclasses.fields(RunRequestOptions)}
options = {"data_dir": sys.argv[1], "workers": 1, **({"reuse": False} if "reuse" in fields else {})}
wall, cpu = time.perf_counter(), time.process_time()
outcome = execute_pipeline(RunRequestOptions(**options), progress=lambda _line: None)
print(__PREFIX__ + json.dumps({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall,
                      "exit_code": outcome.exit_code, "package": parity_pipeline.__file__}))
""".replace("__PREFIX__", repr(RESULT_PREFIX))


def export_commit(commit: str, folder: Path) -> Path:
    """The package and its data files at ``commit``, as plain files under ``folder``."""
    archive = folder / "before.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive),
                    commit], check=True)
    tree = folder / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def one_run(source: Path, data_dir: Path) -> dict:
    """One in-process run of the code under ``source`` in a fresh home; its CPU and wall."""
    # a bare folder, not _common.fresh_home: that prepares the home with this checkout's code,
    # and each side must start from what its own code makes of an empty home
    with tempfile.TemporaryDirectory(prefix="parity-bench-pair-") as home:
        env = {**os.environ, "PYTHONPATH": str(source), "PARITY_HOME": home}
        env.pop("DAGSTER_HOME", None)
        done = subprocess.run([sys.executable, "-c", CHILD, str(data_dir)], cwd=source, env=env,
                              capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"run of {source} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    if result["exit_code"] != 0 or not result["package"].startswith(str(source)):
        raise SystemExit(f"run of {source} did not succeed from its own code: {result}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE_SPEED_WORK, help="the earlier commit")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--data", default=str(REPO / "data" / "sample"))
    args = parser.parse_args()
    data_dir = Path(args.data).resolve()
    with tempfile.TemporaryDirectory(prefix="parity-bench-before-") as folder:
        before_tree = export_commit(args.before, Path(folder))
        print(f"before: {args.before} (exported to {before_tree}); now: {REPO}; data: {data_dir}")
        print(f"{'pair':>4} | {'before cpu s':>12} | {'now cpu s':>9} | {'now/before':>10}")
        totals = {"before": 0.0, "now": 0.0}
        for pair in range(1, args.pairs + 1):
            order = ("before", "now") if pair % 2 else ("now", "before")
            cpu = {side: one_run(before_tree if side == "before" else REPO, data_dir)["cpu"]
                   for side in order}
            for side in totals:
                totals[side] += cpu[side]
            print(f"{pair:>4} | {cpu['before']:>12.1f} | {cpu['now']:>9.1f} | "
                  f"{cpu['now'] / cpu['before']:>9.2f}x", flush=True)
    ratio = totals["now"] / totals["before"]
    print(f"sum  | {totals['before']:>12.1f} | {totals['now']:>9.1f} | {ratio:>9.2f}x "
          f"(target <= {TARGET_RATIO}x: {'PASS' if ratio <= TARGET_RATIO else 'FAIL'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
