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

"""Simulated pipeline jobs of the OCPS CSC (simulation mode 1)."""

from __future__ import annotations

__all__ = ["SimulatedJobs", "SimulatedOutcome", "SimulatedPipeline"]

import asyncio
import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from ..exceptions import JobNotFoundError, JobStateError, ParameterError
from ..sal.tai import current_tai
from .job_report import ABORTED_EXIT_CODE, FAILED_EXIT_CODE, JobReport


class SimulatedPipeline(enum.StrEnum):
    """The pipelines simulation mode knows, as dm_OCPS names them."""

    TRUE = "true.yaml"
    """Succeeds: ``{"result": true}``, exit code 0."""

    FALSE = "false.yaml"
    """Runs but reports failure: ``{"result": false}``, exit code 0."""

    FAULT = "fault.yaml"
    """Cannot reach the execution service: the CSC goes to FAULT."""


@dataclasses.dataclass(frozen=True)
class SimulatedOutcome:
    """How a simulated job ended.

    Parameters
    ----------
    report : `JobReport`
        The ``job_result`` to publish.
    fault : `bool`
        True if the CSC must go to FAULT and the command fail.
    """

    report: JobReport
    fault: bool = False


@dataclasses.dataclass
class _SimulatedJob:
    job_id: str
    pipeline: SimulatedPipeline
    aborted: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    abort_time: float = 0.0
    done: bool = False


class SimulatedJobs:
    """Runs simulated jobs: a fixed delay, then a canned result.

    Parameters
    ----------
    duration : `float`
        Seconds a simulated job runs.
    clock : `~collections.abc.Callable` [[], `float`]
        TAI clock used for job ids and abort times.

    Notes
    -----
    Behaviour follows dm_OCPS: job ids are ``<pipeline>-<TAI>``, results
    are ``{"result": true|false}`` with exit code 0, ``fault.yaml`` makes
    the CSC go to FAULT. Every result also carries ``jobId``,
    ``job_id`` and ``phase`` so that callers of the real CSC work
    unchanged; ``fault.yaml`` gets a ``job_result`` (exit code 1, phase
    ``error``) too, so every accepted job has exactly one. dm_OCPS draws
    the duration from |N(10, 4)| seconds; here it is fixed and
    configurable so that tests stay short.
    """

    def __init__(
        self, duration: float, clock: Callable[[], float] = current_tai
    ) -> None:
        self.duration = duration
        self.clock = clock
        self._jobs: dict[str, _SimulatedJob] = {}

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def submit(self, pipeline: str) -> str:
        """Accept a simulated job.

        Parameters
        ----------
        pipeline : `str`
            One of the `SimulatedPipeline` values.

        Returns
        -------
        job_id : `str`
            The new job's id, starting with the pipeline name.

        Raises
        ------
        ParameterError
            Raised if ``pipeline`` is not a simulated pipeline.
        """
        try:
            kind = SimulatedPipeline(pipeline)
        except ValueError:
            raise ParameterError(
                f"Unknown (simulated) pipeline: {pipeline!r}; "
                f"use one of {', '.join(p.value for p in SimulatedPipeline)}"
            ) from None
        job_id = f"{kind.value}-{self.clock():.6f}"
        while job_id in self._jobs:
            job_id += "x"
        self._jobs[job_id] = _SimulatedJob(job_id=job_id, pipeline=kind)
        return job_id

    async def wait(self, job_id: str) -> SimulatedOutcome:
        """Run a submitted job to its end.

        Parameters
        ----------
        job_id : `str`
            Id returned by `submit`.

        Returns
        -------
        outcome : `SimulatedOutcome`
            The result to publish and whether to go to FAULT.
        """
        job = self._jobs[job_id]
        try:
            await asyncio.wait_for(job.aborted.wait(), timeout=self.duration)
        except TimeoutError:
            pass
        job.done = True
        if job.aborted.is_set():
            return SimulatedOutcome(report=self._abort_report(job))

        if job.pipeline == SimulatedPipeline.FAULT:
            message = "404 Simulation cannot contact execution service"
            result = self._result(job, "error", False)
            result["errorSummary"] = {"message": message}
            report = JobReport(job_id, FAILED_EXIT_CODE, result)
            return SimulatedOutcome(report=report, fault=True)

        success = job.pipeline == SimulatedPipeline.TRUE
        return SimulatedOutcome(
            report=JobReport(job_id, 0, self._result(job, "completed", success))
        )

    def abort(self, job_id: str) -> None:
        """Abort a running simulated job; its `wait` then reports it.

        Raises
        ------
        JobNotFoundError
            Raised if no simulated job has this id.
        JobStateError
            Raised if the job already ended or is being aborted.
        """
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"No such job id: {job_id!r}")
        if job.done or job.aborted.is_set():
            raise JobStateError(f"job {job_id!r} already ended")
        job.abort_time = self.clock()
        job.aborted.set()

    def _abort_report(self, job: _SimulatedJob) -> JobReport:
        result = self._result(job, "aborted", False)
        result["abort_time"] = job.abort_time
        return JobReport(job.job_id, ABORTED_EXIT_CODE, result)

    @staticmethod
    def _result(job: _SimulatedJob, phase: str, success: bool) -> dict[str, Any]:
        return {
            "result": success,
            "jobId": job.job_id,
            "job_id": job.job_id,
            "phase": phase,
        }
