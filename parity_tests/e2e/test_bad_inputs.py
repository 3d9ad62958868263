"""Bad input, all of it: 30 distinct cases across data files, registry, config, CLI arguments,
the store and stored artifacts. Each must give one clear paragraph naming what is wrong (no
traceback), the exit code of its class (2 input, 3 integrity, 4 storage), and leave every
earlier artifact and index byte-identical.

Most cases call ``parity_pipeline.cli.main`` in this process (what the console script runs: an
uncaught exception would fail the test as a traceback would show at the CLI); a few go through
a real subprocess to check stderr end to end.
"""

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity_pipeline.cli import main as cli
from parity_pipeline.core.repro.snapshot_index import INDEX_FILES
from parity_tests.helpers import parity_cli, use_home

pytestmark = pytest.mark.slow

INPUT, INTEGRITY, STORAGE = 2, 3, 4


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file's bytes under ``root`` (lock files are empty markers, not content)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix != ".lock"}


@pytest.fixture(scope="session")
def baseline(small_dataset, tmp_path_factory):
    """A home holding one good run; every case runs against a copy-free view of it."""
    home = tmp_path_factory.mktemp("bad_inputs") / "home"
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, home)
        assert cli.main(["run", "--data", str(small_dataset)]) == 0
    run_id = next((home / "artifacts" / "runs").iterdir()).name
    return {"home": home, "run_id": run_id, "data": small_dataset}


@pytest.fixture()
def env(baseline, monkeypatch):
    use_home(monkeypatch, baseline["home"])
    return monkeypatch


def _symbol_file(data: Path, symbol: str = "AAPL") -> Path:
    return data / "interval=5m" / f"symbol={symbol}" / f"{symbol}.parquet"


def _rewrite(path: Path, frame: pd.DataFrame) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def _edit_file(data: Path, edit) -> None:
    path = _symbol_file(data)
    _rewrite(path, edit(pd.read_parquet(path)))


def _edit_registry(data: Path, edit) -> None:
    path = data / "feature_registry.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _drop_horizon(registry: dict) -> dict:
    for column in registry["columns"]:
        if column["role"] == "target":
            column.pop("horizon_minutes")
            break
    return registry


# (case id, how to damage a private copy of the data, extra CLI args, env, exit, message regex)
def _as_feature(registry: dict, name: str) -> dict:
    """A target or label-side column re-declared as a feature (a user's registry edit)."""
    for entry in registry["columns"]:
        if entry["name"] == name:
            entry.clear()
            entry.update({"name": name, "role": "feature", "timeframe": "1h",
                          "lookback_bars": 12})
    return registry


