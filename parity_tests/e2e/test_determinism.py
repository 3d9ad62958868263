"""Determinism, proven: same inputs give byte-identical fingerprints, in-process or not."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.sampling import load_panel
from parity_pipeline.core.repro.identity import sampling_identity
from parity_tests.helpers import parity_run, read_json, run_dir_of

pytestmark = pytest.mark.slow
ASSETS = ("sampled_data", "ranked_targets", "selected_features", "trained_models", "snapshots")


@pytest.fixture(scope="session")
def multiprocess_run(default_dataset, tmp_path_factory):
    """A second run of the same inputs in a fresh PARITY_HOME, on the multiprocess executor."""
    home = tmp_path_factory.mktemp("multiprocess") / "home"
    run = parity_run(home, "--data", str(default_dataset), "--workers", "2")
    assert run.exit_code == 0, run.stdout + run.stderr
    return run


def test_every_snapshot_fingerprint_is_identical_field_by_field(default_run, multiprocess_run):
    first = read_json(run_dir_of(default_run) / "snapshots" / "data.json")["entries"]
    second = read_json(run_dir_of(multiprocess_run) / "snapshots" / "data.json")["entries"]
    assert len(first) == len(second) > 100
    for one, other in zip(first, second, strict=True):
        unit = (one["stage"], one["target"], one["view"], one["symbol"],
                one.get("model_family"))
        for field in sorted(set(one) | set(other)):
            assert one.get(field) == other.get(field), (unit, field)
    keys = {"model_artifact_sha256", "predictions_sha256", "metrics_sha256", "strict_key",
            "feature_fingerprint_input", "feature_fingerprint_output", "data_fingerprint",
            "comparable_key", "replicate_key"}
    assert keys <= set().union(*first)


def test_every_artifact_hash_and_model_file_is_identical(default_run, multiprocess_run):
    for asset in ASSETS:
        one = read_json(run_dir_of(default_run) / asset / "artifact.json")
        other = read_json(run_dir_of(multiprocess_run) / asset / "artifact.json")
        assert one["sha256"] == other["sha256"], asset
        assert one["identity"] == other["identity"], asset
    models = sorted(p for p in (run_dir_of(default_run) / "trained_models").rglob("*")
                    if p.is_file() and p.suffix in (".txt", ".json", ".parquet"))
    assert models
    for path in models:
        twin = run_dir_of(multiprocess_run) / path.relative_to(run_dir_of(default_run))
        assert path.read_bytes() == twin.read_bytes(), path.name


def _identity(data_dir):
    registry = load_registry(data_dir)
    sampled = load_panel(data_dir, registry, 2000)
    return sampling_identity(sampled, registry.content_hash, 42)


def _edit_cell(data_dir, row_from_end: int) -> None:
    path = data_dir / "interval=5m" / "symbol=MSFT" / "MSFT.parquet"
    frame = pq.read_table(path).to_pandas()
    frame.loc[len(frame) - row_from_end, "flow_imb_1h"] += 0.5
    pq.write_table(pq.read_table(path).from_pandas(frame, preserve_index=False), path,
                   row_group_size=10_000)


def test_a_change_inside_the_window_moves_replicate_not_comparable(small_dataset, tmp_path):
    before = _identity(small_dataset)
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    shutil.copytree(small_dataset, inside)
    shutil.copytree(small_dataset, outside)
    _edit_cell(inside, row_from_end=10)      # inside the last 2000 rows
    _edit_cell(outside, row_from_end=2500)   # older than the window
    changed, unchanged = _identity(inside), _identity(outside)
    assert changed.data_fingerprint != before.data_fingerprint
    assert changed.replicate_key != before.replicate_key
    assert changed.strict_key != before.strict_key
    assert changed.comparable_key == before.comparable_key
    assert unchanged.keys() == before.keys()
    assert json.dumps(unchanged.data_fingerprint) == json.dumps(before.data_fingerprint)
