"""Stage progress ("TRAINING: 40/132 models done"), through a plain callback so core stays free
of Dagster; the assets pass ``context.log.info``, which `parity run` and the UI both show."""

from collections.abc import Callable

Report = Callable[[str], None]


class UnitProgress:
    """Counts finished units and reports about ten times per stage (every unit when few)."""

    def __init__(self, stage: str, total: int, noun: str, report: Report | None):
        self.stage, self.total, self.noun, self.report = stage, total, noun, report
        self.done_count = 0
        self.step = max(1, total // 10)

    def done(self, unit: str) -> None:
        self.done_count += 1
        if self.report and (self.done_count % self.step == 0 or self.done_count == self.total):
            self.report(f"{self.stage}: {self.done_count}/{self.total} {self.noun} done "
                        f"(last: {unit})")
