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

"""The OCPS CSC: SAL ``execute``/``abort_job`` driving the job manager.

One process holds the CSC, its embedded `JobManager` and the REST job API,
all in one event loop.

Commands
--------
``execute`` (ENABLED only, many at once) maps its fields to a job of the
instance's job type (see `execute_request`), submits it, and acks
``CMD_INPROGRESS`` with ``{"job_id": "<id>"}`` as its FIRST ack, with a
timeout covering the job's execution-duration limit (and again, with the
same result, when the job starts executing). It publishes ``job_id``
(``event_name="cmd_execute"``, ``seq_num`` = the command's seqNum), waits
for the job's terminal phase without polling, publishes ``job_result`` and
then acks ``CMD_COMPLETE`` -- also when the job failed or was aborted:
the job reached a terminal phase and ``job_result.exit_code`` says how.
Only a rejected request (bad fields, unknown job type or prerequisite, a
job manager that is not running) fails the command, and then no job
exists. Prerequisites go to the job manager (the job is HELD there); they
are not waited on before the first ack.

``abort_job`` aborts a job by id (also one submitted over REST); its
``job_result`` (exit code 255, ``phase: "aborted"``) is published before
``abort_job`` completes, and the owning ``execute`` then completes. An
unknown id, or a job that already ended, fails the command.

Reporting
---------
Every job of the manager -- submitted by ``execute`` or over REST -- gets
exactly one ``job_result``: a manager listener hands the job to the
CSC's `JobReporter` when it reaches a terminal phase, which publishes the
result, then marks the job reported in the journal. A
job that ended while the CSC was down, or whose result could not be
published, is published when the job manager starts again. Publishing
needs the SAL layer, not the ENABLED state: results go out in every
summary state. If the process dies between the write and the journal
update (a window of a few milliseconds) the result is published again
after the restart. REST-submitted jobs also get a ``job_id`` event with
``event_name="rest"`` and ``seq_num=0``.

Summary states
--------------
The job manager and the REST API live for the whole process: they start
with the CSC from the base configuration (``_init.yaml`` and the site
file), so that journaled jobs are re-adopted and reported at once, and
the ``start`` command re-applies them (a change of the manager settings
is refused while jobs are active). Leaving ENABLED (disable, standby,
FAULT) stops nothing: queued and running jobs go on, pending ``execute``
commands get their final ack when their job ends, and REST keeps working;
only new ``execute``/``abort_job`` commands are refused. ``exitControl``,
SIGTERM and SIGINT close the process: pending ``execute`` commands are
acked ``CMD_ABORTED``, running jobs keep running under their supervisors,
and the next start on the same state dir re-adopts them and publishes
every missing ``job_result``.

Index 101 (RA) runs no jobs: ``execute`` LPUSHes the JSON object in
``config`` to Redis and completes at once (no in-progress ack, no job id,
no ``job_result``); ``abort_job`` fails. As in dm_OCPS, simulation mode
does not cover it: index 101 needs Redis in both modes. It runs no job
manager and no REST API.

Simulation mode 1 follows dm_OCPS (`simulator.SimulatedJobs`): pipelines
``true.yaml``, ``false.yaml`` and ``fault.yaml``.
"""

from __future__ import annotations

__all__ = ["ErrorCode", "OcpsCsc", "SalIndex", "run_ocps"]

import asyncio
import enum
import json
import os
import pathlib
import types
import uuid
from typing import Any

from .. import __version__, sal
from ..exceptions import JobNotFoundError, JobStateError, OcpsError, ParameterError
from ..jobs.job_manager import JobManager
from ..models import ExecutionPhase, Job
from .config_schema import CONFIG_SCHEMA
from .execute_request import ExecuteRequest, build_parameters
from .job_reporter import REPORT_RETRY_MAX  # noqa: F401 (importable here)
from .job_reporter import JobReporter
from .job_service import JobService
from .rapid_analysis import RapidAnalysisBackend, RedisSettings
from .settings import (
    DEFAULT_CONFIG_DIR,
    CscSettings,
    SalIndex,
)
from .simulator import SimulatedJobs

