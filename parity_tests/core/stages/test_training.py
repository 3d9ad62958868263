"""Training on a hand-built panel: real OOS metrics, reloadable artifacts, byte-identical reruns."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from parity_pipeline import constants
from parity_pipeline.core import hashing
from parity_pipeline.core.data.registry import registry_from_dict
from parity_pipeline.core.errors import ArtifactIntegrityError, ParityInputError
from parity_pipeline.core.stages import model_io, training
from parity_pipeline.core.store import reuse
from parity_pipeline.core.store.content import ContentStore

CS, SS = "CROSS_SECTIONAL", "SYMBOL_SPECIFIC"
FEATURES = ("sig_a", "sig_b", "noise_0", "noise_1")
SELECTED = {("fwd", CS): ["sig_a", "sig_b", "noise_0"], ("fwd", SS): ["sig_a", "noise_1"],
            ("up", CS): ["sig_a", "noise_0"], ("up", SS): ["sig_a", "sig_b"]}
FAST = training.TrainingConfig(lgbm_n_estimators=80)
PURGE = pd.Timedelta(minutes=15 + FAST.purge_buffer_minutes)


def make_panel(n_symbols: int = 6, n_bars: int = 600, seed: int = 11) -> pd.DataFrame:
    """Sessions of 30 five-minute bars; ``fwd`` and the label ``up`` lean on sig_a/sig_b."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2025-03-03 14:30", periods=n_bars // 30, freq="D", tz="UTC")
    ts = pd.DatetimeIndex([day + pd.Timedelta(minutes=5 * k) for day in days for k in range(30)])
    ts = ts.as_unit("ns")
    frames = []
    for i in range(n_symbols):
        x = {name: rng.standard_normal(n_bars) for name in FEATURES}
        x["noise_0"][rng.random(n_bars) < 0.05] = np.nan
        fwd = 0.6 * x["sig_a"] + 0.4 * x["sig_b"] + 0.7 * rng.standard_normal(n_bars)
        up = (x["sig_a"] + 0.8 * rng.standard_normal(n_bars) > 0).astype(float)
        fwd[-3:], up[-3:] = np.nan, np.nan
        frames.append(pd.DataFrame({"symbol": f"S/{i}", "ts": ts, **x, "fwd": fwd, "up": up}))
    panel = pd.concat(frames).sort_values(["ts", "symbol"], kind="mergesort")
    return panel.reset_index(drop=True)


def make_registry():
    columns = [{"name": f, "role": "feature", "timeframe": "5m", "lookback_bars": 1}
               for f in FEATURES]
    columns += [{"name": name, "role": "target", "task": task, "horizon_bars": 3,
                 "horizon_minutes": 15} for name, task in (("fwd", "regression"),
                                                            ("up", "binary"))]
    return registry_from_dict({"bar_minutes": 5, "interval": "5m", "columns": columns})


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return make_panel()


@pytest.fixture(scope="module")
def trained(panel, tmp_path_factory) -> tuple[training.TrainingResult, Path]:
    out_dir = tmp_path_factory.mktemp("run_a")
    return (training.train_models(panel, make_registry(), SELECTED, FAST, 42,
                                  ContentStore(out_dir)), out_dir)


def _predictions(out_dir: Path, model: training.TrainedModel) -> pd.DataFrame:
    """The stored predictions object (re-hashed on read)."""
    return ContentStore(out_dir).read_table(f"{model.predictions_sha256}.parquet")


def _model_file(out_dir: Path, model: training.TrainedModel) -> Path:
    """Where the store keeps the model: the object named by its model_sha256."""
    return ContentStore(out_dir).object_path(
        training.model_files(model)[f"trained_models/{model.model_path}"])


def test_one_model_per_unit_and_family_in_sorted_order(trained):
    result, _ = trained
    keys = [(m.target, m.view, m.symbol or "", m.family) for m in result.models]
    assert keys == sorted(keys) and len(keys) == 2 * (1 + 6 + 1 + 6)
    assert result.per_symbol_counts == {f"S/{i}": 600 for i in range(6)}
    assert result.n_effective == 3600 and result.train_seed == 42
    assert {m.model_path for m in result.models if m.symbol == "S/0"} == {
        "models/fwd/SYMBOL_SPECIFIC/S_0/lightgbm.txt", "models/up/SYMBOL_SPECIFIC/S_0/lightgbm.txt",
        "models/fwd/SYMBOL_SPECIFIC/S_0/sklearn_linear.json",
        "models/up/SYMBOL_SPECIFIC/S_0/sklearn_linear.json"}


