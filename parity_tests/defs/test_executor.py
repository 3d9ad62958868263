"""The executor's loop is not held up while a forked step's process is being started."""

import threading

import pytest

from parity_pipeline.defs.executor import _started_aside


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
