"""Reuse across runs (core.store.reuse): a reused run gives a recomputed run's fingerprints, and
after one symbol's data changes only what depends on it is recomputed."""

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from parity_pipeline.core.store import reuse
from parity_pipeline.core.store.content import ContentStore
from parity_pipeline.core.store.reuse import UnitMemo, unit_label
from parity_pipeline.runner import RunRequestOptions, execute_pipeline
from parity_tests.helpers import read_json, use_home

CHANGED = "AAPL"
# a return and a barrier label (both routed on the small sample): every kind of fit, a quarter of
# the run
TARGETS = ["fwd_ret_60m", "y_will_peak_60m_0.8"]


# --- the memo on its own -----------------------------------------------------------------------

def _memo(tmp_path: Path, enabled: bool = True, environment: str = "env-1") -> UnitMemo:
    return UnitMemo(ContentStore(tmp_path / "artifacts"), environment, enabled)


def _calls():
    calls = []

    def compute():
        calls.append(1)
        return {"fit": len(calls)}
    return calls, compute


def test_same_inputs_reuse_the_stored_result_and_new_inputs_compute(tmp_path):
    x = np.arange(12.0).reshape(4, 3)
    calls, compute = _calls()
    first = _memo(tmp_path).reused_or_computed("fit", {"x": x, "seed": 42}, compute)
    again = _memo(tmp_path).reused_or_computed("fit", {"x": x.copy(), "seed": 42}, compute)
    assert first == again == {"fit": 1} and len(calls) == 1
    changed = x.copy()
    changed[3, 2] = np.nextafter(changed[3, 2], np.inf)  # one ulp in one cell
    for inputs in ({"x": changed, "seed": 42}, {"x": x, "seed": 43}):
        _memo(tmp_path).reused_or_computed("fit", inputs, compute)
    _memo(tmp_path, environment="env-2").reused_or_computed("fit", {"x": x, "seed": 42},
                                                            compute)
    assert len(calls) == 4, "new data, a new seed or new code/libraries must recompute"


def test_a_shared_input_keys_as_its_value_and_is_built_once_and_only_for_a_key(tmp_path):
    frame = pd.DataFrame({"symbol": ["A", "B"], "x": [1.0, 2.0]})
    builds = []

    def shared():
        return reuse.SharedInput(lambda: builds.append(1) or frame.copy())

    memo = _memo(tmp_path)
    rows = shared()
    assert memo.key("fit", {"rows": rows, "family": "a"}) == memo.key("fit", {"rows": frame,
                                                                              "family": "a"})
    memo.key("fit", {"rows": rows, "family": "b"})
    assert len(builds) == 1, "built and hashed once for every key that reads it"
    other = frame.assign(x=[1.0, 3.0])
    assert memo.key("fit", {"rows": reuse.SharedInput(lambda: other)}) != \
        memo.key("fit", {"rows": rows})
    calls, compute = _calls()
    UnitMemo(None, "env-1", enabled=False).reused_or_computed("fit", {"rows": shared()}, compute)
    assert len(calls) == 1 and len(builds) == 1, "no store, no key: the input is never built"


def _panel(order: str = "symbol") -> pd.DataFrame:
    frame = pd.DataFrame({
        "symbol": ["A", "A", "A", "B", "B", "B"],
        "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"] * 2, utc=True),
        "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "y": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
    return frame.sort_values([order, "ts" if order == "symbol" else "symbol"],
                             ignore_index=True)


def test_panel_columns_digest_each_symbols_column_once_for_every_key_sharing_them(
        tmp_path, monkeypatch):
    panel = _panel()
    hashed = []
    real_digest = reuse.digest

    def counted(value):
        if isinstance(value, np.ndarray | pd.DataFrame):
            hashed.append(value)
        return real_digest(value)

    memo = _memo(tmp_path)
    alone = [memo.key("fit", {"data": reuse.panel_columns(panel, ("ts", "x"), symbols)})
             for symbols in (["A"], None)]
    monkeypatch.setattr(reuse, "digest", counted)
    real_order = reuse.rows_in_order_sha256
    orders = []
    monkeypatch.setattr(reuse, "rows_in_order_sha256",  # the pooled rows' symbol order
                        lambda frame: orders.append(list(frame.columns)) or real_order(frame))
    with reuse.panel_digests(panel):
        shared = [memo.key("fit", {"data": reuse.panel_columns(panel, ("ts", "x"), symbols)})
                  for symbols in (["A"], None, ["B"], None)]
        cells, interleavings = len(hashed), orders.count(["symbol"])
        # a copy with the same values is another frame: digested on its own, to the same key
        assert memo.key("fit", {"data": reuse.panel_columns(panel.copy(), ("ts", "x"))}) == \
            shared[1]
    assert shared[:2] == alone, "sharing the digests does not change a key"
    assert (cells, interleavings) == (4, 1), \
        "2 symbols x 2 columns, and the pooled rows' order, hashed once each"
    assert len(set(shared[:3])) == 3


