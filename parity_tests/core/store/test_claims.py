"""Claims (core/store/claims.py): each piece of a stage is computed by exactly one part, even
when the parts claim at the same moment, and a part that runs again holds what it claimed."""

import multiprocessing

import pytest

from parity_pipeline.core.errors import ParityStorageError
from parity_pipeline.core.store.claims import claim

PIECES = [f'["target_{number:02d}", "SYMBOL_SPECIFIC"]' for number in range(40)]


def test_the_first_claimant_holds_a_piece_and_holds_it_again_when_it_runs_again(tmp_path):
    assert claim(tmp_path, PIECES[0], "part_1_of_2")
    assert not claim(tmp_path, PIECES[0], "part_2_of_2")
    assert claim(tmp_path, PIECES[0], "part_1_of_2")  # a retry of part 1 computes it again
    assert claim(tmp_path, PIECES[1], "part_2_of_2")
    assert not claim(tmp_path, PIECES[1], "part_1_of_2")
    # a claimant's name that only begins like another's holds nothing of it
    assert not claim(tmp_path, PIECES[0], "part_1_of_22")
    assert sorted(path.suffix for path in tmp_path.iterdir()) == [".claim", ".claim"]


def _claim_all(folder: str, claimant: str, start, report) -> None:
    start.wait()
    report.put((claimant, [piece for piece in PIECES if claim(folder, piece, claimant)]))


def test_parts_claiming_at_once_compute_every_piece_exactly_once(tmp_path):
    context = multiprocessing.get_context("fork")
    start, report = context.Event(), context.Queue()
    claimants = [f"part_{number}_of_4" for number in range(1, 5)]
    processes = [context.Process(target=_claim_all, args=(tmp_path, name, start, report))
                 for name in claimants]
    for process in processes:
        process.start()
    start.set()  # all four walk the same list at the same moment
    held = dict(report.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(30)
    claimed = [piece for name in claimants for piece in held[name]]
    assert sorted(claimed) == sorted(PIECES)  # each piece once, none lost
    assert all(claim(tmp_path, piece, name) for name in claimants for piece in held[name])


def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path):
    blocked = tmp_path / "artifacts"
    blocked.write_text("a file where the artifact folder should be")
    with pytest.raises(ParityStorageError, match=f"cannot claim work in {blocked}/claims"):
        claim(blocked / "claims", PIECES[0], "part_1_of_2")
