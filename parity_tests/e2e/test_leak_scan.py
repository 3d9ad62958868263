"""A leaky feature added on purpose reaches no selection and no model, through the real run.

A near copy of a target is refused before launch (``core/data/leak_gate``, test_leak_gate.py), so
the leak planted here is one only ranking's in-run scan sees: a feature whose rounding is a
binary label (label agreement 100%) while its correlation with it stays below the gate's 0.95.
"""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity_tests.helpers import IN_PROCESS, parity_run, read_json, run_dir_of

pytestmark = pytest.mark.slow

LEAK = "flow_fwd_copy_1h"  # named like a real feature: only its content gives it away
LABEL = "y_will_peak_60m_0.8"


def _add_leaky_feature(data_dir) -> None:
    """Every symbol gets a column that is the barrier label plus noise in (-0.45, 0.45):
    rounded, it is the label; its |correlation| with it is ~0.88, below the pre-launch gate."""
    rng = np.random.default_rng(0)
    for path in sorted(data_dir.glob("interval=5m/symbol=*/*.parquet")):
        table = pq.read_table(path)
        label = table.column(LABEL).to_numpy(zero_copy_only=False)
        leak = label + rng.uniform(-0.45, 0.45, len(label))
        pq.write_table(table.append_column(LEAK, pa.array(leak)), path, row_group_size=10_000)
    registry_path = data_dir / "feature_registry.json"
    registry = read_json(registry_path)
    registry["columns"].append({"name": LEAK, "role": "feature", "timeframe": "1h",
                                "lookback_bars": 12})
    registry["columns"].sort(key=lambda column: column["name"])
    registry_path.write_text(json.dumps(registry, indent=2, sort_keys=True))


@pytest.fixture(scope="session")
def leaky_run(small_dataset, tmp_path_factory):
    data = tmp_path_factory.mktemp("leaky") / "data"
    shutil.copytree(small_dataset, data)
    _add_leaky_feature(data)
    return parity_run(tmp_path_factory.mktemp("leaky_home") / "home", "--data", str(data),
                      *IN_PROCESS)


def test_leak_is_reported_and_excluded_from_candidates(leaky_run):
    assert leaky_run.outcome is not None, leaky_run.stdout + leaky_run.stderr
    ranking = read_json(run_dir_of(leaky_run) / "ranked_targets" / "data.json")
    leaks = {(leak["feature"], leak["target"], leak["kind"]) for leak in ranking["leaks"]}
    assert (LEAK, LABEL, "label_agreement") in leaks
    assert LEAK in ranking["excluded_features"]
    assert LEAK not in ranking["candidate_features"]


def test_leak_is_never_selected_nor_trained_on(leaky_run):
    run_dir = run_dir_of(leaky_run)
    selection = read_json(run_dir / "selected_features" / "data.json")
    assert selection["selections"], "planted targets still get selections"
    for unit in selection["selections"]:
        assert LEAK not in unit["candidates"] and LEAK not in unit["selected"], unit["target"]
    training = read_json(run_dir / "trained_models" / "data.json")
    assert training["models"]
    assert all(LEAK not in model["features"] for model in training["models"])