def test_panel_columns_change_with_one_symbols_values_and_a_pooled_fit_with_the_row_order(
        tmp_path):
    memo = _memo(tmp_path)

    def keys(panel):
        return {name: memo.key("fit", {"data": reuse.panel_columns(panel, ("ts", "x"), symbols)})
                for name, symbols in (("A", ["A"]), ("B", ["B"]), ("pooled", None))}
    before = keys(_panel())
    changed = _panel()
    changed.loc[changed["symbol"] == "B", "x"] += 1e-9
    after = keys(changed)
    assert after["A"] == before["A"] and after["B"] != before["B"]
    assert after["pooled"] != before["pooled"]
    interleaved = keys(_panel(order="ts"))  # the same rows, the symbols interleaved by time
    assert interleaved["A"] == before["A"] and interleaved["B"] == before["B"]
    assert interleaved["pooled"] != before["pooled"], "a pooled fit reads the rows in order"
    assert keys(_panel())["pooled"] == before["pooled"]
    with pytest.raises(ValueError, match=r"\['C'\] have no rows"):
        reuse.panel_columns(_panel(), ("x",), ["C"]).digest()


def test_an_object_array_is_refused_as_a_key_input(tmp_path):
    """Its bytes are the objects' addresses: a key made of them would differ in every process
    (a reuse that never happens) or, worse, match by accident."""
    with pytest.raises(TypeError, match="object array"):
        _memo(tmp_path).key("fit", {"x": np.array(["a", "b"], dtype=object)})
    assert _memo(tmp_path).key("fit", {"x": np.arange(3.0)}) == \
        _memo(tmp_path).key("fit", {"x": np.arange(3.0)})


def test_no_reuse_recomputes_but_records_for_the_next_run(tmp_path):
    calls, compute = _calls()
    off = _memo(tmp_path, enabled=False)
    off.reused_or_computed("fit", {"a": 1}, compute)
    off.reused_or_computed("fit", {"a": 1}, compute)
    assert len(calls) == 2
    on = _memo(tmp_path)
    assert on.reused_or_computed("fit", {"a": 1}, compute) == {"fit": 2}
    assert len(calls) == 2 and (on.hits, on.misses) == (1, 0)


def test_stored_results_and_keys_are_written_without_fsync_unlike_artifacts(tmp_path,
                                                                             monkeypatch):
    """A reuse record a crash loses or damages only costs a recomputation (the next test), so
    it skips the two fsyncs each durable object write pays."""
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    memo = _memo(tmp_path)
    memo.reused_or_computed("fit", {"a": 1}, lambda: np.arange(5.0))
    assert synced == [] and memo.content.object_path(
        json.loads(memo._entry(memo.key("fit", {"a": 1})).read_text())["object"]).is_file()
    memo.content.put_bytes(b"an artifact", ".txt")
    assert len(synced) == 2, "the file and its folder"


def test_a_damaged_stored_result_is_recomputed_not_reused(tmp_path):
    calls, compute = _calls()
    memo = _memo(tmp_path)
    memo.reused_or_computed("fit", {"a": 1}, compute)
    entry = json.loads(memo._entry(memo.key("fit", {"a": 1})).read_text())
    path = memo.content.object_path(entry["object"])
    path.chmod(0o644)
    path.write_bytes(pickle.dumps({"fit": "tampered"}))
    assert _memo(tmp_path).reused_or_computed("fit", {"a": 1}, compute) == {"fit": 2}
    assert len(calls) == 2
    # and a result that fails its own validity test (e.g. its model file is gone) too
    assert _memo(tmp_path).reused_or_computed("fit", {"a": 1}, compute,
                                              valid=lambda _v: False) == {"fit": 3}


