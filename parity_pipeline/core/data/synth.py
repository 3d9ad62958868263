"""Synthetic labeled 5-minute bars with a planted, documented signal (DESIGN §2).

Each symbol carries a latent order flow ``f_t`` (AR(1)) seen only through ``buy_volume``; the
next bar's log return leans on it. So the ``flow_imb_*`` features predict ``fwd_ret_*`` and the
barrier labels, while ``noise_*`` features and the placebo targets are independent of everything.
``ground_truth.json`` records which is which, so a pipeline run can be checked against it.

Features at row ``t`` read bars ``<= t`` only (:func:`compute_features`); labels read the future
(:func:`compute_labels`). Every random draw comes from :func:`derive_seed`, so equal arguments
give byte-identical files.
"""

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from parity_pipeline.core.data.registry import REGISTRY_FILENAME
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import derive_seed

logger = logging.getLogger(__name__)

GENERATOR_NAME = "parity-synth"
GENERATOR_VERSION = "1"
INTERVAL, BAR_MINUTES, BARS_PER_SESSION = "5m", 5, 78
LAST_SESSION = "2026-10-30"
MIN_ROWS = 200
TIMEFRAME_BARS = {"5m": 1, "15m": 3, "1h": 12, "1d": BARS_PER_SESSION}
TICKERS = (
    "AAPL MSFT NVDA AMZN GOOGL META TSLA JPM XOM JNJ V PG MA HD CVX MRK ABBV PEP KO AVGO "
    "COST WMT MCD CSCO ADBE CRM ACN TMO ABT LIN NFLX AMD ORCL DHR TXN NKE PM NEE UNH BAC "
    "WFC INTC QCOM HON UPS LOW IBM AMGN CAT GS MS SBUX INTU GE BA MMM DE BLK SPGI AXP "
    "ISRG MDT GILD LMT RTX SYK BKNG ADP MDLZ CVS C T VZ CMCSA DIS PFE BMY MO SO DUK "
    "PLD AMT CB CI ELV ZTS TGT USB PNC SCHW MU AMAT LRCX ADI NOW PYPL F GM COP SLB").split()
# The planted signal: flow persistence, its stationary scale, and the return loading (in units
# of the bar's own volatility), tuned so flow_imb_15m vs fwd_ret_60m has an IC of about 0.2.
FLOW_PHI, FLOW_STD, FLOW_ALPHA = 0.97, 0.6, 0.17
MARKET_DAILY_VOL = 0.009
HORIZON_MINUTES = (15, 30, 60, 120)
BARRIER_BARS, BARRIER_K = 12, 0.8
PLANTED_FEATURES = ["flow_imb_15m", "flow_imb_1h", "flow_imb_5m"]
NOISE_FEATURES = [f"noise_{i}" for i in range(1, 5)]
PLACEBO_TARGETS = ["fwd_placebo_60m", "y_coinflip_60m"]
BARRIER_TARGETS = [f"y_will_peak_60m_{BARRIER_K}", f"y_will_valley_60m_{BARRIER_K}"]
LABEL_SIDE = ["fwd_high_60m", "fwd_low_60m"]


@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    symbols: tuple[str, ...]
    n_rows: int
    files: tuple[Path, ...]  # every file written, sorted


def synthesize_dataset(out_dir: Path, n_symbols: int = 10, n_rows: int = 20000,
                       seed: int = 42) -> SynthSummary:
    """Write the dataset into ``out_dir`` atomically (built beside it, then renamed into place)."""
    out_dir = Path(out_dir)
    _check_arguments(out_dir, n_symbols, n_rows, seed)
    symbols = tuple(TICKERS[:n_symbols])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _write_dataset(staging, symbols, n_rows, seed)
        staging.chmod(0o755)  # mkdtemp makes it owner-only
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); a directory cannot be replaced otherwise
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = tuple(sorted(p for p in out_dir.rglob("*") if p.is_file()))
    logger.info("synthesized %d symbols x %d rows into %s", n_symbols, n_rows, out_dir)
    return SynthSummary(out_dir=out_dir, symbols=symbols, n_rows=n_rows, files=files)


def _check_arguments(out_dir: Path, n_symbols: int, n_rows: int, seed: int) -> None:
    if not 1 <= n_symbols <= len(TICKERS):
        raise ParityInputError(f"n_symbols must be between 1 and {len(TICKERS)}, got {n_symbols}")
    if n_rows < MIN_ROWS:
        raise ParityInputError(f"n_rows must be at least {MIN_ROWS}, got {n_rows}")
    if seed < 0:
        raise ParityInputError(f"seed must be a non-negative integer, got {seed}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ParityInputError(f"output directory {out_dir} already exists and is not empty; "
                               "remove it or choose another --out")


