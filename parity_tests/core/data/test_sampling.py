"""The sample window: last N rows by time, only the row groups needed, clear bad-input errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.sampling import load_panel, read_symbol_window, symbol_file
from parity_pipeline.core.errors import ParityInputError


def _file(data: Path, symbol: str = "AAPL") -> Path:
    return symbol_file(data, "5m", symbol)


def _rewrite(path: Path, frame: pd.DataFrame, row_group_size: int = 10_000) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                   row_group_size=row_group_size)


def test_window_is_last_n_rows_by_time_for_every_symbol(small_dataset):
    registry = load_registry(small_dataset)
    sampled = load_panel(small_dataset, registry, 500)
    assert sampled.universe == ("AAPL", "AMZN", "MSFT", "NVDA")
    for symbol in sampled.universe:
        full = pd.read_parquet(_file(small_dataset, symbol)).sort_values("ts")
        window = sampled.panel[sampled.panel["symbol"] == symbol]
        assert list(window["ts"]) == list(full["ts"].tail(500))
        assert sampled.per_symbol_stats[symbol].n == 500
        assert sampled.per_symbol_stats[symbol].end == full["ts"].iloc[-1].isoformat()
    assert sampled.n_effective == 2000
    assert sampled.panel[["ts", "symbol"]].equals(
        sampled.panel[["ts", "symbol"]].sort_values(["ts", "symbol"]))


def test_unsorted_file_still_yields_latest_rows_by_time(dataset_copy):
    path = _file(dataset_copy)
    frame = pd.read_parquet(path)
    shuffled = frame.sample(frac=1.0, random_state=7)
    _rewrite(path, shuffled, row_group_size=400)
    window, stats = read_symbol_window(path, "AAPL", load_registry(dataset_copy), 300)
    expected = frame.sort_values("ts").tail(300)
    assert list(window["ts"]) == list(expected["ts"])
    assert np.allclose(window["close"], expected["close"])
    assert stats.row_groups_read == pq.ParquetFile(path).metadata.num_row_groups


def test_sorted_file_reads_only_the_tail_row_groups(dataset_copy):
    path = _file(dataset_copy)
    _rewrite(path, pd.read_parquet(path), row_group_size=250)
    window, stats = read_symbol_window(path, "AAPL", load_registry(dataset_copy), 600)
    assert len(window) == 600
    assert stats.row_groups_read == 3  # 3 x 250 rows cover the newest 600; 12 groups in all
    assert pq.ParquetFile(path).metadata.num_row_groups == 12


def test_symbol_with_fewer_rows_than_limit_keeps_all_and_says_so(small_dataset):
    sampled = load_panel(small_dataset, load_registry(small_dataset), 5000, ("MSFT",))
    stats = sampled.per_symbol_stats["MSFT"]
    assert stats.n == 3000 and stats.available_rows == 3000
    assert stats.truncated_by_limit is False


def _damage(data: Path, how: str) -> None:
    path = _file(data)
    frame = pd.read_parquet(path)
    if how == "empty":
        _rewrite(path, frame.head(0))
    elif how == "not_parquet":
        path.write_text("symbol,ts\nAAPL,2024-01-01\n")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "missing_ts":
        _rewrite(path, frame.drop(columns=["ts"]))
    elif how == "null_ts":
        _rewrite(path, frame.assign(ts=frame["ts"].where(frame.index != len(frame) - 5)))
    elif how == "duplicate_ts":
        _rewrite(path, frame.assign(ts=frame["ts"].where(frame.index != len(frame) - 1,
                                                         frame["ts"].iloc[-2])))
    elif how == "text_feature":
        _rewrite(path, frame.assign(ret_1h=frame["ret_1h"].astype(str)))
    elif how == "naive_ts":
        _rewrite(path, frame.assign(ts=frame["ts"].dt.tz_localize(None)))


@pytest.mark.parametrize(("how", "message"), [
    ("empty", r"AAPL.*has no rows"),
    ("not_parquet", r"AAPL.*not a readable parquet file"),
    ("truncated", r"AAPL.*not a readable parquet file"),
    ("missing_ts", r"AAPL\.parquet: column 'ts'.*missing"),
    ("null_ts", r"null 'ts'"),
    ("duplicate_ts", r"symbol AAPL.*duplicate timestamps"),
    ("text_feature", r"column 'ret_1h' must be numeric"),
    ("naive_ts", r"'ts' must be a time-zone aware timestamp"),
])
def test_bad_symbol_file_is_named_in_a_clear_error(dataset_copy, how, message):
    _damage(dataset_copy, how)
    before = {p: p.read_bytes() for p in sorted(dataset_copy.rglob("*")) if p.is_file()}
    with pytest.raises(ParityInputError, match=message):
        load_panel(dataset_copy, load_registry(dataset_copy), 500)
    after = {p: p.read_bytes() for p in sorted(dataset_copy.rglob("*")) if p.is_file()}
    assert before == after  # reading never modifies the inputs


@pytest.mark.parametrize(("limit", "symbols", "message"), [
    (0, None, r"max_rows_per_symbol must be a positive integer"),
    (-5, None, r"max_rows_per_symbol must be a positive integer"),
    (100, ("../etc",), r"symbol '\.\./etc' is not a valid name"),
    (100, ("ZZZZ",), r"symbols \['ZZZZ'\] have no file"),
])
def test_bad_arguments_are_rejected(small_dataset, limit, symbols, message):
    with pytest.raises(ParityInputError, match=message):
        load_panel(small_dataset, load_registry(small_dataset), limit, symbols)


def test_missing_folder_and_empty_folder(tmp_path, small_dataset):
    registry = load_registry(small_dataset)
    with pytest.raises(ParityInputError, match=r"data folder .*nowhere does not exist"):
        load_panel(tmp_path / "nowhere", registry, 100)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParityInputError, match=r"no symbols under .*interval=5m"):
        load_panel(tmp_path / "empty", registry, 100)
