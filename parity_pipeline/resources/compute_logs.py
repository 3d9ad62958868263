"""Steps' stdout and stderr captured for the UI without helper processes.

Dagster's ``LocalComputeLogManager`` points a step's stdout and stderr at capture files and
mirrors each file back to the terminal with a ``tail -F`` process and a Python watcher process
(which kills the tail if the step's process dies): four processes started and stopped around
every step, about 0.13 s of wall time per step (timed 2026-12-05 with a test suite running
beside it), on the critical path for the steps that run one after another; and ``tail`` polls
once a second, so the terminal can miss a step's last lines (dagster issue 23336). Here one
thread per stream copies what the step writes (through a pipe) to the capture file and to the
original stream: the same files at the same paths, which the UI reads as before, and nothing
outlives the process. Dagster has no option for this; the rest of the manager (paths,
reading, subscriptions) is Dagster's.
"""

import os
import sys
import threading
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import (
    IO_TYPE_EXTENSION,
    LocalComputeLogManager,
)
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file

# how long a step's end waits for the copy to drain once the step's side of the pipe is closed
# (longer only when a process the step started still holds it; the thread then ends on its own)
DRAIN_TIMEOUT_S = 5.0


class TeeComputeLogManager(LocalComputeLogManager):
    """``LocalComputeLogManager`` whose capture copies in a thread instead of ``tail``."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Mapping[str, Any]) -> "TeeComputeLogManager":
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        out = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        err = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with tee_stream(sys.stdout, out), tee_stream(sys.stderr, err):
            yield CapturedLogContext(log_key)
        # the marker the UI reads as "capture complete", as Dagster's manager leaves it
        touch_file(self.complete_artifact_path(log_key))


@contextmanager
def tee_stream(stream: IO, path: str) -> Generator[None, None, None]:
    """Everything written to ``stream``'s file descriptor (by Python or by native code) goes
    to ``path`` (appended) and still to where the stream went before, until the block ends."""
    ensure_file(path)
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        yield  # no descriptor to redirect (a test runner's stand-in stream): nothing to capture
        return
    stream.flush()
    original = os.dup(fd)
    read_end, write_end = os.pipe()
    # the thread owns the read end, the file and its own copy of the original descriptor
    copier = threading.Thread(target=_copy, args=(read_end, path, os.dup(original)),
                              name=f"capture {os.path.basename(path)}", daemon=True)
    copier.start()
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        stream.flush()
        os.dup2(original, fd)  # the pipe's last write end here closes: the copy reads EOF
        os.close(original)
        copier.join(DRAIN_TIMEOUT_S)


def _copy(read_end: int, path: str, terminal: int) -> None:
    try:
        with open(path, "ab", buffering=0) as capture:
            while chunk := os.read(read_end, 65536):
                capture.write(chunk)
                _write_all(terminal, chunk)
    finally:
        os.close(read_end)
        os.close(terminal)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # the terminal went away (a closed pipe): the capture file still gets everything