def test_signal_is_found_out_of_sample(trained):
    result, _ = trained
    for model in result.models:
        if model.target == "fwd":
            assert model.metrics["spearman_ic"] > 0.3 and model.metrics["pearson"] > 0.3
        else:
            assert model.metrics["auc"] > 0.65 and model.metrics["auc_t_stat"] > 2


def test_metrics_equal_reference_computations_on_saved_predictions(trained):
    result, out_dir = trained
    for model in result.models:
        frame = _predictions(out_dir, model)
        y_true, y_pred = frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()
        if model.task == "binary":
            assert model.metrics["auc"] == pytest.approx(roc_auc_score(y_true, y_pred), abs=1e-12)
            assert model.metrics["base_rate"] == pytest.approx(y_true.mean(), abs=1e-12)
        elif model.view == CS:
            per_ts = [spearmanr(g["y_pred"], g["y_true"]).statistic for _, g in frame.groupby("ts")]
            assert model.metrics["spearman_ic"] == pytest.approx(np.mean(per_ts), abs=1e-12)
        else:
            assert model.metrics["spearman_ic"] == pytest.approx(
                spearmanr(y_pred, y_true).statistic, abs=1e-12)
            assert model.metrics["pearson"] == pytest.approx(pearsonr(y_true, y_pred).statistic)
            assert model.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((y_true - y_pred)**2)))
        assert model.metrics_sha256 == hashing.sha256_json(model.metrics)


def _newey_west_reference(values: np.ndarray, lags: int) -> float:
    """Independent HAC computation: the autocovariance matrix form with Bartlett weights."""
    n = len(values)
    dev = values - values.mean()
    gamma = [np.sum(dev[k:] * dev[: n - k]) / n for k in range(lags + 1)]
    long_run = gamma[0] + 2 * sum((1 - k / (lags + 1)) * gamma[k] for k in range(1, lags + 1))
    return values.mean() / np.sqrt(long_run / n)


def test_ic_t_stat_is_newey_west_over_per_timestamp_ics(trained):
    result, out_dir = trained
    model = next(m for m in result.models if (m.target, m.view) == ("fwd", CS))
    frame = _predictions(out_dir, model)
    per_ts = np.array([spearmanr(g["y_pred"], g["y_true"]).statistic
                       for _, g in frame.groupby("ts")])
    assert model.metrics["n_ic_values"] == len(per_ts)
    expected = _newey_west_reference(per_ts, lags=model_horizon_bars(model))
    assert model.metrics["ic_t_stat"] == pytest.approx(expected, rel=1e-9)
    naive = per_ts.mean() / (per_ts.std(ddof=0) / np.sqrt(len(per_ts)))
    assert abs(model.metrics["ic_t_stat"]) != pytest.approx(abs(naive))  # overlap is counted


def model_horizon_bars(model) -> int:
    return make_registry().target(model.target).horizon_bars


def test_predictions_are_the_validation_window_after_train_and_purge(trained, panel):
    result, out_dir = trained
    for model in result.models:
        frame = _predictions(out_dir, model)
        assert list(frame.columns) == ["symbol", "ts", "y_true", "y_pred"]
        assert frame.equals(frame.sort_values(["symbol", "ts"], ignore_index=True))
        assert model.predictions_sha256 == hashing.table_sha256(frame, sort_by=["symbol", "ts"])
        split = model.split
        assert split["test_start"] - split["train_end"] > PURGE
        assert frame["ts"].min() == split["test_start"] and len(frame) == model.n_valid
        assert model.n_effective == model.n_train + model.n_valid


def _validation_rows(panel: pd.DataFrame, model: training.TrainedModel) -> pd.DataFrame:
    rows = panel[panel[model.target].notna() & (panel["ts"] >= model.split["test_start"])]
    rows = rows if model.symbol is None else rows[rows["symbol"] == model.symbol]
    return rows.sort_values(["symbol", "ts"], kind="mergesort")


