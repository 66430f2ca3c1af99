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

"""Exactly-once ``job_result`` publication of the OCPS CSC."""

from __future__ import annotations

__all__ = ["REPORT_RETRY_MAX", "JobReporter"]

import asyncio
import logging

from .. import sal
from ..exceptions import JobNotFoundError
from ..jobs.job_manager import JobManager
from ..models import Job
from .job_report import JobReport, describe_job

REPORT_RETRY_MAX = 60.0
"""Longest pause (s) between attempts to publish a ``job_result``."""


class JobReporter:
    """Publish one ``job_result`` per ended job, then mark it reported.

    Parameters
    ----------
    job_result : `sal.WriteTopic`
        The CSC's ``job_result`` event writer.
    log : `logging.Logger`
        Logger of the publication lines (the CSC's).

    Notes
    -----
    A job is marked reported in the journal only after its ``job_result``
    is written, and a failed write is retried with back-off until it
    works, so every job gets its result; one that ended while no CSC ran
    is reported through `report_unreported` when the job manager starts.
    If the process dies between the write and the journal update the
    result is published again after the restart.

    Commands that must not complete before a job's result is out (the
    CSC's ``execute`` and ``abort_job``) wait on a future from
    `add_waiter`, resolved once that result is published.
    """

    def __init__(self, job_result: sal.WriteTopic, log: logging.Logger) -> None:
        self.job_result = job_result
        self.log = log
        self.tasks: dict[str, asyncio.Task[None]] = {}
        """Running publication tasks, by job id."""
        self._waiters: dict[str, asyncio.Future[None]] = {}

    def report(self, job: Job, manager: JobManager) -> None:
        """Publish a terminal job's result unless that is under way.

        Parameters
        ----------
        job : `Job`
            The job, in a terminal phase.
        manager : `JobManager`
            Its job manager, which is told once the result is out.
        """
        if job.job_id not in self.tasks:
            self.tasks[job.job_id] = asyncio.create_task(self._report(job, manager))

    async def report_unreported(self, manager: JobManager) -> None:
        """Publish the results of every ended job not reported yet.

        Parameters
        ----------
        manager : `JobManager`
            The job manager, just started.
        """
        for job in await manager.unreported_jobs():
            self.report(job, manager)

    async def publish(self, report: JobReport) -> None:
        """Write ``job_result``, retrying with back-off until it works.

        Parameters
        ----------
        report : `JobReport`
            The result to publish.
        """
        delay = 0.5
        while True:
            try:
                await self.job_result.set_write(
                    job_id=report.job_id,
                    exit_code=report.exit_code,
                    result=report.result_text,
                    force_output=True,
                )
                break
            except Exception as e:
                self.log.warning(
                    f"job_id={report.job_id} finished; job_result not published "
                    f"({e!r}), retrying in {delay:.1f}s"
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, REPORT_RETRY_MAX)

        verb = {0: "finished", 255: "aborted"}.get(report.exit_code, "failed")
        phase = report.result.get("phase", "")
        self.log.info(
            f"job_id={report.job_id} {verb} phase={phase} "
            f"exit_code={report.exit_code}; job_result published"
        )

    def add_waiter(self, job_id: str) -> tuple[asyncio.Future[None], bool]:
        """The future resolved once ``job_id``'s result is published.

        Parameters
        ----------
        job_id : `str`
            The job id.

        Returns
        -------
        future : `asyncio.Future`
            The future.
        created : `bool`
            True if this call made it (the caller then removes it with
            `discard_waiter` if the job turns out not to exist).
        """
        waiter = self._waiters.get(job_id)
        if waiter is not None:
            return waiter, False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[job_id] = waiter
        return waiter, True

    def discard_waiter(self, job_id: str) -> None:
        """Forget the waiter of a job that will get no result.

        Parameters
        ----------
        job_id : `str`
            The job id.
        """
        self._waiters.pop(job_id, None)

    def resolve_waiter(self, job_id: str) -> None:
        """Tell whoever waits on ``job_id`` that its result is out.

        Parameters
        ----------
        job_id : `str`
            The job id.
        """
        waiter = self._waiters.pop(job_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def close(self) -> None:
        """Stop publishing; unpublished results stay unreported.

        The journal keeps those jobs unreported, so the next start
        publishes them.
        """
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _report(self, job: Job, manager: JobManager) -> None:
        """Publish ``job_result`` (retrying), then mark the job reported."""
        try:
            report = describe_job(job, manager.job_types, self.log)
            await self.publish(report)
            try:
                await manager.mark_reported(job.job_id)
            except JobNotFoundError:
                pass
        finally:
            self.tasks.pop(job.job_id, None)
        self.resolve_waiter(job.job_id)