DATA_CASES = [
    ("missing_folder", lambda d: shutil.rmtree(d), [], {}, INPUT,
     r"data folder .*/data does not exist"),
    ("data_is_a_file", lambda d: (shutil.rmtree(d), d.write_text("symbol,date\n")), [], {},
     INPUT, r"--data .*/data is a file, not a dataset folder: pass the folder .*parity data "
            r"import --input"),
    ("no_symbols", lambda d: shutil.rmtree(d / "interval=5m"), [], {}, INPUT, r"interval=5m"),
    ("empty_file", lambda d: _edit_file(d, lambda f: f.head(0)), [], {}, INPUT,
     r"AAPL.*has no rows"),
    ("not_parquet", lambda d: _symbol_file(d).write_text("ts,close\n1,2\n"), [], {}, INPUT,
     r"AAPL.*not a readable parquet file"),
    ("truncated_parquet", lambda d: _symbol_file(d).write_bytes(
        _symbol_file(d).read_bytes()[:5000]), [], {}, INPUT, r"AAPL.*not a readable parquet"),
    ("missing_ts", lambda d: _edit_file(d, lambda f: f.drop(columns=["ts"])), [], {}, INPUT,
     r"AAPL\.parquet: column 'ts'.*missing"),
    ("null_ts", lambda d: _edit_file(d, lambda f: f.assign(
        ts=f["ts"].where(f.index != len(f) - 5))), [], {}, INPUT, r"AAPL.*null 'ts'"),
    ("duplicate_ts", lambda d: _edit_file(d, lambda f: f.assign(
        ts=f["ts"].where(f.index != len(f) - 1, f["ts"].iloc[-2]))), [], {}, INPUT,
     r"symbol AAPL.*duplicate timestamps"),
    ("infinite_feature", lambda d: _edit_file(d, lambda f: f.assign(
        ret_1h=f["ret_1h"].where(f.index != len(f) - 3, np.inf))), [], {}, INPUT,
     r"symbol AAPL: .*AAPL\.parquet column 'ret_1h' holds inf at ts=.*1 infinite"),
    ("minus_infinite_target", lambda d: _edit_file(d, lambda f: f.assign(
        fwd_ret_60m=f["fwd_ret_60m"].where(f.index != len(f) - 30, -np.inf))), [], {}, INPUT,
     r"column 'fwd_ret_60m' holds -inf at ts="),
    ("all_nan_feature", lambda d: _edit_file(d, lambda f: f.assign(vol_1h=np.nan)), [], {},
     INPUT, r"symbol AAPL: .*feature 'vol_1h' is NaN on all 2000 rows of the window"),
    ("constant_feature", lambda d: _edit_file(d, lambda f: f.assign(vol_1h=0.0)), [], {},
     INPUT, r"feature 'vol_1h' is constant \(0\.0\) on the 2000 rows"),
    ("text_feature", lambda d: _edit_file(d, lambda f: f.assign(ret_1h=f["ret_1h"].astype(str))),
     [], {}, INPUT, r"column 'ret_1h' must be numeric"),
    ("naive_ts", lambda d: _edit_file(d, lambda f: f.assign(ts=f["ts"].dt.tz_localize(None))),
     [], {}, INPUT, r"'ts' must be a time-zone aware timestamp"),
    ("declared_column_missing", lambda d: _edit_file(d, lambda f: f.drop(columns=["vol_1h"])),
     [], {}, INPUT, r"AAPL\.parquet.*\['vol_1h'\] are missing"),
    ("registry_missing", lambda d: (d / "feature_registry.json").unlink(), [], {}, INPUT,
     r"feature registry .*feature_registry\.json is missing"),
    ("registry_not_json", lambda d: (d / "feature_registry.json").write_text("{columns: ["),
     [], {}, INPUT, r"feature_registry\.json is not valid JSON"),
    ("registry_target_without_horizon", lambda d: _edit_registry(d, _drop_horizon), [], {},
     INPUT, r"horizon_minutes"),
    ("nan_burst", lambda d: _edit_file(d, lambda f: f.assign(**{
        name: f[name].where(f.index < len(f) - 300) for name in ("ret_1h", "vol_1h")})), [], {},
     INPUT, r"symbol AAPL: .*feature 'ret_1h' has gaps: NaN on 300 of the 2000 rows of the "
            r"window after its first value \(15\.0%, first at ts=.*above max_nan_rate 10%"),
    ("short_history", lambda d: _edit_file(d, lambda f: f.sort_values("ts").tail(90)), [], {},
     INPUT, r"symbol AAPL: 90 rows .* too little history for target .* the file holds only 90 "
            r"rows, so raising --max-rows-per-symbol cannot help"),
    ("target_declared_as_feature", lambda d: _edit_registry(d, lambda r: _as_feature(
        r, "fwd_ret_60m")), [], {}, INPUT,
     r"feature 'fwd_ret_60m' is named like a column computed from the future \(prefix 'fwd_'\)"),
    ("label_side_declared_as_feature", lambda d: _edit_registry(d, lambda r: _as_feature(
        r, "fwd_high_60m")), [], {}, INPUT, r"feature 'fwd_high_60m' is named like"),
    ("zero_sample_limit", None, ["--max-rows-per-symbol", "0"], {}, INPUT,
     r"--max-rows-per-symbol must be a positive integer"),
    ("path_traversal_symbol", None, ["--symbols", "../../etc"], {}, INPUT, r"\.\./\.\./etc"),
    ("unknown_symbol", None, ["--symbols", "ZZZZ"], {}, INPUT, r"'ZZZZ' has no data"),
    ("zero_workers", None, ["--workers", "0"], {}, INPUT, r"--workers must be >= 1"),
    ("webhook_not_http", None, [], {"PARITY_ALERT_WEBHOOK_URL": "ftp://hooks.example.com/x"},
     INPUT, r"ftp://hooks\.example\.com/x.*not an http\(s\) URL"),
]


