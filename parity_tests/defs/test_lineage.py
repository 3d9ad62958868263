"""Which materialization a step reads (resources.lineage), on a real ephemeral instance."""

import dagster as dg

from parity_pipeline.resources import lineage


@dg.asset
def upstream() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={lineage.MANIFEST_KEY: "manifest-a"})


@dg.asset
def other() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={lineage.MANIFEST_KEY: "manifest-b"})


def _counting_scans(instance: dg.DagsterInstance) -> list[str]:
    """Spy on the real instance: the run ids whose events ``resolve_upstream`` scans."""
    scans: list[str] = []
    scan = instance.get_records_for_run

    def counted(run_id, *args, **kwargs):
        scans.append(run_id)
        return scan(run_id, *args, **kwargs)

    instance.get_records_for_run = counted  # type: ignore[method-assign]
    return scans


def test_a_runs_own_materialization_is_found_once_then_kept():
    with dg.instance_for_test() as instance:
        run_id = dg.materialize([upstream, other], instance=instance).run_id
        scans = _counting_scans(instance)
        first = lineage.resolve_upstream(instance, dg.AssetKey("upstream"), run_id)
        assert first is not None and lineage.manifest_of(first) == "manifest-a"
        assert scans == [run_id]
        again = lineage.resolve_upstream(instance, dg.AssetKey("upstream"), run_id)
        sibling = lineage.resolve_upstream(instance, dg.AssetKey("other"), run_id)
        assert again is first and lineage.manifest_of(sibling) == "manifest-b"
        assert scans == [run_id], "the run's own records are final: no second scan"


def test_a_record_from_another_run_is_looked_up_again_not_kept():
    with dg.instance_for_test() as instance:
        dg.materialize([upstream], instance=instance)
        later = dg.materialize([other], instance=instance).run_id  # does not make `upstream`
        scans = _counting_scans(instance)
        for _ in range(2):
            found = lineage.resolve_upstream(instance, dg.AssetKey("upstream"), later)
            assert found is not None and found.run_id != later
        assert scans == [later, later], "the run may still make its own: read every time"