def test_a_unit_is_reused_only_when_none_of_its_fits_was_computed(tmp_path):
    memo = _memo(tmp_path)
    memo.reused_or_computed("fit", {"a": 1}, lambda: 1)
    with reuse.active(_memo(tmp_path)) as again:
        with again.unit("TRAINING|t|SYMBOL_SPECIFIC|AAA|lightgbm"):
            reuse.reused_or_computed("fit", {"a": 1}, lambda: 1)
        with again.unit("TRAINING|t|SYMBOL_SPECIFIC|BBB|lightgbm"):
            reuse.reused_or_computed("fit", {"a": 1}, lambda: 1)
            reuse.reused_or_computed("fit", {"a": 2}, lambda: 2)
    assert again.units == {"TRAINING|t|SYMBOL_SPECIFIC|AAA|lightgbm": True,
                           "TRAINING|t|SYMBOL_SPECIFIC|BBB|lightgbm": False}
    assert reuse.current() is reuse.COMPUTE_ONLY  # outside `active` nothing is reused


def test_a_unit_computed_in_pieces_is_reused_only_when_every_piece_reused_it(tmp_path):
    """A ranking SYMBOL_SPECIFIC unit of many symbols is scored in groups (one piece each):
    one group that fits again makes the unit computed, whichever part reported last."""
    memo = _memo(tmp_path)
    memo.reused_or_computed("fit", {"group": 1}, lambda: 1)
    reports = []
    for group in (1, 2):  # group 2's fit is new
        with reuse.active(_memo(tmp_path)) as piece, piece.unit("TARGET_RANKING|t|SS"):
            reuse.reused_or_computed("fit", {"group": group}, lambda: 0)
        reports.append(piece.units)
    assert reports == [{"TARGET_RANKING|t|SS": True}, {"TARGET_RANKING|t|SS": False}]
    for order in (reports, reports[::-1]):
        assert reuse.all_reused([*order, {"TARGET_RANKING|t|CS": True}]) == {
            "TARGET_RANKING|t|SS": False, "TARGET_RANKING|t|CS": True}
    assert reuse.all_reused([reports[0], reports[0]]) == {"TARGET_RANKING|t|SS": True}


def _target_work(fit_inputs):
    """A target's work as the stages do it: two units of one fit each."""
    def work():
        memo = reuse.current()
        for label, inputs in zip(("FS|t|CS", "FS|t|SS"), fit_inputs, strict=True):
            with memo.unit(label):
                reuse.reused_or_computed("fit", inputs, lambda inputs=inputs: inputs["a"])
        return "result"
    return work


def test_a_whole_target_is_reused_in_one_load_and_its_units_are_reported_reused(tmp_path):
    with reuse.active(_memo(tmp_path)) as first:
        first.whole("target", {"panel": "p1"}, _target_work([{"a": 1}, {"a": 2}]))
    assert first.units == {"FS|t|CS": False, "FS|t|SS": False} and first.misses == 2
    with reuse.active(_memo(tmp_path)) as again:
        assert again.whole("target", {"panel": "p1"}, _target_work([{"a": 1}, {"a": 2}])) \
            == "result"
    assert again.units == {"FS|t|CS": True, "FS|t|SS": True}
    assert (again.hits, again.misses) == (1, 0)  # one load, no unit keyed or fitted
    # new whole inputs (one symbol's bars changed): unit by unit, the unchanged unit reused
    with reuse.active(_memo(tmp_path)) as changed:
        changed.whole("target", {"panel": "p2"}, _target_work([{"a": 1}, {"a": 3}]))
    assert changed.units == {"FS|t|CS": True, "FS|t|SS": False}
    # a stored whole that is no longer valid (a model file damaged) is worked unit by unit
    with reuse.active(_memo(tmp_path)) as invalid:
        invalid.whole("target", {"panel": "p1"}, _target_work([{"a": 1}, {"a": 2}]),
                      valid=lambda _result: False)
    assert invalid.units == {"FS|t|CS": True, "FS|t|SS": True} and invalid.hits == 2


# --- whole runs --------------------------------------------------------------------------------

