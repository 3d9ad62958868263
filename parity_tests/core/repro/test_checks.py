"""The run-level train_seed check over every stage's snapshot index entries."""

from parity_pipeline.core.repro.checks import ERROR, WARN, snapshots_train_seed_drift


def _entry(stage: str, seed: int, key: str = "k1") -> dict:
    return {"stage": stage, "train_seed": seed, "comparable_key": key}


RUN = [_entry("TARGET_RANKING", 42), _entry("FEATURE_SELECTION", 42), _entry("TRAINING", 42)]


def test_one_seed_everywhere_passes():
    verdict = snapshots_train_seed_drift(RUN, [_entry("TRAINING", 42)], 42)
    assert verdict.passed
    assert verdict.metadata["upstream_seeds"] == {"TARGET_RANKING": 42, "FEATURE_SELECTION": 42,
                                                  "TRAINING": 42}


def test_a_stage_on_another_seed_is_an_error_naming_the_seed():
    run = [*RUN, _entry("TRAINING", 7, key="k2")]
    verdict = snapshots_train_seed_drift(run, [], 42)
    assert (verdict.passed, verdict.severity) == (False, ERROR)
    assert verdict.metadata["observed"] == 7
    assert verdict.metadata["upstream_seeds"]["TRAINING"] == 7


def test_a_seed_changed_since_the_last_run_of_the_group_warns():
    history = [_entry("TRAINING", 41), _entry("TRAINING", 40, key="other")]
    verdict = snapshots_train_seed_drift(RUN, history, 42)
    assert (verdict.passed, verdict.severity) == (False, WARN)
    assert verdict.metadata["previous_train_seed"] == 41


def test_history_of_other_comparison_groups_is_ignored():
    verdict = snapshots_train_seed_drift(RUN, [_entry("TRAINING", 41, key="other")], 42)
    assert verdict.passed
    assert verdict.metadata["previous_train_seed"] is None
