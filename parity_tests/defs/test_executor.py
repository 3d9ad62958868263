"""The executor's loop is not held up while a forked step's process is being started, and
steps are forked in the home of the run that forks them."""

import multiprocessing
import os
import threading
from multiprocessing import forkserver

import pytest

from parity_pipeline import constants
from parity_pipeline.defs import step_server as step_server_module
from parity_pipeline.defs.executor import _started_aside
from parity_pipeline.defs.step_server import start_step_server


def _forked_step(started: threading.Event, release: threading.Event, fail: bool = False):
    """The shape of Dagster's ``execute_step_out_of_process``: an event at once, then the
    process start (here: waiting for ``release``, as a start waits for the fork server), then
    the child's events."""
    yield "worker starting"
    started.set()
    if not release.wait(timeout=10):
        raise AssertionError("never released")
    if fail:
        raise RuntimeError("the child process could not start")
    yield "first child event"
    yield "step success"


def test_the_loop_goes_on_while_a_forked_step_waits_for_its_process():
    started, release = threading.Event(), threading.Event()
    events = _started_aside(_forked_step(started, release))
    assert next(events) == "worker starting"
    # the start waits on its thread: the loop gets "nothing yet" and polls its other steps
    assert next(events) is None
    assert started.wait(timeout=10)
    assert [next(events) for _ in range(3)] == [None, None, None]
    release.set()
    rest = [event for event in events if event is not None]
    assert rest == ["first child event", "step success"]


def test_a_start_that_fails_raises_where_the_loop_polls_the_step():
    started, release = threading.Event(), threading.Event()
    events = _started_aside(_forked_step(started, release, fail=True))
    assert next(events) == "worker starting"
    release.set()
    with pytest.raises(RuntimeError, match="could not start"):
        while True:
            next(events)


def _report(queue, name: str) -> None:
    queue.put(os.environ.get(name))


@pytest.fixture
def step_server():
    """The fork server started by the test, stopped afterwards (a later test starts its own)."""
    yield
    forkserver._forkserver._stop()
    step_server_module._served.clear()


def test_a_process_that_changes_home_gets_steps_forked_in_the_new_home(tmp_path, monkeypatch,
                                                                      step_server):
    """Forked steps read parity's variables from the server's environment: a server started
    for one home (or dataset) is restarted for the next, or a second run's steps would write
    into the first home (or read the first dataset)."""
    context = multiprocessing.get_context("forkserver")

    def seen_by_a_forked_step(name: str) -> str:
        queue = context.Queue()
        process = context.Process(target=_report, args=(queue, name))
        process.start()
        process.join(timeout=60)
        return queue.get(timeout=10)

    monkeypatch.setenv("PARITY_HOME", str(tmp_path / "first"))
    monkeypatch.delenv("PARITY_DATA_DIR", raising=False)
    start_step_server()
    assert seen_by_a_forked_step("PARITY_HOME") == str(tmp_path / "first")
    first_server = forkserver._forkserver._forkserver_pid
    start_step_server()  # same home: the same server
    # the dataset's default, as loading the definitions sets it: the same server too
    monkeypatch.setenv("PARITY_DATA_DIR", constants.DEFAULT_DATA_DIR)
    start_step_server()
    assert forkserver._forkserver._forkserver_pid == first_server
    monkeypatch.setenv("PARITY_HOME", str(tmp_path / "second"))
    start_step_server()
    assert seen_by_a_forked_step("PARITY_HOME") == str(tmp_path / "second")
    monkeypatch.setenv("PARITY_DATA_DIR", str(tmp_path / "other_data"))
    start_step_server()
    assert seen_by_a_forked_step("PARITY_DATA_DIR") == str(tmp_path / "other_data")