def _changed_copy(small_dataset: Path, target: Path) -> Path:
    """The dataset with every feature of one symbol's last 200 bars nudged (new data)."""
    shutil.copytree(small_dataset, target)
    path = next(target.glob(f"interval=*/symbol={CHANGED}/{CHANGED}.parquet"))
    frame = pd.read_parquet(path)
    features = [c for c in frame.columns if c.startswith(("ret_", "vol_", "range_", "rsi_"))]
    frame.loc[frame.index[-200:], features] *= 1.01
    frame.to_parquet(path, index=False)
    return target


def _snapshots(home: Path, run_id: str) -> dict[tuple, dict]:
    """Every unit's snapshot file of a run, keyed by (stage, target, view, symbol, family)."""
    found = {}
    for path in (home / "artifacts" / "runs" / run_id).glob("*/**/*_snapshot.json"):
        snap = read_json(path)
        found[(snap["stage"], snap["target"], snap["view"], snap["symbol"] or "",
               snap.get("model_family", ""))] = snap
    return found


def _fingerprints(home: Path, run_id: str) -> list[dict]:
    return read_json(home / "artifacts" / "runs" / run_id / "snapshots" / "data.json")["entries"]


@pytest.fixture(scope="module")
def reuse_runs(small_dataset, tmp_path_factory):
    base = tmp_path_factory.mktemp("reuse")
    changed = _changed_copy(small_dataset, base / "changed")
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, base / "nightly")
        for name, data, flag in (("first", small_dataset, True), ("unchanged", small_dataset, True),
                                 ("changed", changed, True)):
            outcome = execute_pipeline(RunRequestOptions(data_dir=str(data), reuse=flag,
                                                         targets=TARGETS))
            assert outcome.exit_code == 0, outcome.summary
            runs[name] = (base / "nightly", outcome.run_id)
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, base / "fresh")
        outcome = execute_pipeline(RunRequestOptions(data_dir=str(changed), reuse=False,
                                                     targets=TARGETS))
        assert outcome.exit_code == 0, outcome.summary
        runs["recomputed"] = (base / "fresh", outcome.run_id)
    return runs


@pytest.mark.slow
def test_a_reused_run_has_the_fingerprints_of_the_run_that_computed(reuse_runs):
    first, unchanged = reuse_runs["first"], reuse_runs["unchanged"]
    assert _fingerprints(*unchanged) == _fingerprints(*first)
    assert not any(s["reused"] for s in _snapshots(*first).values())
    snapshots = _snapshots(*unchanged)
    fitted = [s for s in snapshots.values() if s["comparison_group"]["n_effective"] > 0]
    assert len(fitted) > 20 and all(s["reused"] for s in fitted)


@pytest.mark.slow
def test_after_one_symbol_changes_only_what_depends_on_it_is_recomputed(reuse_runs):
    # correct: the partly reused run has the fingerprints of a run that recomputed everything
    assert _fingerprints(*reuse_runs["changed"]) == _fingerprints(*reuse_runs["recomputed"])
    before, after = _snapshots(*reuse_runs["first"]), _snapshots(*reuse_runs["changed"])
    training = {key: snap for key, snap in after.items() if key[0] == "TRAINING"}
    recomputed = sorted(key for key, snap in training.items() if not snap["reused"])
    for key, snap in training.items():
        stage, target, view, symbol, family = key
        if view == "CROSS_SECTIONAL" or symbol == CHANGED:
            assert not snap["reused"], key  # pooled or the changed symbol's own: new inputs
        else:  # another symbol's model: reused exactly when it was offered the same features
            same = snap["feature_fingerprint_output"] == before[key]["feature_fingerprint_output"]
            assert snap["reused"] == same, key
    assert any(snap["reused"] for snap in training.values()), recomputed
    # ranking and selection pool every symbol's rows or folds in a unit: all recomputed
    pooled = [s for k, s in after.items() if k[0] in ("TARGET_RANKING", "FEATURE_SELECTION")]
    assert pooled and not any(s["reused"] for s in pooled)


def test_unit_labels_name_a_model_by_symbol_and_family_and_other_units_by_view():
    assert unit_label("TRAINING", "t", "SYMBOL_SPECIFIC", CHANGED, "lightgbm") == \
        f"TRAINING|t|SYMBOL_SPECIFIC|{CHANGED}|lightgbm"
    assert unit_label("FEATURE_SELECTION", "t", "CROSS_SECTIONAL") == \
        "FEATURE_SELECTION|t|CROSS_SECTIONAL"
