# This file is part of ts_ocps.
#
# Developed for the Vera C. Rubin Observatory Telescope and Site Systems.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""The job manager: accepts, schedules, runs, recovers and purges jobs.

What a held job waits for is in `holds`, what a job starts with in
`environment`, how its result file and output globs become results in
`results`, and how the end of its run becomes its terminal phase in
`outcomes`; the public names of the last three are also importable from
here, as they were before they moved.
"""

from __future__ import annotations

__all__ = [
    "BASE_ENV_NAMES",
    "JOB_ID_PATTERN",
    "LOST_MESSAGE",
    "MAX_DECLARED_RESULTS",
    "MAX_ERROR_MESSAGE",
    "RESULT_FILE_NAME",
    "JobListener",
    "JobManager",
    "ManagerConfig",
]

import asyncio
import collections
import copy
import dataclasses
import datetime
import inspect
import logging
import pathlib
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import JobStateError, ParameterError
from ..models import ErrorSummary, ErrorType, ExecutionPhase, Job
from ..runners.base import LaunchSpec, Runner, RunOutcome
from ..runners.local import PRIVATE_DIR_NAME, LocalRunner
from .environment import BASE_ENV_NAMES, make_launch_spec
from .holds import check_hold_request, wait_out_hold
from .journal import JOURNAL_FILE_NAME, Journal
from .outcomes import LOST_MESSAGE, outcome_phase
from .results import (
    MAX_DECLARED_RESULTS,
    MAX_ERROR_MESSAGE,
    RESULT_FILE_NAME,
    collect_outputs,
    declared_error,
)

if TYPE_CHECKING:
    from .job_types import JobType, JobTypeRegistry

JOB_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""What a caller-chosen job id must look like (also no ``..``)."""

_MAX_LOGGED_ENTRIES = 10
"""Ignored ``results`` entries logged one by one; the rest are counted."""

_LOGGED_STATE = ("pid", "batch_job_id", "slurm_job_id")

JobListener = Callable[[Job], Awaitable[None] | None]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass
class ManagerConfig:
    """Settings of a `JobManager`.

    Parameters
    ----------
    state_dir : `pathlib.Path`
        Holds the journal ``ocps.sqlite3`` and ``jobs/<job_id>/`` work
        dirs.
    max_concurrent : `int`
        Global limit of executing jobs; 0 for no limit.
    retention : `float`
        Seconds after a job ends until it and its files are purged.
    log_limit : `int`
        Bytes kept of each of a job's stdout and stderr; 0 for all.
    kill_grace : `float`
        Seconds between SIGTERM and SIGKILL when a job is stopped.
    default_execution_duration : `float`
        Time limit in seconds for job types that set none; 0 for none.
    max_wait_timeout : `float`
        Longest blocking wait (UWS WAIT) in seconds.
    """

    state_dir: pathlib.Path
    max_concurrent: int = 4
    retention: float = 7 * 86400
    log_limit: int = 10 * 2**20
    kill_grace: float = 5.0
    default_execution_duration: float = 0
    max_wait_timeout: float = 60


