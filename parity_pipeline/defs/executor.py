"""The executor every run of the job uses: Dagster's multiprocess executor, except that steps
tagged ``IN_EXECUTOR_PROCESS`` run in the executor's own process.

Why: a stage's parts (the model fits) are what runs side by side; the steps between them
(sampling, each stage's plan and collect, the snapshots) run one at a time on the critical path
and take 0.05-0.5 s of work each. In a process of their own each also cost a fork, a fresh
instance, a new execution plan and its inputs reloaded: 0.3-1.1 s per step, 3.2 s of a 27 s
run on 2 workers at 10 symbols (measured 2026-12-05, ``bench/bench_scale.py``). Dagster has no
executor that mixes the two (``in_process`` runs every step in the run's process,
``multiprocess`` each in its own), so this one keeps Dagster's multiprocess loop
(``dagster._core.executor.multiprocess.MultiprocessExecutor.execute``, dagster 1.13, Apache-2.0)
and changes one thing: how a tagged step is started (``IN_EXECUTOR_PROCESS``, and the first of
a stage's parts: ``FIRST_PART_IN_EXECUTOR_PROCESS``). It is executed here as its child process
would execute it (``MultiprocessExecutorChildProcessCommand.execute``: a plan of that one step,
``execute_plan_iterator``), so its events, retries, compute logs and asset records are the same.
An interrupt during such a step is raised inside it, as on the in-process executor.
"""

import multiprocessing
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from multiprocessing.process import BaseProcess
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError, DagsterSubprocessError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import create_execution_plan, execute_plan_iterator
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.child_process_executor import ChildProcessCrashException
from dagster._core.executor.multiprocess import MultiprocessExecutor, execute_step_out_of_process
from dagster._utils import get_run_crash_explanation
from dagster._utils.error import SerializableErrorInfo, serializable_error_info_from_exc_info

from parity_pipeline.defs.step_server import PRELOAD_MODULES, start_step_server

# op tag of the steps run in the executor's process
STEP_PROCESS_TAG = "parity/step_process"
IN_EXECUTOR_PROCESS = {STEP_PROCESS_TAG: "executor"}
# op tag of a stage's parts: the first part runs in the executor's process, the others are
# forked. The executor would otherwise sit idle while the parts run, and the first part starts
# at once with its inputs already loaded in this process (a forked part starts 0.2-0.7 s after
# its plan: the fork, an instance, a plan and its inputs loaded again); the parts claim their
# pieces as they run (``core.store.claims``), so the one that starts first takes more.
FIRST_PART_IN_EXECUTOR_PROCESS = {STEP_PROCESS_TAG: "executor for the first part"}