def _assert_one_paragraph(message: str, pattern: str) -> None:
    assert "Traceback" not in message
    assert message.startswith("parity: error: "), message
    assert "\n\n" not in message.strip() and len(message.strip().splitlines()) <= 3, message
    assert re.search(pattern, message, re.DOTALL), (pattern, message)


@pytest.mark.parametrize(("case", "damage", "args", "extra_env", "code", "pattern"), DATA_CASES,
                         ids=[c[0] for c in DATA_CASES])
def test_bad_run_input_is_refused_and_changes_nothing(baseline, env, tmp_path, capsys, case,
                                                      damage, args, extra_env, code, pattern):
    data = tmp_path / "data"
    shutil.copytree(baseline["data"], data)
    if damage:
        damage(data)
    for key, value in extra_env.items():
        env.setenv(key, value)
    artifacts = baseline["home"] / "artifacts"
    before = tree_hashes(artifacts)
    capsys.readouterr()

    assert cli.main(["run", "--data", str(data), *args]) == code
    _assert_one_paragraph(capsys.readouterr().err, pattern)
    assert tree_hashes(artifacts) == before, "no partial artifact, no index touched"


def test_non_integer_seed_is_an_argument_error(env, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--base-seed", "forty-two"])
    assert exit_info.value.code == INPUT
    assert "invalid int value: 'forty-two'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["diff", "nope", "nada"], ["verify", "nope"],
                                  ["diff", "only-one"]], ids=["diff", "verify", "diff_one_id"])
def test_unknown_or_incomplete_run_ids(baseline, env, capsys, argv):
    before = tree_hashes(baseline["home"] / "artifacts")
    assert cli.main(argv) == INPUT
    _assert_one_paragraph(capsys.readouterr().err, r"nope|two run ids")
    assert tree_hashes(baseline["home"] / "artifacts") == before


# --- damaged artifacts, on a private copy of the home --------------------------------------------

@pytest.fixture()
def home_copy(baseline, tmp_path, monkeypatch):
    copy = tmp_path / "home"
    # cp -a keeps the run view's hard links to the store's objects, as the real home has them
    subprocess.run(["cp", "-a", str(baseline["home"]), str(copy)], check=True)
    use_home(monkeypatch, copy)
    return copy


def test_verify_passes_on_an_intact_run(baseline, home_copy, capsys):
    assert cli.main(["verify", baseline["run_id"]]) == 0
    out = capsys.readouterr().out
    # every object of the run was re-hashed (the old wording counted model files)
    assert "all hashes verified" in out and int(re.search(r"; (\d+) objects", out)[1]) > 100


def _first(pattern: str, root: Path) -> Path:
    return sorted(root.rglob(pattern))[0]


def _edit(path: Path, old: str, new: str) -> None:
    """Edit a file in place, as `open(path, "w")` does: through a hard link, the object too."""
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1))


def _replace(path: Path, old: str, new: str) -> None:
    """Save a changed copy over the file, as many editors do (temp file, then rename)."""
    temp = path.with_name(path.name + ".new")
    temp.write_text(path.read_text().replace(old, new, 1))
    temp.replace(path)


def _delete_object_of(view_file: Path) -> None:
    """Delete the stored object a run view's file shows (same inode), not just the view."""
    objects = view_file.parents[0]
    while objects.name != "artifacts":
        objects = objects.parent
    inode = view_file.stat().st_ino
    next(p for p in (objects / "objects").rglob("*") if p.stat().st_ino == inode).unlink()