class JobManager:
    """Accept jobs, run them in order within limits, and keep a journal.

    Parameters
    ----------
    config : `ManagerConfig`
        Settings.
    job_types : `JobTypeRegistry`
        The job types that can be submitted.
    runners : `collections.abc.Mapping` [`str`, `Runner`] or `None`
        Runners by name, added to (or replacing) the default
        ``{"local": LocalRunner(kill_grace=config.kill_grace)}``.
    log : `logging.Logger` or `None`
        Parent logger; a child ``job_manager`` of it is used. The default
        parent is the ``ocps`` logger.

    Notes
    -----
    Scheduling: QUEUED jobs start in submission order while fewer than
    ``max_concurrent`` jobs execute; a job whose type is at its own
    ``max_concurrent`` is passed over, so it does not hold up other types
    behind it. Nothing polls: the scheduler runs when a job is queued or
    ends, waits use events, data triggers use file-system events, process
    ends arrive through pidfds, and purging sleeps until the next
    destruction time.

    Every phase change is written to the journal first, then announced:
    waiters (`wait_for_change`, `wait_terminal`, prerequisites) wake, and
    listeners are awaited in the order they were added. The changes of
    one job are serialized by a per-job lock, so listeners see them in
    order. A listener must not abort the job it is being told about.

    `close` leaves executing jobs running under their supervisors; the
    next `start` on the same state dir re-adopts them.
    """

    def __init__(
        self,
        config: ManagerConfig,
        job_types: JobTypeRegistry,
        runners: Mapping[str, Runner] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.job_types = job_types
        parent_log = log if log is not None else logging.getLogger("ocps")
        self.log = parent_log.getChild("job_manager")
        self.state_dir = pathlib.Path(config.state_dir).resolve()
        self.runners: dict[str, Runner] = {
            "local": LocalRunner(kill_grace=config.kill_grace, log=self.log)
        }
        self.runners.update(runners or {})
        self.journal = Journal(self.state_dir / JOURNAL_FILE_NAME, log=self.log)

        # Jobs in an active phase, by id; terminal jobs live only in the
        # journal.
        self._active: dict[str, Job] = {}
        # QUEUED jobs not yet dispatched, in submission order.
        self._queue: dict[str, None] = {}
        self._run_tasks: dict[str, asyncio.Task] = {}
        self._hold_tasks: dict[str, asyncio.Task] = {}
        self._type_counts: collections.Counter[str] = collections.Counter()
        self._abort_requested: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._listeners: list[JobListener] = []
        self._purge_task: asyncio.Task | None = None
        self._purge_wakeup = asyncio.Event()
        self._next_purge: datetime.datetime | None = None
        self._running = False

    # Lifecycle

    async def start(self) -> None:
        """Open the journal, reconcile the jobs it holds, start purging.

        Reconciliation: QUEUED and PENDING jobs are queued again (in their
        original order), HELD jobs wait again for their prerequisites and
        data, and EXECUTING jobs (or QUEUED ones that were already
        launched) are re-attached through their runner; one that cannot be
        found ends in ERROR.
        """
        if self._running:
            return
        (self.state_dir / "jobs").mkdir(parents=True, exist_ok=True)
        await self.journal.open()
        for runner in self.runners.values():
            await runner.start()
        self._running = True
        # Every active job is known before any is taken up, so that a held
        # job never mistakes a prerequisite not yet taken up for an ended
        # one.
        jobs = await self.journal.active_jobs()
        self._active.update((job.job_id, job) for job in jobs)
        for job in jobs:
            await self._recover(job)
        self._purge_task = asyncio.create_task(self._purge_loop())
        self._schedule()

    async def close(self) -> None:
        """Stop every task of the manager and close the journal.

        Executing jobs keep running; see the class notes.
        """
        if not self._running:
            return
        self._running = False
        tasks = list(self._run_tasks.values()) + list(self._hold_tasks.values())
        if self._purge_task is not None:
            tasks.append(self._purge_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._purge_task = None
        for runner in self.runners.values():
            await runner.close()
        await self.journal.close()
        self._active.clear()
        self._queue.clear()
        self._type_counts.clear()
        self._abort_requested.clear()
        for event in self._changed.values():
            event.set()
        self._changed.clear()

    # Public API

    async def submit(
        self,
        type_name: str,
        parameters: Mapping[str, Any],
        *,
        run_id: str | None = None,
        owner_id: str | None = None,
        prereq_jobs: Sequence[str] = (),
        prereq_success: bool = False,
        wait_for: Sequence[str] = (),
        wait_timeout: float = 0.0,
        execution_duration: float | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Validate and accept a job.

        Parameters
        ----------
        type_name : `str`
            Job type name.
        parameters : `collections.abc.Mapping` [`str`, `typing.Any`]
            Job parameters; validated against the type, defaults filled.
        run_id : `str` or `None`
            Opaque label of the submitter.
        owner_id : `str` or `None`
            Who submits.
        prereq_jobs : `collections.abc.Sequence` [`str`]
            Ids of existing jobs that must end before this one runs.
        prereq_success : `bool`
            If True, a prerequisite that does not end COMPLETED ends this
            job in ERROR without running it.
        wait_for : `collections.abc.Sequence` [`str`]
            Absolute paths or globs that must exist before the job runs.
        wait_timeout : `float`
            Seconds to wait for ``wait_for``; 0 for no limit.
        execution_duration : `float` or `None`
            Time limit in seconds, 0 for none; None for the type's (or the
            configured default).
        job_id : `str` or `None`
            Id to use instead of a new random one.

        Returns
        -------
        job : `Job`
            The journaled job, QUEUED or HELD.

        Raises
        ------
        UnknownJobTypeError
            Raised if the type is not loaded.
        ParameterError
            Raised if anything else in the request is invalid; nothing is
            journaled then.
        JobStateError
            Raised if ``job_id`` is in use or the manager is not running.
        """
        self._check_running()
        job_type = self.job_types.get_type(type_name)
        if job_id is None:
            job_id = uuid.uuid4().hex
        elif (
            not isinstance(job_id, str)
            or not JOB_ID_PATTERN.match(job_id)
            or ".." in job_id
        ):
            raise ParameterError(
                f"invalid job_id {job_id!r}: must match {JOB_ID_PATTERN.pattern} "
                "and not contain '..'"
            )
        validated = job_type.validate_parameters(parameters)
        # Render once now, so that a template problem is reported at submit.
        job_type.render_argv(validated)
        job_type.render_environment(validated)
        if job_type.runner not in self.runners:
            raise ParameterError(
                f"job type {job_type.name!r} needs runner {job_type.runner!r}, "
                f"which is not configured (have: {', '.join(sorted(self.runners))})"
            )
        if execution_duration is None:
            execution_duration = (
                job_type.execution_duration or self.config.default_execution_duration
            )
        _check_seconds("execution_duration", execution_duration)
        _check_seconds("wait_timeout", wait_timeout)
        prereqs, wait_for = check_hold_request(job_id, prereq_jobs, wait_for)
        unknown = set(prereqs) - set(self._active)
        if unknown:
            unknown -= await self.journal.existing_ids(unknown)
        if unknown:
            raise ParameterError(
                f"unknown prerequisite job(s): {', '.join(sorted(unknown))}"
            )

        held = bool(prereqs or wait_for)
        job = Job(
            job_id=job_id,
            type=job_type.name,
            version=job_type.version,
            parameters=validated,
            run_id=run_id,
            owner_id=owner_id,
            phase=ExecutionPhase.HELD if held else ExecutionPhase.QUEUED,
            execution_duration=float(execution_duration),
            prereq_jobs=prereqs,
            prereq_success=bool(prereq_success),
            wait_for=wait_for,
            wait_timeout=float(wait_timeout),
        )
        self._check_running()
        await self.journal.insert(job)
        self._active[job_id] = job
        async with self._lock(job_id):
            if held:
                details = f"prereq_jobs={prereqs} wait_for={wait_for}"
                self.log.info(f"job_id={job_id} held type={job.type} {details}")
            else:
                self.log.info(f"job_id={job_id} queued type={job.type}")
            await self._announce(job)
            if job.phase is ExecutionPhase.HELD:
                self._hold_tasks[job_id] = asyncio.create_task(self._hold(job))
            elif job.phase is ExecutionPhase.QUEUED:
                self._queue[job_id] = None
                self._schedule()
        return _copy_job(job)

    async def get_job(self, job_id: str) -> Job:
        """Return a job.

        Raises
        ------
        JobNotFoundError
            Raised if there is no such job.
        """
        job = self._active.get(job_id)
        if job is not None:
            return _copy_job(job)
        return await self.journal.get(job_id)

    async def list_jobs(
        self,
        *,
        phases: Collection[ExecutionPhase] | None = None,
        after: datetime.datetime | None = None,
        last: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """List jobs, newest first; see `Journal.list_jobs` for the filters.

        Raises
        ------
        ParameterError
            Raised if ``last``, ``limit`` or ``offset`` is negative.
        """
        for name, value in (("last", last), ("limit", limit), ("offset", offset)):
            if value is not None and value < 0:
                raise ParameterError(f"{name}={value} must not be negative")
        return await self.journal.list_jobs(
            phases=phases, after=after, last=last, limit=limit, offset=offset
        )

    async def abort(self, job_id: str) -> Job:
        """Abort an active job and return it once it has ended.

        A QUEUED or HELD job ends ABORTED at once without running. An
        executing job's process group is stopped (SIGTERM, then SIGKILL
        after ``kill_grace``); it ends ABORTED unless it ended on its own
        first.

        Raises
        ------
        JobNotFoundError
            Raised if there is no such job.
        JobStateError
            Raised if the job has ended already.
        """
        job = await self._get_active(job_id)
        async with self._lock(job_id):
            if job.is_terminal:
                raise JobStateError(f"job_id={job_id} has ended already ({job.phase})")
            if job_id in self._run_tasks:
                self._abort_requested.add(job_id)
                if job.runner_state:
                    runner = self.runners[job.runner_state["runner"]]
                    await runner.terminate(job_id, job.runner_state["state"])
            else:
                self._queue.pop(job_id, None)
                hold_task = self._hold_tasks.pop(job_id, None)
                if hold_task is not None:
                    hold_task.cancel()
                    await asyncio.gather(hold_task, return_exceptions=True)
                await self._end(
                    job,
                    ExecutionPhase.ABORTED,
                    error=ErrorSummary("job aborted before it ran"),
                )
        return await self.wait_terminal(job_id)

    async def delete(self, job_id: str) -> None:
        """Remove an ended job from the journal and delete its files.

        Raises
        ------
        JobNotFoundError
            Raised if there is no such job.
        JobStateError
            Raised if the job is still active.
        """
        if job_id in self._active:
            phase = self._active[job_id].phase
            raise JobStateError(f"job_id={job_id} is {phase}; abort it first")
        await self.journal.get(job_id)
        await self._purge(job_id, reason="deleted")

    async def wait_for_change(
        self, job_id: str, phase: ExecutionPhase | None, timeout: float
    ) -> Job:
        """Wait until the job's phase differs from ``phase`` (UWS WAIT).

        Parameters
        ----------
        job_id : `str`
            The job.
        phase : `ExecutionPhase` or `None`
            The phase to wait out; None for the job's current phase.
        timeout : `float`
            Longest wait in seconds, capped at ``max_wait_timeout``; a
            negative value means that cap.

        Returns
        -------
        job : `Job`
            The job when its phase differs, when it is terminal, or at the
            timeout.

        Raises
        ------
        JobNotFoundError
            Raised if there is no such job (or it is purged meanwhile).
        """
        cap = self.config.max_wait_timeout
        timeout = cap if timeout < 0 else min(timeout, cap)
        job = await self.get_job(job_id)
        reference = job.phase if phase is None else phase
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while job.phase == reference and not job.is_terminal:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            changed = self._change_event(job_id)
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass
            job = await self.get_job(job_id)
        return job

    async def wait_terminal(self, job_id: str) -> Job:
        """Wait until the job is in a terminal phase and return it.

        Raises
        ------
        JobNotFoundError
            Raised if there is no such job (or it is purged meanwhile).
        """
        while True:
            active = self._active.get(job_id)
            if active is None:
                return await self.journal.get(job_id)
            await self._change_event(job_id).wait()

    def add_listener(self, callback: JobListener) -> None:
        """Call ``callback(job)`` after every journaled phase change.

        The callback may be a coroutine function; it is awaited. Listeners
        are called in the order they were added; an exception is logged
        and does not stop the others. All listeners of one change share
        one copy of the job, which they must not modify.
        """
        self._listeners.append(callback)

    def remove_listener(self, callback: JobListener) -> None:
        """Stop calling ``callback``; no error if it was not added."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def work_dir(self, job_id: str) -> pathlib.Path:
        """Return the job's work dir (its current directory when it runs).

        Raises
        ------
        ParameterError
            Raised if ``job_id`` is not a valid job id.
        """
        if not JOB_ID_PATTERN.match(job_id) or ".." in job_id:
            raise ParameterError(f"invalid job_id {job_id!r}")
        return self.state_dir / "jobs" / job_id

    def log_path(self, job_id: str, stream: str) -> pathlib.Path:
        """Return the file with the job's ``stream``, "stdout" or "stderr".

        Raises
        ------
        ParameterError
            Raised if ``stream`` or ``job_id`` is invalid.
        """
        if stream not in ("stdout", "stderr"):
            raise ParameterError(f"stream={stream!r} must be 'stdout' or 'stderr'")
        return self.work_dir(job_id) / PRIVATE_DIR_NAME / f"{stream}.log"

    async def mark_reported(self, job_id: str) -> None:
        """Record that the job's final result was published.

        Raises
        ------
        JobNotFoundError
            Raised if there is no such job.
        """
        await self.journal.mark_reported(job_id)

    async def unreported_jobs(self) -> list[Job]:
        """Return ended jobs not yet marked reported, oldest first."""
        return await self.journal.unreported_jobs()

    # Scheduling

    def _schedule(self) -> None:
        """Dispatch queued jobs, in order, while the limits allow.

        A job whose type is at its own limit is skipped, so it does not
        block jobs of other types behind it.
        """
        if not self._running:
            return
        limit = self.config.max_concurrent
        for job_id in list(self._queue):
            if limit > 0 and len(self._run_tasks) >= limit:
                break
            job = self._active[job_id]
            job_type = self.job_types.get(job.type)
            type_limit = 0 if job_type is None else job_type.max_concurrent
            if type_limit > 0 and self._type_counts[job.type] >= type_limit:
                continue
            del self._queue[job_id]
            self._dispatch(job, self._execute(job))

    def _dispatch(self, job: Job, work: Awaitable[None]) -> None:
        self._type_counts[job.type] += 1
        self._run_tasks[job.job_id] = asyncio.create_task(self._run(job, work))

    async def _run(self, job: Job, work: Awaitable[None]) -> None:
        """Run ``work`` for the job; end it in ERROR if that fails."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.exception(f"job_id={job.job_id} failed inside OCPS")
            if not job.is_terminal:
                async with self._lock(job.job_id):
                    await self._end(
                        job,
                        ExecutionPhase.ERROR,
                        error=ErrorSummary(f"OCPS error: {e!r}"),
                    )
        finally:
            self._run_tasks.pop(job.job_id, None)
            self._type_counts[job.type] -= 1
            self._abort_requested.discard(job.job_id)
            self._schedule()

    async def _hold(self, job: Job) -> None:
        """Wait for the job's prerequisites and data, then queue it."""
        failure = await wait_out_hold(job, self.wait_terminal, self.log)
        async with self._lock(job.job_id):
            self._hold_tasks.pop(job.job_id, None)
            if job.phase is not ExecutionPhase.HELD:
                return
            if failure is not None:
                await self._end(job, ExecutionPhase.ERROR, error=ErrorSummary(failure))
                return
            await self._change(job, phase=ExecutionPhase.QUEUED)
            self.log.info(f"job_id={job.job_id} queued type={job.type}")
            await self._announce(job)
            self._queue[job.job_id] = None
            self._schedule()

    # Running

    async def _execute(self, job: Job) -> None:
        """Launch the job, mark it EXECUTING, and wait for its end."""
        job_id = job.job_id
        async with self._lock(job_id):
            if job_id in self._abort_requested:
                await self._end(
                    job,
                    ExecutionPhase.ABORTED,
                    error=ErrorSummary("job aborted before it ran"),
                )
                return
            job_type = self.job_types.get(job.type)
            if job_type is None:
                message = f"job type {job.type!r} is no longer loaded"
                await self._end(job, ExecutionPhase.ERROR, error=ErrorSummary(message))
                return
            runner = self.runners[job_type.runner]
            spec = self._launch_spec(job, job_type)
            # Known shortcoming: if OCPS dies between the launch and the
            # journal write below, the next start finds the job QUEUED
            # without runner state and launches it again. Closing the gap
            # needs runners that can look a job up by its id; until then
            # the window is one journal write wide.
            try:
                state = await runner.launch(spec)
            except Exception as e:
                # A runner marks a failure that may pass (e.g. a batch
                # controller out of reach) with a true "transient".
                transient = bool(getattr(e, "transient", False))
                if not transient and not isinstance(e, OSError):
                    raise
                reason = (e.strerror if isinstance(e, OSError) else None) or e
                error = ErrorSummary(
                    f"could not start the job: {reason}",
                    ErrorType.TRANSIENT if transient else ErrorType.FATAL,
                )
                await self._end(job, ExecutionPhase.ERROR, error=error)
                return
            await self._change(
                job, runner_state={"runner": runner.name, "state": state}
            )
        await self._follow(job, runner, state)

    async def _resume(self, job: Job, runner: Runner) -> None:
        """Follow a re-attached job to its end."""
        await self._follow(job, runner, job.runner_state["state"])

    async def _follow(self, job: Job, runner: Runner, state: dict[str, Any]) -> None:
        """Mark a launched job EXECUTING once it runs, then record its end.

        A batch job may end without having run, e.g. when it is aborted
        or fails while it waits in the batch queue; its runner then
        reports the start and the end at once. Such a job is never
        announced EXECUTING and gets no start time: not when an abort
        was requested, nor when its run is over by the time the start is
        reported and it left no exit code.
        """
        job_id = job.job_id
        finished = asyncio.create_task(runner.wait_finished(job_id, state))
        try:
            if job.phase is not ExecutionPhase.EXECUTING:
                await self._wait_started(runner, job_id, state, finished)
                async with self._lock(job_id):
                    never_ran = finished.done() and (
                        finished.exception() is not None
                        or finished.result().exit_code is None
                    )
                    if job_id not in self._abort_requested and not never_ran:
                        await self._change(
                            job, phase=ExecutionPhase.EXECUTING, start_time=_now()
                        )
                        details = "".join(
                            f" {key}={value}"
                            for key, value in state.items()
                            if key in _LOGGED_STATE
                        )
                        self.log.info(
                            f"job_id={job_id} started runner={runner.name}{details}"
                        )
                        await self._announce(job)
            outcome = await finished
        finally:
            finished.cancel()
            await asyncio.gather(finished, return_exceptions=True)
        await self._finish(job, outcome)

    @staticmethod
    async def _wait_started(
        runner: Runner,
        job_id: str,
        state: dict[str, Any],
        finished: asyncio.Task[RunOutcome],
    ) -> None:
        """Wait until the runner says the job started or ``finished`` is
        done; raise what ``wait_started`` raised."""
        started = asyncio.create_task(runner.wait_started(job_id, state))
        try:
            await asyncio.wait({started, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
            await asyncio.gather(started, return_exceptions=True)
        if not started.cancelled():
            error = started.exception()
            if error is not None:
                raise error

    async def _finish(self, job: Job, outcome: RunOutcome) -> None:
        """Collect the ended job's results and record its terminal phase."""
        job_type = self.job_types.get(job.type)
        globs = [] if job_type is None else job_type.output_globs
        work_dir = self.work_dir(job.job_id)
        if globs or (work_dir / RESULT_FILE_NAME).exists():
            # Globbing a big output tree, or reading a big result file,
            # may take a while: off the loop. MAX_DECLARED_RESULTS is read
            # here, not in results, so that tests lowering it here work.
            loop = asyncio.get_running_loop()
            job_info, results, ignored = await loop.run_in_executor(
                None, collect_outputs, work_dir, globs, MAX_DECLARED_RESULTS
            )
        else:
            job_info, results, ignored = collect_outputs(
                work_dir, globs, MAX_DECLARED_RESULTS
            )
        for line in ignored[:_MAX_LOGGED_ENTRIES]:
            self.log.warning(f"job_id={job.job_id} ignored {line}")
        if len(ignored) > _MAX_LOGGED_ENTRIES:
            more = len(ignored) - _MAX_LOGGED_ENTRIES
            self.log.warning(
                f"job_id={job.job_id} ignored result entries: {more} more not logged"
            )

        message, problem = declared_error(job_info)
        if problem is not None:
            self.log.warning(f"job_id={job.job_id} ignored result error: {problem}")
        phase, error = outcome_phase(outcome, message)
        if (
            phase is ExecutionPhase.ABORTED
            and job.start_time is None
            and outcome.exit_code is None
        ):
            error = ErrorSummary("job aborted before it ran")
        async with self._lock(job.job_id):
            await self._end(
                job,
                phase,
                error=error,
                exit_code=outcome.exit_code,
                results=results,
                job_info={**job.job_info, **job_info},
            )

    def _launch_spec(self, job: Job, job_type: JobType) -> LaunchSpec:
        return make_launch_spec(
            job,
            job_type,
            work_dir=self.work_dir(job.job_id),
            stdout_path=self.log_path(job.job_id, "stdout"),
            stderr_path=self.log_path(job.job_id, "stderr"),
            log_limit=self.config.log_limit,
        )

    # Phase changes

    def _lock(self, job_id: str) -> asyncio.Lock:
        lock = self._locks.get(job_id)
        if lock is None:
            lock = self._locks[job_id] = asyncio.Lock()
        return lock

    def _change_event(self, job_id: str) -> asyncio.Event:
        event = self._changed.get(job_id)
        if event is None:
            event = self._changed[job_id] = asyncio.Event()
        return event

    async def _change(self, job: Job, **changes: Any) -> None:
        """Journal new field values of an active job, then apply them."""
        updated = dataclasses.replace(job, **changes)
        await self.journal.update(updated)
        for name, value in changes.items():
            setattr(job, name, value)

    async def _end(
        self,
        job: Job,
        phase: ExecutionPhase,
        *,
        error: ErrorSummary | None = None,
        **changes: Any,
    ) -> None:
        """Journal the job's terminal phase, log it and announce it."""
        end_time = _now()
        destruction = end_time + datetime.timedelta(seconds=self.config.retention)
        await self._change(
            job,
            phase=phase,
            end_time=end_time,
            destruction=destruction,
            error_summary=error,
            **changes,
        )
        self._active.pop(job.job_id, None)
        self._locks.pop(job.job_id, None)

        duration = ""
        if job.start_time is not None:
            duration = f" duration={(end_time - job.start_time).total_seconds():.2f}s"
        verb = {
            ExecutionPhase.COMPLETED: "finished",
            ExecutionPhase.ABORTED: "aborted",
        }.get(phase, "failed")
        reason = (
            "" if error is None or verb == "finished" else f" reason={error.message!r}"
        )
        self.log.info(
            f"job_id={job.job_id} {verb} exit_code={job.exit_code}{duration}{reason}"
        )
        if self._next_purge is None or destruction < self._next_purge:
            self._purge_wakeup.set()
        await self._announce(job)

    async def _announce(self, job: Job) -> None:
        """Wake the job's waiters, then await each listener in order."""
        event = self._changed.pop(job.job_id, None)
        if event is not None:
            event.set()
        snapshot = _copy_job(job)
        for listener in list(self._listeners):
            try:
                result = listener(snapshot)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.log.exception(
                    f"job_id={job.job_id} listener {listener!r} failed; ignored"
                )

    # Recovery and purging

    async def _recover(self, job: Job) -> None:
        """Take up an active job found in the journal at start.

        A held job waits again for its prerequisites and data; its
        ``wait_timeout`` starts again from this moment.
        """
        job_id = job.job_id
        launched = bool(job.runner_state)
        if job.phase is ExecutionPhase.EXECUTING or launched:
            runner = self.runners.get(job.runner_state.get("runner", ""))
            found = runner is not None and await runner.reattach(
                job_id, job.runner_state["state"]
            )
            if runner is None or not found:
                async with self._lock(job_id):
                    await self._end(
                        job, ExecutionPhase.ERROR, error=ErrorSummary(LOST_MESSAGE)
                    )
                return
            self.log.info(
                f"job_id={job_id} recovered phase={job.phase} runner={runner.name}"
            )
            self._dispatch(job, self._resume(job, runner))
        elif job.phase is ExecutionPhase.HELD:
            self.log.info(f"job_id={job_id} recovered phase=HELD")
            self._hold_tasks[job_id] = asyncio.create_task(self._hold(job))
        else:
            if job.phase is ExecutionPhase.PENDING:
                async with self._lock(job_id):
                    phase = ExecutionPhase.QUEUED
                    if job.prereq_jobs or job.wait_for:
                        phase = ExecutionPhase.HELD
                    await self._change(job, phase=phase)
                    await self._announce(job)
                if phase is ExecutionPhase.HELD:
                    self._hold_tasks[job_id] = asyncio.create_task(self._hold(job))
                    return
            self.log.info(f"job_id={job_id} recovered phase=QUEUED")
            self._queue[job_id] = None

    async def _purge_loop(self) -> None:
        """Purge jobs whose destruction time has come; sleep until the next
        one or until a job ends with an earlier one."""
        while True:
            self._purge_wakeup.clear()
            try:
                for job_id in await self.journal.expired_ids(_now()):
                    if job_id not in self._active:
                        await self._purge(job_id, reason="expired")
                self._next_purge = await self.journal.next_destruction()
            except Exception:
                self.log.exception("purging failed; retrying in 60 s")
                self._next_purge = _now() + datetime.timedelta(seconds=60)
            timeout = None
            if self._next_purge is not None:
                timeout = max(0.0, (self._next_purge - _now()).total_seconds())
            try:
                await asyncio.wait_for(self._purge_wakeup.wait(), timeout)
            except TimeoutError:
                pass

    async def _purge(self, job_id: str, reason: str) -> None:
        """Delete an ended job's row and work dir, and wake its waiters."""
        await self.journal.delete(job_id)
        work_dir = self.work_dir(job_id)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, shutil.rmtree, work_dir, True)
        self.log.info(f"job_id={job_id} purged reason={reason}")
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()

    # Helpers

    def _check_running(self) -> None:
        if not self._running:
            raise JobStateError("the job manager is not running")

    async def _get_active(self, job_id: str) -> Job:
        job = self._active.get(job_id)
        if job is None:
            ended = await self.journal.get(job_id)
            raise JobStateError(f"job_id={job_id} has ended already ({ended.phase})")
        return job


def _copy_job(job: Job) -> Job:
    """Return a copy of the job that shares no mutable data with it."""
    error = job.error_summary
    return dataclasses.replace(
        job,
        parameters=copy.deepcopy(job.parameters),
        error_summary=None if error is None else dataclasses.replace(error),
        results=[
            dataclasses.replace(result, details=copy.deepcopy(result.details))
            for result in job.results
        ],
        prereq_jobs=list(job.prereq_jobs),
        wait_for=list(job.wait_for),
        job_info=copy.deepcopy(job.job_info),
        runner_state=copy.deepcopy(job.runner_state),
    )


def _check_seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ParameterError(f"{name}={value!r} must be a number of seconds >= 0")