ACK_TIMEOUT_MARGIN = 60.0
"""Seconds added to a job's time limit for the in-progress ack timeout."""

UNLIMITED_ACK_TIMEOUT = 86400.0
"""In-progress ack timeout (s) of a job without an execution limit."""

MIN_FINAL_ACK_DELAY = 0.05
"""Seconds between the in-progress ack and the final ack, at least.

A salobj Remote forgets a command once its final ack is read, so a
client that calls ``next_ackcmd`` after ``set_start(wait_done=False)``
needs the final ack not to overtake it.
"""

REST_EVENT_NAME = "rest"
"""``job_id.event_name`` of jobs submitted over the REST API."""


class ErrorCode(enum.IntEnum):
    """``errorCode`` values of the OCPS CSC (as dm_OCPS numbers them)."""

    EXECUTION_SERVICE = 1
    """The execution service cannot be reached.

    Reserved: the job manager runs in the CSC's own process, so there is
    no remote service to lose; a manager that cannot start makes the
    ``start`` command fail instead.
    """

    PIPELINE_FAILURE = 2
    """A pipeline failed synchronously (the simulated ``fault.yaml``)."""


class OcpsCsc(sal.ConfigurableCsc):
    """The OCS-Controlled Pipeline System CSC.

    Parameters
    ----------
    index : `int`
        SAL index, one of `SalIndex`.
    config_dir : `str`, `pathlib.Path` or `None`, optional
        Configuration directory; `None` means the one shipped with
        ts_ocps (`settings.DEFAULT_CONFIG_DIR`).
    initial_state : `sal.State` or `None`, optional
        State to reach at start-up.
    override : `str`, optional
        Configuration override for an initial DISABLED/ENABLED state.
    simulation_mode : `int`, optional
        0 for real jobs, 1 for dm_OCPS-style simulated jobs.
    **kwargs : `typing.Any`
        Passed to `sal.ConfigurableCsc`.

    Raises
    ------
    ValueError
        Raised if ``index`` is not a `SalIndex`.

    Notes
    -----
    See the module documentation for commands, reporting and summary
    states.
    """

    valid_simulation_modes = (0, 1)
    version = __version__
    enable_cmdline_state = True

    def __init__(
        self,
        index: int,
        config_dir: str | pathlib.Path | None = None,
        initial_state: sal.State | int | None = None,
        override: str = "",
        simulation_mode: int = 0,
        **kwargs: Any,
    ) -> None:
        self.sal_index = SalIndex(index)
        self.settings: CscSettings | None = None
        self.rapid_analysis: RapidAnalysisBackend | None = None
        self.simulator = SimulatedJobs(duration=10.0)

        # Jobs submitted by execute (they get no "rest" job_id event), the
        # execute command of each once its first ack is out, and REST
        # jobs already announced.
        self._sal_job_ids: set[str] = set()
        self._execute_commands: dict[str, sal.Sample] = {}
        self._announced: set[str] = set()
        self._execute_tasks: set[asyncio.Task[Any]] = set()

        super().__init__(
            "OCPS",
            index=int(index),
            config_schema=CONFIG_SCHEMA,
            config_dir=DEFAULT_CONFIG_DIR if config_dir is None else config_dir,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
            **kwargs,
        )
        self.cmd_execute.allow_multiple_callbacks = True
        self.cmd_abort_job.allow_multiple_callbacks = True
        self.reporter = JobReporter(self.evt_job_result, self.log)
        self.job_service = JobService(
            self.log,
            listener=self._on_job_change,
            on_started=self.reporter.report_unreported,
        )

    @property
    def manager(self) -> JobManager | None:
        """The embedded job manager, if it runs."""
        return self.job_service.manager

    @property
    def rest_port(self) -> int | None:
        """The port the REST job API listens on, if it does."""
        return self.job_service.rest_port

    @staticmethod
    def get_config_pkg() -> str:
        return "dm_config_ocps"

    # Start-up and configuration

    async def start(self) -> None:
        broker = os.environ.get("LSST_KAFKA_BROKER_ADDR", "")
        if broker:
            self.log.info(f"SAL transport: Kafka, broker {broker}")
        else:
            self.log.info(
                "SAL transport: in-process (LSST_KAFKA_BROKER_ADDR is not set); "
                "only this process and the REST API can reach the CSC"
            )
        await super().start()

    async def handle_startup_reported(self) -> None:
        await super().handle_startup_reported()
        if self.sal_index == SalIndex.RA:
            return
        try:
            loaded = await sal.load_config(
                config_dir=self.config_dir,
                override="",
                site=self.site,
                schema=self.config_schema,
            )
            settings = self._read_settings(loaded.config)
            await self.job_service.apply(settings, rest_required=False)
        except Exception as e:
            self.log.warning(f"Job manager not started until the start command: {e}")

    async def configure(self, config: types.SimpleNamespace) -> None:
        """Apply a configuration validated against `CONFIG_SCHEMA`.

        Raises
        ------
        sal.ExpectedError
            Raised if the configuration has no usable entry for this index,
            its job types do not load, its instance's job type is missing,
            the manager settings change while jobs are active, the REST API
            cannot listen, or (index 101) Redis cannot be reached.
        """
        settings = self._read_settings(config)
        if self.sal_index == SalIndex.RA:
            await self._configure_rapid_analysis()
        else:
            instance = settings.instance
            assert instance is not None
            if instance.unused_keys:
                self.log.info(
                    f"instances entry for sal_index={int(self.sal_index)}: "
                    f"{', '.join(instance.unused_keys)} unused (only the UWS "
                    "backend of OCPS v4 used them)"
                )
            await self.job_service.apply(settings, rest_required=True)
        self.simulator.duration = settings.simulation_duration
        self.settings = settings

    def _read_settings(self, config: Any) -> CscSettings:
        try:
            return CscSettings.from_config(config, int(self.sal_index), self.config_dir)
        except ValueError as e:
            raise sal.ExpectedError(str(e)) from e

    async def _configure_rapid_analysis(self) -> None:
        """(Re)connect to the rapid-analysis Redis server."""
        try:
            settings = RedisSettings.from_environment()
        except RuntimeError as e:
            raise sal.ExpectedError(str(e)) from e
        backend = RapidAnalysisBackend(settings, self.log)
        try:
            await backend.ping()
        except ConnectionError as e:
            await backend.close()
            raise sal.ExpectedError(str(e)) from e
        if self.rapid_analysis is not None:
            await self.rapid_analysis.close()
        self.rapid_analysis = backend
        self.log.info(f"Rapid analysis: Redis at {settings.host}:{settings.port}")

    async def close_tasks(self) -> None:
        # Pending commands first, while SAL can still send their acks.
        tasks = list(self._execute_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

        await self.reporter.close()

        await self.job_service.close()
        if self.rapid_analysis is not None:
            await self.rapid_analysis.close()
            self.rapid_analysis = None
        await super().close_tasks()

    # Job manager listener

    async def _on_job_change(self, job: Job) -> None:
        """Job manager listener: announce REST jobs, report ended jobs."""
        if job.is_terminal:
            self._execute_commands.pop(job.job_id, None)
            self._sal_job_ids.discard(job.job_id)
            self._announced.discard(job.job_id)
            if self.manager is not None:
                self.reporter.report(job, self.manager)
            return

        if job.phase == ExecutionPhase.EXECUTING:
            data = self._execute_commands.get(job.job_id)
            if data is not None:
                await self.cmd_execute.ack_in_progress(
                    data, timeout=_ack_timeout(job), result=_ack_result(job.job_id)
                )
            return

        is_new = (
            job.start_time is None
            and self.job_service.started is not None
            and job.creation_time >= self.job_service.started
        )
        if (
            is_new
            and job.job_id not in self._sal_job_ids
            and job.job_id not in self._announced
        ):
            self._announced.add(job.job_id)
            await self.evt_job_id.set_write(
                event_name=REST_EVENT_NAME,
                seq_num=0,
                job_id=job.job_id,
                force_output=True,
            )

    # Commands

    async def do_execute(self, data: sal.Sample) -> None:
        """Run a pipeline job (index 101: push work to Redis)."""
        self.assert_enabled("execute")
        task = asyncio.current_task()
        assert task is not None
        self._execute_tasks.add(task)
        try:
            if self.sal_index == SalIndex.RA:
                await self._execute_rapid_analysis(data)
            elif self.simulation_mode:
                await self._execute_simulated(data)
            else:
                await self._execute_job(data)
        finally:
            self._execute_tasks.discard(task)

    async def _execute_job(self, data: sal.Sample) -> None:
        manager = self.manager
        if manager is None or self.settings is None:
            raise sal.ExpectedError("execute rejected: the job manager is not running")
        instance = self.settings.instance
        assert instance is not None

        job_id = uuid.uuid4().hex
        waiter, _ = self.reporter.add_waiter(job_id)
        self._sal_job_ids.add(job_id)
        try:
            request = ExecuteRequest.from_command(data)
            job_type = manager.job_types.get_type(instance.job_type)
            schema = job_type.parameters_schema
            parameters = build_parameters(
                request,
                instance,
                schema.get("properties", {}),
                job_type=job_type.name,
                allows_extra=schema.get("additionalProperties", False) is not False,
            )
            job = await manager.submit(
                job_type.name,
                parameters,
                run_id=str(data.private_seqNum),
                owner_id=data.private_identity or None,
                prereq_jobs=request.prereq_jobs,
                job_id=job_id,
            )
        except (OcpsError, JobStateError) as e:
            self._sal_job_ids.discard(job_id)
            self.reporter.discard_waiter(job_id)
            raise sal.ExpectedError(f"execute rejected: {e}") from e
        except BaseException:
            self._sal_job_ids.discard(job_id)
            self.reporter.discard_waiter(job_id)
            raise
        self.log.info(
            f"job_id={job_id} submitted by execute seq_num={data.private_seqNum} "
            f"identity={data.private_identity!r} type={job.type} phase={job.phase}"
        )

        loop = asyncio.get_running_loop()
        await self.cmd_execute.ack_in_progress(
            data, timeout=_ack_timeout(job), result=_ack_result(job_id)
        )
        ack_time = loop.time()
        self._execute_commands[job_id] = data
        try:
            await self._announce_job_id(data, job_id)
            try:
                await manager.wait_terminal(job_id)
            except JobNotFoundError:
                raise sal.ExpectedError(f"job {job_id} was purged before it ended")
            await asyncio.shield(waiter)
        finally:
            self._execute_commands.pop(job_id, None)
        await _keep_final_ack_gap(ack_time)

    async def _execute_simulated(self, data: sal.Sample) -> None:
        try:
            job_id = self.simulator.submit(data.pipeline.strip())
        except ParameterError as e:
            raise sal.ExpectedError(str(e)) from e
        waiter, _ = self.reporter.add_waiter(job_id)
        self.log.info(
            f"job_id={job_id} submitted by execute seq_num={data.private_seqNum} "
            "simulated"
        )
        loop = asyncio.get_running_loop()
        await self.cmd_execute.ack_in_progress(
            data,
            timeout=self.simulator.duration + ACK_TIMEOUT_MARGIN,
            result=_ack_result(job_id),
        )
        ack_time = loop.time()
        await self._announce_job_id(data, job_id)
        try:
            outcome = await self.simulator.wait(job_id)
            await self.reporter.publish(outcome.report)
        finally:
            self.reporter.resolve_waiter(job_id)
        if outcome.fault:
            message = outcome.report.result["errorSummary"]["message"]
            await self.fault(code=ErrorCode.PIPELINE_FAILURE, report=message)
            raise sal.ExpectedError(message)
        await _keep_final_ack_gap(ack_time)

    async def _announce_job_id(self, data: sal.Sample, job_id: str) -> None:
        """Publish the ``job_id`` event of an ``execute`` command."""
        await self.evt_job_id.set_write(
            event_name="cmd_execute",
            seq_num=data.private_seqNum,
            job_id=job_id,
            force_output=True,
        )

    async def _execute_rapid_analysis(self, data: sal.Sample) -> None:
        if self.rapid_analysis is None:
            raise sal.ExpectedError("execute rejected: Redis is not configured")
        try:
            items = await self.rapid_analysis.push(data.config)
        except ParameterError as e:
            raise sal.ExpectedError(f"execute rejected: {e}") from e
        except ConnectionError as e:
            raise sal.ExpectedError(str(e)) from e
        self.log.info(
            f"execute seq_num={data.private_seqNum} pushed {len(items)} work "
            f"item(s) to Redis: {', '.join(items)}"
        )

    async def do_abort_job(self, data: sal.Sample) -> None:
        """Abort a job; its ``job_result`` is out when this completes."""
        self.assert_enabled("abort_job")
        job_id = data.job_id.strip()
        if self.sal_index == SalIndex.RA:
            raise sal.ExpectedError("abort_job: index 101 (RA) runs no jobs")
        if not job_id:
            raise sal.ExpectedError("abort_job: job_id is empty")

        waiter, created = self.reporter.add_waiter(job_id)
        try:
            if job_id in self.simulator:
                self.simulator.abort(job_id)
            elif self.manager is None:
                raise JobNotFoundError("the job manager is not running")
            else:
                await self.manager.abort(job_id)
        except (JobNotFoundError, JobStateError) as e:
            if created:
                self.reporter.discard_waiter(job_id)
            if isinstance(e, JobNotFoundError):
                raise sal.ExpectedError(f"No such job id: {job_id!r}") from e
            raise sal.ExpectedError(f"cannot abort job {job_id!r}: {e}") from e
        self.log.info(f"job_id={job_id} aborted by abort_job")
        await asyncio.shield(waiter)


def _ack_timeout(job: Job) -> float:
    """The in-progress ack timeout for a job: its limit plus a margin."""
    if job.execution_duration > 0:
        return job.execution_duration + ACK_TIMEOUT_MARGIN
    return UNLIMITED_ACK_TIMEOUT


def _ack_result(job_id: str) -> str:
    """The ``result`` of an ``execute`` in-progress ack."""
    return json.dumps({"job_id": job_id})


def run_ocps() -> None:
    """Run the OCPS CSC from the command line (``run_ocps INDEX ...``).

    Without ``LSST_KAFKA_BROKER_ADDR`` the CSC runs on the in-process
    transport; ``LSST_TOPIC_SUBNAME`` then defaults to ``sal``.
    """
    if not os.environ.get("LSST_KAFKA_BROKER_ADDR"):
        os.environ.setdefault("LSST_TOPIC_SUBNAME", "sal")
    asyncio.run(sal.amain(OcpsCsc, index=SalIndex))


async def _keep_final_ack_gap(ack_time: float) -> None:
    """Sleep until `MIN_FINAL_ACK_DELAY` has passed since ``ack_time``.

    ``ack_time`` is the event-loop time of the in-progress ack; callers
    expect tens of milliseconds between it and the final ack.
    """
    remaining = MIN_FINAL_ACK_DELAY - (asyncio.get_running_loop().time() - ack_time)
    if remaining > 0:
        await asyncio.sleep(remaining)