DAMAGE = {  # damage -> (edit, error pattern, diff refuses too)
    "corrupted_model": (lambda run: _edit(_first("lightgbm.txt", run), "leaf_value=",
                                          "leaf_value=1"),
                        r"lightgbm\.txt: object .*\.txt was modified or corrupted", True),
    "edited_snapshot": (lambda run: _edit(_first("fs_snapshot.json", run), '"train_seed":42',
                                          '"train_seed":43'),
                        r"fs_snapshot\.json: object .* was modified or corrupted", True),
    "edited_artifact": (lambda run: _edit(run / "ranked_targets" / "data.json", "42", "43"),
                        r"ranked_targets/data\.json: object .* (modified or corrupted)", True),
    "edited_metadata": (lambda run: _edit(run / "metadata.json", '"n":2000', '"n":1234'),
                        r"metadata\.json: object .* was modified or corrupted", True),
    "edited_manifest": (lambda run: _edit(run / "manifest.json", '"lightgbm":"',
                                          '"lightgbm":"9.9.9-'),
                        r"manifest\.json: object .* was modified or corrupted", True),
    "deleted_predictions": (lambda run: _delete_object_of(
        _first("*.parquet", run / "trained_models" / "predictions")),
        r"predictions/.*: object .* is missing from the store", True),
    # the object stays intact: diff compares the truth, verify names the edited view file
    "replaced_view_file": (lambda run: _replace(run / "metadata.json", '"n":2000', '"n":1234'),
                           r"metadata\.json was edited", False),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_artifacts_are_found_by_verify_and_diff(baseline, home_copy, capsys, damage):
    run_dir = home_copy / "artifacts" / "runs" / baseline["run_id"]
    edit, pattern, diff_refuses = DAMAGE[damage]
    edit(run_dir)
    damaged = tree_hashes(home_copy / "artifacts")
    assert cli.main(["verify", baseline["run_id"]]) == INTEGRITY
    _assert_one_paragraph(capsys.readouterr().err, pattern)
    diff_code = cli.main(["diff", baseline["run_id"], baseline["run_id"]])
    if diff_refuses:
        assert diff_code == INTEGRITY
        _assert_one_paragraph(capsys.readouterr().err, pattern)
    else:
        assert diff_code == 0 and "identical" in capsys.readouterr().out
    assert tree_hashes(home_copy / "artifacts") == damaged, "nothing repaired or rewritten"


def test_verify_all_lists_damaged_objects_with_their_runs(baseline, home_copy, capsys):
    DAMAGE["corrupted_model"][0](home_copy / "artifacts" / "runs" / baseline["run_id"])
    assert cli.main(["verify", "--all"]) == INTEGRITY
    out = capsys.readouterr().out
    assert re.search(rf"DAMAGED [0-9a-f]{{64}}\.txt: used by {baseline['run_id']}", out), out
    assert ", 1 damaged" in out


def test_index_that_is_not_json_stops_the_run_before_it_starts(baseline, home_copy, capsys):
    index = home_copy / "artifacts" / "globals" / INDEX_FILES["TRAINING"]
    index.write_text("{not json")
    damaged = tree_hashes(home_copy / "artifacts")
    assert cli.main(["run", "--data", str(baseline["data"])]) == INTEGRITY
    _assert_one_paragraph(capsys.readouterr().err, r"training_snapshot_index\.json")
    assert tree_hashes(home_copy / "artifacts") == damaged


# --- through the real console entry point, in a subprocess ---------------------------------------

def test_unwritable_home_is_a_storage_error(tmp_path, small_dataset):
    blocker = tmp_path / "home"
    blocker.write_text("a file where PARITY_HOME should be a folder")
    done = parity_cli(blocker, "run", "--data", str(small_dataset))
    assert done.returncode == STORAGE, done.stderr
    _assert_one_paragraph(done.stderr, re.escape(str(blocker)))
    assert blocker.read_text() == "a file where PARITY_HOME should be a folder"


def test_bad_file_error_reaches_the_terminal_without_traceback(tmp_path, small_dataset):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    _symbol_file(data, "MSFT").write_text("not parquet")
    done = parity_cli(tmp_path / "home", "run", "--data", str(data))
    assert done.returncode == INPUT
    _assert_one_paragraph(done.stderr, r"symbol MSFT: .*MSFT\.parquet is not a readable parquet")
    assert not (tmp_path / "home" / "artifacts" / "runs").exists(), "no run was started"
