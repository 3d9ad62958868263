"""Claims: which part of a stage computes which piece of its work, settled while the parts run.

A stage's parts walk one list of pieces, costliest first, and each claims a piece before it
computes it: the first to claim computes it, the others pass on. A part that starts late or
draws slow pieces simply claims fewer, so the parts end together without any estimate of what a
piece costs (a split fixed in advance left the parts 0.3-0.8 s apart in 7-8 s stages).

A claim is a file named by the piece, made by hard-linking a complete temporary file naming
its claimant: ``link`` fails when the name exists, so two claimants never both hold a piece and
no claim is ever seen half-written. A claimant that runs again (Dagster's retry of its step, or
the step re-executed in a later run with the same plan) holds what it claimed before and
computes it again.
"""

import os
import tempfile
from contextlib import suppress
from pathlib import Path

from parity_pipeline.core import hashing
from parity_pipeline.core.errors import ParityStorageError


def claim(folder: Path, piece: str, claimant: str) -> bool:
    """Whether ``claimant`` holds ``piece`` in ``folder``: claimed now, or by itself before."""
    path = folder / f"{hashing.sha256_text(piece)[:32]}.claim"
    text = f"{claimant}\n{piece}\n"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp",
                                             encoding="utf-8")
        try:
            with handle:
                handle.write(text)
            os.link(handle.name, path)
            return True
        except FileExistsError:
            return path.read_text(encoding="utf-8") == text
        finally:
            with suppress(FileNotFoundError):
                os.unlink(handle.name)
    except OSError as exc:
        raise ParityStorageError(
            f"cannot claim work in {folder}: {exc.strerror or exc}. Check that the artifact "
            "directory is writable and its disk is not full, then run again.") from exc
