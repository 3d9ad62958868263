"""Shared fixtures: generated datasets (made once per session) and a private PARITY_HOME."""

import shutil
from pathlib import Path

import pytest

from parity_pipeline.core.data.synth import synthesize_dataset
from parity_tests.helpers import CliRun, parity_run


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """4 symbols x 3000 bars: enough history for a tail window, fast to read."""
    out = tmp_path_factory.mktemp("small") / "data"
    synthesize_dataset(out, n_symbols=4, n_rows=3000, seed=42)
    return out


@pytest.fixture(scope="session")
def default_dataset(tmp_path_factory) -> Path:
    """The default sample: 10 symbols x 20000 bars, as `make run` uses."""
    out = tmp_path_factory.mktemp("default") / "data"
    synthesize_dataset(out, n_symbols=10, n_rows=20000, seed=42)
    return out


@pytest.fixture()
def dataset_copy(small_dataset, tmp_path) -> Path:
    """A private copy a test may damage."""
    target = tmp_path / "data"
    shutil.copytree(small_dataset, target)
    return target


@pytest.fixture()
def parity_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PARITY_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return home


@pytest.fixture(scope="session")
def default_run(default_dataset, tmp_path_factory) -> CliRun:
    """One `parity run` of the default sample, shared by the end-to-end tests (in-process:
    the determinism tests compare it with a multiprocess run)."""
    home = tmp_path_factory.mktemp("default_run") / "home"
    run = parity_run(home, "--data", str(default_dataset), "--workers", "1")
    assert run.outcome is not None, run.stdout + run.stderr
    return run
