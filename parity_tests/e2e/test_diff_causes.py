"""Every cause `parity diff` can name, each produced by a real run in one PARITY_HOME.

Data and seed changes are covered through the CLI in ``test_drift``. Here the runs go through the
same ``execute_pipeline`` that ``parity run`` calls, in this process, so a test can change what
no flag changes: a hidden, unrecorded change to training (what an unseeded RNG or a
thread-dependent reduction does) and a library upgrade that changes results.
"""

import json
import os

import lightgbm as lgb
import pytest

from parity_pipeline.core.repro import identity
from parity_pipeline.core.store import home
from parity_pipeline.runner import RunRequestOptions, execute_pipeline
from parity_tests.helpers import parity_cli, use_home

pytestmark = pytest.mark.slow


class _LightGBMWithHiddenChange:
    """What the training module sees as ``lgb``: LightGBM, except that ``train`` adds column
    subsampling the recorded hyperparameters do not mention."""

    def __getattr__(self, name):
        return getattr(lgb, name)

    @staticmethod
    def train(params, *args, **kwargs):
        return lgb.train({**params, "feature_fraction": 0.5, "feature_fraction_seed": 99},
                         *args, **kwargs)


def _upgraded_versions(real):
    def versions():
        return {**real(), "lightgbm": "99.0.0-test"}
    return versions


@pytest.fixture(scope="session")
def runs(small_dataset, tmp_path_factory):
    parity_home = tmp_path_factory.mktemp("causes") / "home"
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, parity_home)
        data = str(small_dataset)

        def run(**options):
            return execute_pipeline(RunRequestOptions(data_dir=data, **options))

        outcomes = {"baseline": run()}
        with pytest.MonkeyPatch.context() as hidden:
            hidden.setattr("parity_pipeline.core.stages.training.lgb", _LightGBMWithHiddenChange())
            outcomes["hidden_change"] = run()
            hidden.setattr(identity, "library_versions",
                           _upgraded_versions(identity.library_versions))
            outcomes["library_upgrade"] = run()
        outcomes["fewer_rows"] = run(max_rows_per_symbol=1500)
        # execute_pipeline sets DAGSTER_HOME for its instance; the context restores it
        assert os.environ["DAGSTER_HOME"] == str(home.dagster_home())
    return parity_home, outcomes


def _diff(runs, a: str, b: str) -> dict:
    parity_home, outcomes = runs
    done = parity_cli(parity_home, "diff", outcomes[a].run_id, outcomes[b].run_id, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_hidden_training_change_is_non_determinism_and_fails_output_parity(runs):
    report = _diff(runs, "baseline", "hidden_change")
    assert set(report["cause_counts"]) == {"non-determinism"}
    units = report["units"]
    assert units and all(u["unit"].startswith("TRAINING") and "lightgbm" in u["unit"]
                         for u in units)
    assert {u["first_divergence"] for u in units} == {"model artifact"}
    outcome = runs[1]["hidden_change"]
    parity = [c for c in outcome.checks if c.check == "output_parity"]
    assert parity and not parity[0].passed and parity[0].severity == "ERROR"
    assert outcome.exit_code == 1


def test_library_upgrade_that_changes_models_is_code_library(runs):
    report = _diff(runs, "baseline", "library_upgrade")
    assert set(report["cause_counts"]) == {"code/library"}
    assert report["library_changes"]["lightgbm"].endswith("-> 99.0.0-test")
    assert runs[1]["library_upgrade"].exit_code == 0, "a new replicate key is not a failure"


def test_changed_sample_limit_is_config(runs):
    report = _diff(runs, "baseline", "fewer_rows")
    assert set(report["cause_counts"]) == {"config"}
    assert {u["first_divergence"] for u in report["units"]} == {"data window"}
    assert report["setting_changes"]["max_rows_per_symbol"] == "2000 -> 1500"
    assert set(report["per_symbol_changes"].values()) == {"2000 -> 1500"}


def test_runs_lists_in_process_runs_newest_first(runs):
    parity_home, outcomes = runs
    listing = parity_cli(parity_home, "runs").stdout
    positions = [listing.index(o.run_id) for o in outcomes.values()]
    assert positions == sorted(positions, reverse=True)
