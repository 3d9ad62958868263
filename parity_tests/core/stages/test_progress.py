"""Stage progress: about ten reports per stage, the last one always total/total."""

from parity_pipeline.core.stages.progress import UnitProgress


def test_reports_every_tenth_and_the_last():
    lines = []
    progress = UnitProgress("TRAINING", 132, "models", lines.append)
    for index in range(132):
        progress.done(f"model{index}")
    assert len(lines) == 11  # 13, 26, ..., 130, then 132
    assert lines[0] == "TRAINING: 13/132 models done (last: model12)"
    assert lines[-1] == "TRAINING: 132/132 models done (last: model131)"


def test_few_units_report_each_one_and_no_callback_is_fine():
    lines = []
    progress = UnitProgress("TARGET_RANKING", 3, "targets", lines.append)
    for name in ("a", "b", "c"):
        progress.done(name)
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["1/3", "2/3", "3/3"]
    silent = UnitProgress("X", 2, "units", None)
    silent.done("a")
    assert silent.done_count == 1