def _write_dataset(root: Path, symbols: tuple[str, ...], n_rows: int, seed: int) -> None:
    ts, bar_of_day = session_calendar(n_rows)
    market = _market_returns(seed, bar_of_day)
    lookbacks: dict[str, tuple[str, int]] = {}
    for symbol in symbols:
        frame, lookbacks = _symbol_frame(symbol, seed, ts, bar_of_day, market)
        path = root / f"interval={INTERVAL}" / f"symbol={symbol}" / f"{symbol}.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                       row_group_size=10_000)
    _write_json(root / REGISTRY_FILENAME, _registry(lookbacks))
    _write_json(root / "ground_truth.json", _ground_truth())
    _write_json(root / "dataset.json", {
        "generator": GENERATOR_NAME, "generator_version": GENERATOR_VERSION, "seed": seed,
        "n_symbols": len(symbols), "n_rows": n_rows, "symbols": list(symbols),
        "interval": INTERVAL, "calendar": (
            f"regular-hours {INTERVAL} bars, bar starts 09:30-15:55 America/New_York "
            f"({BARS_PER_SESSION} per session), Monday-Friday with no holidays, last session "
            f"{LAST_SESSION}; the last n_rows bars (first session may be partial); ts in UTC")})


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def session_calendar(n_rows: int) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The last ``n_rows`` bar starts (UTC) ending on ``LAST_SESSION``, and each bar's slot."""
    n_sessions = -(-n_rows // BARS_PER_SESSION)
    days = pd.bdate_range(end=LAST_SESSION, periods=n_sessions).as_unit("ns")
    offsets = pd.timedelta_range(start="9h30min", periods=BARS_PER_SESSION, freq="5min")
    local = days.to_numpy()[:, None] + offsets.as_unit("ns").to_numpy()[None, :]
    ts = pd.DatetimeIndex(local.ravel()).tz_localize("America/New_York").tz_convert("UTC")
    slots = np.tile(np.arange(BARS_PER_SESSION), n_sessions)
    return ts[-n_rows:].as_unit("ns"), slots[-n_rows:]


def _intraday_vol(bar_of_day: np.ndarray) -> np.ndarray:
    # U-shaped: busier at the open and close, as in real sessions.
    centred = (bar_of_day - (BARS_PER_SESSION - 1) / 2) / ((BARS_PER_SESSION - 1) / 2)
    return (1 + 0.8 * centred**2) / 1.27


def _market_returns(seed: int, bar_of_day: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(derive_seed(seed, "SYNTH", purpose="market"))
    bar_vol = MARKET_DAILY_VOL / np.sqrt(BARS_PER_SESSION) * _intraday_vol(bar_of_day)
    return bar_vol * rng.standard_normal(len(bar_of_day))


def _rng(seed: int, symbol: str, purpose: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, "SYNTH", symbol=symbol, purpose=purpose))


def _latent_flow(rng: np.random.Generator, n: int) -> np.ndarray:
    # AR(1) f_t = phi f_{t-1} + e_t started in its stationary law; an EMA with weight 1 - phi
    # is exactly that recursion, and runs vectorized.
    step_std = FLOW_STD * np.sqrt(1 - FLOW_PHI**2)
    scaled = rng.standard_normal(n) * step_std / (1 - FLOW_PHI)
    scaled[0] = FLOW_STD * rng.standard_normal()
    return pd.Series(scaled).ewm(alpha=1 - FLOW_PHI, adjust=False).mean().to_numpy()


def simulate_bars(symbol: str, seed: int, ts: pd.DatetimeIndex, bar_of_day: np.ndarray,
                  market: np.ndarray) -> pd.DataFrame:
    """One symbol's bars: r_{t+1} = alpha f_t sigma_{t+1} + beta m_{t+1} + sigma_{t+1} eps."""
    n = len(ts)
    params = _rng(seed, symbol, "params").uniform(size=4)
    daily_vol, beta = 0.012 + 0.023 * params[0], 0.6 + 0.9 * params[1]
    start_price, base_volume = 20 * 25 ** params[2], 2e4 * 25 ** params[3]
    flow = _latent_flow(_rng(seed, symbol, "flow"), n)
    bar_vol = daily_vol / np.sqrt(BARS_PER_SESSION) * _intraday_vol(bar_of_day)
    shocks = _rng(seed, symbol, "returns").standard_normal((3, n))
    log_ret = np.concatenate([[0.0], FLOW_ALPHA * flow[:-1] * bar_vol[1:]])
    log_ret += beta * market + bar_vol * shocks[0]
    log_ret[0] = 0.0
    close = start_price * np.exp(np.cumsum(log_ret))
    open_ = np.concatenate([[start_price], close[:-1]])
    # Wicks beyond the open/close body, a fraction of the bar's volatility.
    high = np.maximum(open_, close) * np.exp(0.5 * bar_vol * np.abs(shocks[1]))
    low = np.minimum(open_, close) * np.exp(-0.5 * bar_vol * np.abs(shocks[2]))
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close,
                         **_volumes(_rng(seed, symbol, "volume"), base_volume, flow, bar_of_day,
                                    np.abs(shocks[0]))})