def test_saved_models_reload_and_reproduce_predictions(trained, panel):
    result, out_dir = trained
    for model in result.models:
        loaded = model_io.load_model(_model_file(out_dir, model), model.model_format,
                                     expected_sha256=model.model_sha256)
        assert loaded.features == model.features
        expected = _predictions(out_dir, model)["y_pred"].to_numpy()
        np.testing.assert_array_equal(loaded.predict(_validation_rows(panel, model)), expected)


@pytest.mark.parametrize("target", ["fwd", "up"])
def test_linear_artifact_matches_a_scikit_learn_reference(trained, panel, target):
    result, out_dir = trained
    model = next(m for m in result.models
                 if (m.target, m.view, m.family) == (target, CS, "sklearn_linear"))
    features = list(model.features)
    train = panel[panel[target].notna() & (panel["ts"] <= model.split["train_end"])]
    fill = train[features].median()
    estimator = (LogisticRegression(solver="newton-cholesky", max_iter=1000) if target == "up"
                 else Ridge(alpha=1.0))
    reference = make_pipeline(StandardScaler(), estimator)
    reference.fit(train[features].fillna(fill), train[target])
    valid = _validation_rows(panel, model)[features].fillna(fill)
    expected = (reference.predict_proba(valid)[:, 1] if target == "up"
                else reference.predict(valid))
    np.testing.assert_allclose(_predictions(out_dir, model)["y_pred"], expected, rtol=1e-10)


def test_tampered_model_fails_the_hash_check(trained, tmp_path):
    result, out_dir = trained
    model = result.models[0]
    copy = tmp_path / "model.txt"
    copy.write_text(_model_file(out_dir, model).read_text().replace("shrinkage", "shrinkage "))
    with pytest.raises(ArtifactIntegrityError, match="does not match"):
        model_io.load_model(copy, model.model_format, expected_sha256=model.model_sha256)


def test_lightgbm_is_configured_for_determinism(trained):
    result, out_dir = trained
    for model in (m for m in result.models if m.family == "lightgbm"):
        params = model.hyperparameters
        assert params["deterministic"] is True and params["force_row_wise"] is True
        assert params["num_threads"] == constants.LIGHTGBM_NUM_THREADS and params["seed"] == 42
        assert 1 <= model.best_iteration <= FAST.lgbm_n_estimators
        text = _model_file(out_dir, model).read_text()
        assert "[deterministic: 1]" in text and "[seed: 42]" in text