class ParityExecutor(MultiprocessExecutor):
    """Steps in forked processes, ``IN_EXECUTOR_PROCESS`` steps in this one."""

    def __init__(self, max_concurrent: int, retries: RetryMode) -> None:
        # the preload list is set in ``execute`` (which replaces Dagster's), not kept here
        super().__init__(retries=retries, max_concurrent=max_concurrent,
                         start_method="forkserver")

    def execute(self, plan_context: PlanOrchestrationContext,
                execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        job = plan_context.reconstructable_job
        multiproc_ctx = multiprocessing.get_context("forkserver")
        if self._max_concurrent > 1:
            # started now, its imports overlap the run's first steps (a run started by `parity
            # run` finds it running already)
            start_step_server()
        else:  # one step at a time forks nothing (step_slots: 1 part); were one forked, the
            # server Dagster starts then preloads the same
            multiproc_ctx.set_forkserver_preload(PRELOAD_MODULES)
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps using multiprocess executor: parent process (pid: {os.getpid()}); "
            f"steps tagged {IN_EXECUTOR_PROCESS} run in it",
            event_specific_data=EngineEventData.multiprocess(
                os.getpid(), step_keys_to_execute=execution_plan.step_keys_to_execute))
        with ExitStack() as stack:
            concurrency = stack.enter_context(
                InstanceConcurrencyContext(plan_context.instance, plan_context.dagster_run))
            active = stack.enter_context(ActiveExecution(
                execution_plan, retry_mode=self.retries, max_concurrent=self._max_concurrent,
                tag_concurrency_limits=self._tag_concurrency_limits,
                instance_concurrency_context=concurrency,
                step_dependency_config=self.step_dependency_config))
            yield from self._loop(plan_context, execution_plan, job, multiproc_ctx, active)

    def _loop(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan,
              job: Any, multiproc_ctx: Any, active: ActiveExecution) -> Iterator[DagsterEvent]:
        """Dagster's multiprocess loop: start what may start, pass on each step's next event,
        retire finished steps; on an interrupt, ask the child processes to stop."""
        iterators: dict[str, Iterator[DagsterEvent | None]] = {}
        errors: dict[int, SerializableErrorInfo] = {}
        processes: dict[str, BaseProcess] = {}
        term_events: dict[str, Any] = {}
        stopping = False

        def stop_children() -> None:
            for key, term_event in term_events.items():
                # a step whose process is still being started (``_started_aside``) is told too:
                # it stops as soon as it starts
                process = processes.pop(key, None)
                if process is None or process.is_alive():
                    term_event.set()

        try:
            while (not stopping and not active.is_complete) or iterators:
                if active.check_for_interrupts():
                    yield DagsterEvent.engine_event(
                        plan_context, "Multiprocess executor: received termination signal - "
                        "forwarding to active child processes",
                        EngineEventData.interrupted(list(iterators)))
                    stopping = True
                    active.mark_interrupted()
                    stop_children()
                while not stopping:
                    steps = active.get_steps_to_execute(limit=self._max_concurrent - len(iterators))
                    yield from active.concurrency_event_iterator(plan_context)
                    if not steps:
                        break
                    for step in steps:
                        if _in_executor_process(step):
                            iterators[step.key] = _execute_step_here(
                                plan_context, job, step, self.retries, active,
                                execution_plan)
                            continue
                        term_events[step.key] = multiproc_ctx.Event()
                        iterators[step.key] = _started_aside(execute_step_out_of_process(
                            multiproc_ctx, job, plan_context.for_step(step), step, errors,
                            processes, term_events, self.retries, active.get_known_state(),
                            execution_plan.repository_load_data))
                finished = []
                for key, step_iter in iterators.items():
                    try:
                        event = next(step_iter)
                        if event is None:
                            continue
                        yield event
                        active.handle_event(event)
                        if event.is_resource_init_failure:
                            step_context = plan_context.for_step(active.get_step_by_key(key))
                            assert isinstance(event.engine_event_data.error, SerializableErrorInfo)
                            failure = self.log_failure_or_retry_event_after_error(
                                step_context, event.engine_event_data.error,
                                active.get_known_state())
                            yield failure
                            active.handle_event(failure)
                    except ChildProcessCrashException as crash:
                        error = serializable_error_info_from_exc_info(sys.exc_info())
                        step_context = plan_context.for_step(active.get_step_by_key(key))
                        yield DagsterEvent.engine_event(
                            step_context, get_run_crash_explanation(
                                prefix=f"Multiprocess executor: child process for step {key}",
                                exit_code=crash.exit_code),
                            EngineEventData.engine_error(error))
                        failure = self.log_failure_or_retry_event_after_error(
                            step_context, error, active.get_known_state())
                        active.handle_event(failure)
                        yield failure
                        finished.append(key)
                        if failure.is_step_failure:
                            errors[crash.pid] = error
                    except StopIteration:
                        finished.append(key)
                for key in finished:
                    del iterators[key]
                    term_events.pop(key, None)
                    processes.pop(key, None)
                    active.verify_complete(plan_context, key)
                yield from active.plan_events_iterator(plan_context)
        except BaseException:  # an interrupt raised inside a step run here, too
            if not stopping and iterators:
                yield DagsterEvent.engine_event(
                    plan_context, "Unexpected exception while steps were still in-progress - "
                    "terminating running steps:", event_specific_data=EngineEventData(
                        metadata={"steps_interrupted": dg.MetadataValue.text(str(list(iterators)))},
                        error=serializable_error_info_from_exc_info(sys.exc_info())))
                stop_children()
            raise

        errs = {pid: err for pid, err in errors.items() if err}
        interrupted = {"DagsterExecutionInterruptedError", "KeyboardInterrupt"}
        if stopping and not iterators and all(err.cls_name in interrupted
                                              for err in errs.values()):
            yield DagsterEvent.engine_event(
                plan_context, "Multiprocess executor: interrupted all active child processes",
                event_specific_data=EngineEventData())
            raise DagsterExecutionInterruptedError()
        if errs:
            raise DagsterSubprocessError(
                "During multiprocess execution errors occurred in child processes:\n"
                + "\n".join(f"In process {pid}: {err.to_string()}" for pid, err in errs.items()),
                subprocess_error_infos=list(errs.values()))


