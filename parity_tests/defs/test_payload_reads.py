"""The issue's symptom "the panel is reloaded and re-hashed in every step": in one process, each
stored payload (the panel, each stage's result) is parsed and verified once, however many steps
read it (resources/io_manager.py keeps what this process loaded)."""

from collections import Counter, OrderedDict

import dagster as dg
import pytest

from parity_pipeline.core.repro import artifact
from parity_pipeline.resources import io_manager
from parity_pipeline.runner import RunRequestOptions, execute_pipeline
from parity_tests.helpers import use_home


@pytest.mark.slow
def test_each_payload_is_read_once_per_process_though_many_steps_load_it(small_dataset, tmp_path,
                                                                         monkeypatch):
    use_home(monkeypatch, tmp_path / "home")
    reads: Counter[str] = Counter()

    def counted(store, manifest, types):
        reads[manifest["asset"]] += 1
        return artifact.read_payload(store, manifest, types)

    monkeypatch.setattr(io_manager, "read_payload", counted)
    monkeypatch.setattr(io_manager, "_PAYLOADS", OrderedDict())  # nothing loaded before
    outcome = execute_pipeline(RunRequestOptions(data_dir=str(small_dataset),
                                                 targets=["fwd_ret_60m"]))
    assert outcome.exit_code == 0, outcome.summary
    with dg.DagsterInstance.from_config(str(tmp_path / "home" / "dagster")) as instance:
        steps = {record.event_log_entry.step_key for record in instance.get_records_for_run(
                     outcome.run_id, of_type=dg.DagsterEventType.LOADED_INPUT).records
                 if record.event_log_entry.dagster_event.event_specific_data.input_name
                 == "sampled_data"}
    assert len(steps) >= 9, f"the panel is an input of 9 steps of this run: {sorted(steps)}"
    assert reads == {"sampled_data": 1, "ranked_targets": 1, "selected_features": 1,
                     "trained_models": 1}, reads