def test_two_runs_write_byte_identical_files_and_hashes(panel, trained, tmp_path):
    first, first_dir = trained
    second = training.train_models(panel, make_registry(), SELECTED, FAST, 42,
                                   ContentStore(tmp_path))
    assert hashing.sha256_json(second) == hashing.sha256_json(first)
    files = sorted(p.relative_to(first_dir) for p in first_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for name in files:
        assert (first_dir / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_hyperparameter_signature_ignores_the_seed(panel, trained, tmp_path):
    first, _ = trained
    selected = {("fwd", CS): SELECTED[("fwd", CS)]}
    other = training.train_models(panel, make_registry(), selected, FAST, 7, ContentStore(tmp_path))
    for model in other.models:
        twin = next(m for m in first.models if (m.target, m.view, m.symbol, m.family)
                    == (model.target, model.view, model.symbol, model.family))
        assert model.hyperparameters_signature == twin.hyperparameters_signature
        assert model.train_seed == 7


def test_table_has_one_row_per_model(trained):
    result, _ = trained
    table = training.training_table(result)
    assert len(table) == len(result.models)
    assert {"spearman_ic", "auc", "model_sha256", "n_train"} <= set(table.columns)


@pytest.mark.parametrize(("change", "match"), [
    (lambda p: p.assign(up=p["up"].where(p["ts"] >= p["ts"].iloc[-200], 1.0)),
     r"target=up, view=SYMBOL_SPECIFIC, symbol=S/0\): the training window holds one class"),
    (lambda p: p[p["ts"] < p["ts"].iloc[0] + pd.Timedelta(hours=2)], "train / .* validation"),
])
def test_untrainable_units_raise_with_their_name(panel, tmp_path, change, match):
    selected = {("up", SS): ["sig_a"]}
    with pytest.raises(ParityInputError, match=match):
        training.train_models(change(panel), make_registry(), selected, FAST, 42,
                              ContentStore(tmp_path))


def test_bad_configuration_raises(panel, tmp_path):
    with pytest.raises(ParityInputError, match="families"):
        training.train_models(panel, make_registry(), SELECTED,
                              dataclasses.replace(FAST, families=("xgboost",)), 42,
                              ContentStore(tmp_path))
    with pytest.raises(ParityInputError, match="declared features"):
        training.train_models(panel, make_registry(), {("fwd", CS): ["fwd"]}, FAST, 42,
                              ContentStore(tmp_path))


def test_no_model_still_writes_the_csv_header(trained):
    result, _ = trained
    empty = dataclasses.replace(result, models=())
    csv = training.training_table(empty).to_csv(index=False)
    assert csv.strip() == ",".join(training.TRAINING_TABLE_COLUMNS)
    full = training.training_table(result)
    assert set(training.TRAINING_TABLE_COLUMNS) <= set(full.columns)


def test_a_model_is_intact_only_while_both_files_hold_the_bytes_recorded(panel, tmp_path):
    selected = {("fwd", CS): SELECTED[("fwd", CS)]}
    store = ContentStore(tmp_path)
    model = training.train_models(panel, make_registry(), selected, FAST, 42, store).models[0]
    names = sorted(model.file_sha256)
    assert [name.split(".")[1] for name in names].count("parquet") == 1
    assert training.model_intact(model, store)
    for name in names:  # one changed byte in either file, then the file gone
        path = store.object_path(name)
        original = path.read_bytes()
        path.chmod(0o644)
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        assert not training.model_intact(model, store), name
        path.unlink()
        assert not training.model_intact(model, store), name
        path.write_bytes(original)
        assert training.model_intact(model, store)


def test_snapshot_publication_checks_files_by_their_written_bytes_and_refuses_a_changed_one(
        trained, tmp_path):
    from types import SimpleNamespace

    from parity_pipeline.core.repro.snapshot_index import verify_training_artifacts

    result, out_dir = trained
    model = result.models[0]
    store = ContentStore(shutil.copytree(out_dir, tmp_path / "store"))
    # verify_training_artifacts reads only the snapshot's artifacts: {view path: sha256}
    snapshot = SimpleNamespace(artifacts={model.model_path: model.model_sha256,
                                          model.predictions_path: model.predictions_sha256})
    written = dict(model.file_sha256)
    assert len(written) == 2
    verify_training_artifacts(store, snapshot, written)
    # a recorded digest that does not match falls back to the full check: intact, so it passes
    verify_training_artifacts(store, snapshot, {name: "0" * 64 for name in written})
    model_object = training.model_files(model)[f"trained_models/{model.model_path}"]
    path = store.object_path(model_object)
    path.write_text(path.read_text() + " ")
    for recorded in (written, {}):
        with pytest.raises(ArtifactIntegrityError, match=model.model_sha256[:12]):
            verify_training_artifacts(ContentStore(store.root), snapshot, recorded)


def _reused_units(frame: pd.DataFrame, store: ContentStore) -> dict[tuple[str, ...], bool]:
    memo = reuse.UnitMemo(store, "one-environment", enabled=True)
    with reuse.active(memo):
        training.train_models(frame, make_registry(), SELECTED, FAST, 42, store)
    return {tuple(label.split("|")[1:4]): reused for label, reused in memo.units.items()}


def test_a_model_is_recomputed_exactly_when_a_column_it_reads_changed(panel, tmp_path):
    """The reuse key holds each symbol's rows of the columns a unit reads: changing ``noise_1``
    of one symbol (read only by ``fwd``'s symbol-specific models) recomputes that symbol's two
    ``fwd`` models and nothing else; changing ``sig_a`` of that symbol (read by every unit)
    recomputes its own models and the pooled ones, never another symbol's."""
    store = ContentStore(tmp_path)
    assert not any(_reused_units(panel, store).values())
    symbol = "S/1"
    noise = panel.copy()
    noise.loc[noise["symbol"] == symbol, "noise_1"] += 0.5
    reused = _reused_units(noise, store)
    assert {unit for unit, was in reused.items() if not was} == {("fwd", SS, symbol)}
    signal = panel.copy()
    signal.loc[signal["symbol"] == symbol, "sig_a"] += 0.01
    reused = _reused_units(signal, store)
    assert len(reused) == 2 * 6 + 2
    for (target, view, unit_symbol), was in reused.items():
        assert was == (view == SS and unit_symbol != symbol), (target, view, unit_symbol)
