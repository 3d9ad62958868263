"""The ``parity`` command. Exit codes: 0 ok, 1 a check failed or runs differ, 2 bad input,
3 an artifact/index failed verification, 4 the store cannot be written."""

import argparse
import logging
import os
import sys
from pathlib import Path

from parity_pipeline import constants
from parity_pipeline.core.errors import ParityError, ParityInputError

logger = logging.getLogger("parity")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except ParityError as exc:
        print(f"parity: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a folder we cannot read or write: the storage class, exit 4
        print(f"parity: error: cannot access {exc.filename or 'a file'}: {exc.strerror or exc}; "
              "check the path and its permissions (PARITY_HOME, --data)", file=sys.stderr)
        return 4
    except Exception as exc:  # the instance's database (full or read-only disk): exit 4
        from parity_pipeline.resources.instance import INSTANCE_ERRORS, instance_error

        if not isinstance(exc, INSTANCE_ERRORS):
            raise
        print(f"parity: error: {instance_error(exc)}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print("parity: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parity", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run(commands)
    _add_data(commands)
    diff = commands.add_parser("diff", help="compare two runs' snapshots fingerprint by "
                               "fingerprint (default: the last two runs)")
    diff.add_argument("run_a", nargs="?")
    diff.add_argument("run_b", nargs="?")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.add_argument("--targets", default="",
                      help="compare only these targets' units (comma-separated)")
    diff.set_defaults(handler=_cmd_diff)
    verify = commands.add_parser("verify", help="re-hash every object a run references "
                                 "(default: the latest complete run with snapshots)")
    verify.add_argument("run_id", nargs="?")
    verify.add_argument("--all", action="store_true", help="re-hash every object in the store "
                        "and list the damaged ones with the runs that use them")
    verify.set_defaults(handler=_cmd_verify)
    runs = commands.add_parser("runs", help="list recent runs with their failed checks")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(handler=_cmd_runs)
    home_cmd = commands.add_parser("home", help="create and print the PARITY_HOME folders")
    home_cmd.set_defaults(handler=_cmd_home)
    return parser


def _add_run(commands) -> None:
    run = commands.add_parser("run", help="materialize the whole asset graph once")
    run.add_argument("--data", default=None, help="dataset folder (default: data/sample)")
    run.add_argument("--max-rows-per-symbol", type=int, default=constants.MAX_ROWS_PER_SYMBOL)
    run.add_argument("--base-seed", type=int, default=constants.BASE_SEED)
    run.add_argument("--symbols", default="", help="comma-separated subset, e.g. AAPL,MSFT")
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="1: in-process executor; N>1: Dagster multiprocess executor, N steps "
                          "(targets) at once (default: one per CPU, %(default)s here)")
    run.add_argument("--no-reuse", dest="reuse", action="store_false",
                     help="recompute every fit even where an earlier run's verified result has "
                          "the same inputs, code, libraries, config and seed (default: reuse "
                          "it; results are recorded either way)")
    run.add_argument("--targets", default="",
                     help="comma-separated subset of the declared targets (a partial run); "
                          "default: all")
    run.set_defaults(handler=_cmd_run)


def _add_data(commands) -> None:
    data = commands.add_parser("data", help="make or import datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synth = data_commands.add_parser("synth", help="generate labeled sample bars")
    synth.add_argument("--out", required=True)
    synth.add_argument("--symbols", type=int, default=10)
    synth.add_argument("--rows", type=int, default=20000)
    synth.add_argument("--seed", type=int, default=constants.BASE_SEED)
    synth.add_argument("--if-absent", action="store_true",
                       help="do nothing when the folder already holds a dataset")
    synth.set_defaults(handler=_cmd_synth)
    imported = data_commands.add_parser("import", help="turn plain OHLCV bars (CSV/parquet) "
                                        "into a labeled dataset",
                                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    imported.add_argument("--input", required=True, action="append", metavar="FILE",
                          help="a CSV or parquet file of bars; repeat for several files. Columns "
                          "(any case): a time column (ts/timestamp/datetime/date/time or an "
                          "unnamed first one), close, and optionally symbol (or ticker), open, "
                          "high, low, volume, an adjusted close (adj close/adjusted)")
    imported.add_argument("--symbol", action="append", metavar="NAME",
                          help="the symbol of a file without a symbol column; one per --input, "
                          "in the same order")
    imported.add_argument("--interval", default="auto", help="bar interval of the input "
                          "(1m..4h, 1d, 1w, 1mo); auto detects it from the median step between "
                          "timestamps, and a value that contradicts that step is refused")
    imported.add_argument("--tz", default="UTC", help="time zone of timestamps written without "
                          "one (e.g. America/New_York); they are stored in UTC")
    imported.add_argument("--out", required=True, help="the dataset folder to create (must not "
                          "exist)")
    imported.set_defaults(handler=_cmd_import)


def _cmd_import(args) -> int:
    from parity_pipeline.core.data.importer import import_ohlcv

    summary = import_ohlcv([Path(p) for p in args.input], args.interval, Path(args.out),
                           symbols=args.symbol or (), tz=args.tz)
    for warning in summary.warnings:
        print(f"parity: warning: {warning}", file=sys.stderr)
    print(f"imported {len(summary.symbols)} symbols ({sum(summary.rows.values())} "
          f"{summary.interval} bars, {summary.start[:16]} .. {summary.end[:16]}) to "
          f"{summary.out_dir}")
    return 0


def _cmd_synth(args) -> int:
    from parity_pipeline.core.data.synth import synthesize_dataset

    out = Path(args.out)
    if args.if_absent and (out / "feature_registry.json").is_file():
        print(f"dataset already present at {out}")
        return 0
    summary = synthesize_dataset(out, n_symbols=args.symbols, n_rows=args.rows, seed=args.seed)
    print(f"wrote {len(summary.symbols)} symbols x {summary.n_rows} rows to {summary.out_dir}")
    return 0


def _instance():
    """The home's instance, with runs whose process is gone marked failed first (so `runs`,
    `verify` and `diff` never take a dead run for a running or finished one)."""
    from parity_pipeline.resources.instance import open_instance
    from parity_pipeline.resources.runs import mark_dead_runs

    instance = open_instance()
    mark_dead_runs(instance)
    return instance


def _content():
    from parity_pipeline.core.store import home
    from parity_pipeline.core.store.content import ContentStore

    return ContentStore(home.artifacts_root())


def _cmd_diff(args) -> int:
    import dataclasses
    import json

    from parity_pipeline.cli.reports import last_two_runs, load_run_side
    from parity_pipeline.core.repro.diff import compare_runs, render_text

    if bool(args.run_a) != bool(args.run_b):
        raise ParityInputError("pass two run ids (RUN_A RUN_B) or none for the last two runs")
    instance, content = _instance(), _content()
    run_a, run_b = (args.run_a, args.run_b) if args.run_a else last_two_runs(instance)
    report = compare_runs(load_run_side(instance, content, run_a),
                          load_run_side(instance, content, run_b), targets=_listed(args.targets))
    if args.json:
        print(json.dumps(dataclasses.asdict(report), indent=2, sort_keys=True))
    else:
        print(render_text(report))
    return 1 if report.differs else 0


def _cmd_verify(args) -> int:
    from parity_pipeline.cli.reports import runs_with_snapshots, verify_run, verify_store

    instance, content = _instance(), _content()
    if args.all:
        checked, damaged = verify_store(instance, content)
        for name, (problem, runs) in sorted(damaged.items()):
            print(f"DAMAGED {name}: used by {', '.join(runs) or 'no run'}\n  {problem}")
        print(f"store {content.root}: {checked} objects, {len(damaged)} damaged")
        return 3 if damaged else 0
    run_id = args.run_id
    if not run_id:
        usable = runs_with_snapshots(instance)
        if not usable:
            raise ParityInputError("no complete run with snapshots to verify; run `parity "
                                   "run` first, or pass a run id from `parity runs`")
        run_id = usable[0]
    report = verify_run(instance, content, run_id)
    inherited = (f"; from the runs it re-executes: {', '.join(report.inherited)}"
                 if report.inherited else "")
    print(f"run {report.run_id} ({report.status}): produced "
          f"{', '.join(report.produced) or 'nothing itself'}{inherited}; {report.objects} "
          f"objects and {report.view_files} view files: all hashes verified")
    if not report.complete:
        missing = f"no {', '.join(report.missing)}; " if report.missing else ""
        print(f"incomplete: the run ended {report.status}; {missing}see `parity runs`, and run "
              "`parity run` (or re-execute it from failure) for a complete run")
    return 0 if report.complete else 3


def _cmd_runs(args) -> int:
    from parity_pipeline.cli.reports import recent_runs

    rows = recent_runs(_instance(), limit=args.limit)
    print(f"{'run_id':36}  {'started (UTC)':25}  {'status':9}  {'scope':30}  produced; "
          "failed checks")
    for row in rows:
        print(f"{row.run_id:36}  {row.started:25}  {row.status:9}  {row.scope:30}  "
              f"{','.join(row.produced) or '-'}; {', '.join(row.failed_checks) or '-'}")
        if row.reason:
            print(f"{'':38}why: {row.reason[:200]}")
    return 0


def _cmd_home(args) -> int:
    from parity_pipeline.core.store import home

    print(f"PARITY_HOME={home.parity_home()}")
    from parity_pipeline.resources.instance import open_instance

    print(f"DAGSTER_HOME={open_instance().root_directory}")
    print(f"artifacts={home.artifacts_root()}")
    return 0


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _cmd_run(args) -> int:
    if args.workers < 1:
        raise ParityInputError(f"--workers must be >= 1, got {args.workers}")
    if args.workers > 1:
        from parity_pipeline.defs.step_server import start_step_server

        start_step_server()  # its imports overlap this process's own (the runner's, next)
    from parity_pipeline.runner import RunRequestOptions, execute_pipeline

    options = RunRequestOptions(
        data_dir=str(Path(args.data).resolve()) if args.data else None,
        max_rows_per_symbol=args.max_rows_per_symbol, base_seed=args.base_seed,
        symbols=_listed(args.symbols), workers=args.workers, targets=_listed(args.targets),
        reuse=args.reuse)
    outcome = execute_pipeline(options, progress=lambda line: print(line, flush=True))
    print(outcome.summary)
    print(f"run_id: {outcome.run_id}")
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