_PART_KEY = re.compile(r"part_(\d+)_of_(\d+)")


def part_key(number: int, n_parts: int) -> str:
    """The mapping key of part ``number`` of a stage's ``n_parts`` parts."""
    return f"part_{number}_of_{n_parts}"


def is_first_part(mapping_key: str | None) -> bool:
    """Whether ``mapping_key`` (a step's, ``None`` when unmapped) is a ``part_key`` of part 1."""
    match = _PART_KEY.fullmatch(mapping_key or "")
    return match is not None and int(match.group(1)) == 1


def _in_executor_process(step: ExecutionStep) -> bool:
    placement = step.tags.get(STEP_PROCESS_TAG)
    if placement == FIRST_PART_IN_EXECUTOR_PROCESS[STEP_PROCESS_TAG]:
        return is_first_part(step.get_mapping_key())
    return placement == IN_EXECUTOR_PROCESS[STEP_PROCESS_TAG]


def _started_aside(events: Iterator[DagsterEvent | None]) -> Iterator[DagsterEvent | None]:
    """A forked step's events (``execute_step_out_of_process``), its process started on a thread.

    Starting a process from the fork server waits until the server has imported the code
    location (``PRELOAD_MODULES``): at a run's first stage that was 0.4 s after its plan ended
    (measured 2026-12-05, 10 symbols, 2 workers), and the loop, blocked in that wait, had not yet
    started the part that runs in this process either. On the thread, that part starts at once
    and the forked one when the server is ready. The thread only starts the process and takes its
    first event; the loop goes on polling this iterator as Dagster's does."""
    yield next(events)  # STEP_WORKER_STARTING: nothing waits for it
    head: list[DagsterEvent | None] = []
    failed: list[BaseException] = []

    def start() -> None:
        try:
            head.append(next(events))  # starts the process, then polls it once
        except StopIteration:
            pass
        except BaseException as exc:  # a crash at start: raised where the loop handles it
            failed.append(exc)

    starter = threading.Thread(target=start, name="parity-step-start", daemon=True)
    starter.start()
    while starter.is_alive():
        starter.join(timeout=0.002)  # the loop goes on; it does not spin on the CPU
        yield None
    if failed:
        raise failed[0]
    yield from head
    yield from events


def _execute_step_here(plan_context: PlanOrchestrationContext, job: Any, step: ExecutionStep,
                       retries: RetryMode, active: ActiveExecution,
                       execution_plan: ExecutionPlan) -> Iterator[DagsterEvent | None]:
    """What the step's child process would run (a plan of this one step), in this process."""
    plan = create_execution_plan(job=job, run_config=plan_context.run_config,
                                 step_keys_to_execute=[step.key],
                                 known_state=active.get_known_state(),
                                 repository_load_data=execution_plan.repository_load_data)
    yield from execute_plan_iterator(plan, job, plan_context.dagster_run,
                                     run_config=plan_context.run_config,
                                     retry_mode=retries.for_inner_plan(),
                                     instance=plan_context.instance)


@dg.executor(
    name="parity_multiprocess",
    config_schema={
        "max_concurrent": dg.Field(
            int, default_value=0,
            description="Steps run at once; 0 = one per CPU (Dagster's multiprocess default)."),
        "retries": get_retries_config()},
    requirements=dg.multiple_process_executor_requirements())
def parity_executor(init_context: dg.InitExecutorContext) -> ParityExecutor:
    config: dict[str, Any] = dict(init_context.executor_config)
    return ParityExecutor(max_concurrent=int(config["max_concurrent"]) or os.cpu_count() or 1,
                          retries=RetryMode.from_config(config["retries"]) or RetryMode.ENABLED)


def executor_run_config(workers: int) -> dict:
    """Run config for ``parity_executor`` with ``workers`` steps at once."""
    return {"config": {"max_concurrent": workers}}