def _volumes(rng: np.random.Generator, base_volume: float, flow: np.ndarray,
             bar_of_day: np.ndarray, abs_shock: np.ndarray) -> dict[str, np.ndarray]:
    # Volume rises with intraday activity and with the bar's move; the buy share reveals the
    # latent flow through a noisy tanh (the only channel through which the flow is observable).
    draws = rng.standard_normal((2, len(flow)))
    log_volume = np.log(base_volume) + 0.5 * (_intraday_vol(bar_of_day) - 1)
    volume = np.round(np.exp(log_volume + 0.35 * draws[0] + 0.3 * abs_shock)) + 1
    buy_share = 0.5 + 0.5 * np.tanh(flow + 0.3 * draws[1])
    return {"volume": volume, "buy_volume": np.round(volume * buy_share)}


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Features of ONE symbol's bars (sorted by ts); row t reads bars <= t only."""
    return pd.DataFrame({name: series for name, (series, _, _) in _feature_table(bars).items()},
                        index=bars.index)


def _feature_table(bars: pd.DataFrame) -> dict[str, tuple[pd.Series, str, int]]:
    """name -> (values, timeframe, lookback_bars)."""
    close, high, low = bars["close"], bars["high"], bars["low"]
    log_ret = np.log(close).diff()
    flow_imbalance = 2 * bars["buy_volume"] / bars["volume"] - 1
    log_volume = np.log(bars["volume"])
    table: dict[str, tuple[pd.Series, str, int]] = {}
    for tf, k in TIMEFRAME_BARS.items():
        top, bottom = high.rolling(k).max(), low.rolling(k).min()
        ref_bars = 5 * BARS_PER_SESSION if tf == "1d" else BARS_PER_SESSION
        ref_volume = log_volume.rolling(ref_bars)
        table |= {f"ret_{tf}": (close / close.shift(k) - 1, tf, k),
                  f"range_{tf}": ((top - bottom) / close, tf, k),
                  f"close_pos_{tf}": ((close - bottom) / (top - bottom), tf, k),
                  f"flow_imb_{tf}": (flow_imbalance.rolling(k).mean(), tf, k),
                  f"volz_{tf}": ((log_volume.rolling(k).mean() - ref_volume.mean())
                                 / ref_volume.std(), tf, ref_bars)}
        if k > 1:
            ema = close.ewm(span=k, adjust=False, min_periods=k).mean()
            table |= {f"vol_{tf}": (log_ret.rolling(k).std(), tf, k),
                      f"rsi_{tf}": (_rsi(log_ret, 4 * k), tf, 4 * k),
                      f"ema_ratio_{tf}": (close / ema - 1, tf, k)}
    table["vol_ratio_1h"] = (table["vol_1h"][0] / table["vol_1d"][0] - 1, "1h", BARS_PER_SESSION)
    return table


def _rsi(log_ret: pd.Series, window: int) -> pd.Series:
    # Simple-average RSI: no recursion, so a row never depends on where the history starts.
    gains = log_ret.clip(lower=0).rolling(window).mean()
    losses = (-log_ret).clip(lower=0).rolling(window).mean()
    return 100 * gains / (gains + losses)


def compute_labels(bars: pd.DataFrame) -> pd.DataFrame:
    """Targets and label-side columns of ONE symbol's bars; these read the future."""
    close, n_ahead = bars["close"], BARRIER_BARS
    labels = {f"fwd_ret_{m}m": close.shift(-(m // BAR_MINUTES)) / close - 1
              for m in HORIZON_MINUTES}
    # max/min over bars t+1..t+12: the trailing window that ends 12 bars later.
    fwd_high = bars["high"].rolling(n_ahead).max().shift(-n_ahead) / close - 1
    fwd_low = bars["low"].rolling(n_ahead).min().shift(-n_ahead) / close - 1
    sigma = np.log(close).diff().rolling(BARS_PER_SESSION).std() * np.sqrt(n_ahead)
    known = fwd_high.notna() & sigma.notna()
    labels[BARRIER_TARGETS[0]] = (fwd_high >= BARRIER_K * sigma).astype(float).where(known)
    labels[BARRIER_TARGETS[1]] = (-fwd_low >= BARRIER_K * sigma).astype(float).where(known)
    labels |= {"fwd_high_60m": fwd_high, "fwd_low_60m": fwd_low}
    return pd.DataFrame(labels, index=bars.index)


def _placebos(rng: np.random.Generator, n: int, bar_scale: float) -> dict[str, pd.Series]:
    # Forward 12-bar sums of series that enter no price or feature: same shape, zero signal.
    draws = pd.DataFrame(rng.standard_normal((n, 2)) * bar_scale)
    forward = draws.rolling(BARRIER_BARS).sum().shift(-BARRIER_BARS)
    return {"fwd_placebo_60m": forward[0],
            "y_coinflip_60m": (forward[1] > 0).astype(float).where(forward[1].notna())}


def _symbol_frame(symbol: str, seed: int, ts: pd.DatetimeIndex, bar_of_day: np.ndarray,
                  market: np.ndarray) -> tuple[pd.DataFrame, dict[str, tuple[str, int]]]:
    """The stored table of one symbol, and each feature's (timeframe, lookback_bars)."""
    bars = simulate_bars(symbol, seed, ts, bar_of_day, market)
    table = _feature_table(bars)
    noise_draws = _rng(seed, symbol, "noise_features").standard_normal(
        (len(bars), len(NOISE_FEATURES)))
    # Placebos on the symbol's own return scale, so they look like returns to a model.
    return_scale = float(np.log(bars["close"]).diff().std())
    placebos = _placebos(_rng(seed, symbol, "placebo"), len(bars), return_scale)
    columns = {name: values for name, (values, _, _) in table.items()}
    columns |= dict(zip(NOISE_FEATURES, noise_draws.T, strict=True))
    columns |= dict(compute_labels(bars)) | placebos
    frame = pd.concat([bars, pd.DataFrame(columns, index=bars.index)], axis=1)
    lookbacks = {name: (tf, lookback) for name, (_, tf, lookback) in table.items()}
    return frame, lookbacks | {name: ("5m", 1) for name in NOISE_FEATURES}


def _registry(lookbacks: dict[str, tuple[str, int]]) -> dict:
    columns: list[dict[str, str | int]] = [{"name": "ts", "role": "timestamp"},
                                           {"name": "buy_volume", "role": "raw"}]
    columns += [{"name": c, "role": "ohlcv"} for c in ("open", "high", "low", "close", "volume")]
    columns += [{"name": name, "role": "feature", "timeframe": tf, "lookback_bars": lookback}
                for name, (tf, lookback) in lookbacks.items()]
    columns += [{"name": name, "role": "label_side", "horizon_minutes": 60} for name in LABEL_SIDE]
    columns += [{"name": name, "role": "target", "task": task, "horizon_bars": m // BAR_MINUTES,
                 "horizon_minutes": m, "definition": text} for name, task, m, text in _targets()]
    return {"schema_version": 1, "interval": INTERVAL, "bar_minutes": BAR_MINUTES,
            "columns": sorted(columns, key=lambda c: c["name"])}


def _targets() -> list[tuple[str, str, int, str]]:
    barrier = (f"{BARRIER_K} * sigma_60m(t), sigma_60m = std of the past {BARS_PER_SESSION} "
               f"5m log returns * sqrt({BARRIER_BARS})")
    targets = [(f"fwd_ret_{m}m", "regression", m, f"close[t+{m // BAR_MINUTES}] / close[t] - 1")
               for m in HORIZON_MINUTES]
    return targets + [
        (BARRIER_TARGETS[0], "binary", 60, f"max(high[t+1..t+12]) / close[t] - 1 >= {barrier}"),
        (BARRIER_TARGETS[1], "binary", 60, f"1 - min(low[t+1..t+12]) / close[t] >= {barrier}"),
        ("fwd_placebo_60m", "regression", 60, "placebo: sum of an independent noise series "
                                              "over t+1..t+12 (unpredictable by design)"),
        ("y_coinflip_60m", "binary", 60, "placebo: sign of an independent noise sum over "
                                         "t+1..t+12 (unpredictable by design)")]


def _ground_truth() -> dict:
    predictable = [f"fwd_ret_{m}m" for m in HORIZON_MINUTES] + BARRIER_TARGETS
    return {"predictable_targets": {name: PLANTED_FEATURES for name in predictable},
            "noise_targets": PLACEBO_TARGETS, "noise_features": NOISE_FEATURES,
            "description": (
                "A latent AR(1) order flow per symbol (phi=0.97), observed only through "
                "buy_volume, loads on the next bar's log return; the flow_imb_* features read "
                "it, so fwd_ret_* and the barrier labels are predictable from them. noise_* "
                "features and the placebo targets are independent draws and must rank last.")}
