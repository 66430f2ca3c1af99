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

"""Holds: what a HELD job waits for before it is queued.

A job is HELD while it has prerequisite jobs that have not ended, or
``wait_for`` patterns (absolute paths or globs) that match no file yet.
The prerequisites are waited for first, then the data.
"""

from __future__ import annotations

__all__ = ["JobWaiter", "check_hold_request", "wait_out_hold"]

import logging
import pathlib
from collections.abc import Awaitable, Callable, Sequence

from ..exceptions import JobNotFoundError, ParameterError
from ..models import ExecutionPhase, Job
from . import triggers

JobWaiter = Callable[[str], Awaitable[Job]]
"""Waits until the job of an id ends and returns it; raises
`JobNotFoundError` if there is no such job (e.g. it was purged)."""


def check_hold_request(
    job_id: str, prereq_jobs: Sequence[str], wait_for: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Check what a job to be submitted asks to wait for.

    Parameters
    ----------
    job_id : `str`
        Id of the job to be submitted.
    prereq_jobs : `collections.abc.Sequence` [`str`]
        Ids of the jobs that must end first; whether they exist is not
        checked here.
    wait_for : `collections.abc.Sequence` [`str`]
        Paths or globs that must match a file first.

    Returns
    -------
    prereq_jobs : `list` [`str`]
        The prerequisite ids as strings, without repeats, in order.
    wait_for : `list` [`str`]
        The patterns as strings.

    Raises
    ------
    ParameterError
        Raised if a pattern is not absolute or holds ``..``, or if the
        job would be its own prerequisite.
    """
    patterns = [str(pattern) for pattern in wait_for]
    for pattern in patterns:
        path = pathlib.PurePosixPath(pattern)
        if not path.is_absolute() or ".." in path.parts:
            raise ParameterError(
                f"wait_for pattern {pattern!r} must be an absolute path " "without '..'"
            )
    prereqs = list(dict.fromkeys(str(prereq) for prereq in prereq_jobs))
    if job_id in prereqs:
        raise ParameterError(f"job_id={job_id!r} cannot be its own prerequisite")
    return prereqs, patterns


async def wait_out_hold(
    job: Job, wait_terminal: JobWaiter, log: logging.Logger
) -> str | None:
    """Wait for the job's prerequisites, then its data.

    Parameters
    ----------
    job : `Job`
        The held job.
    wait_terminal : `JobWaiter`
        Waits for a prerequisite to end.
    log : `logging.Logger`
        Logger for the data trigger and for errors of OCPS itself.

    Returns
    -------
    failure : `str` or `None`
        Why the job must end in ERROR without running; None if it may be
        queued.
    """
    try:
        failure = await _check_prerequisites(job, wait_terminal)
        if failure is None and job.wait_for:
            await triggers.wait_for_paths(job.wait_for, job.wait_timeout, log=log)
    except TimeoutError:
        failure = f"timed out waiting for data: {', '.join(job.wait_for)}"
    except Exception as e:
        log.exception(f"job_id={job.job_id} failed while held")
        failure = f"OCPS error while waiting: {e!r}"
    return failure


async def _check_prerequisites(job: Job, wait_terminal: JobWaiter) -> str | None:
    """Wait for every prerequisite to end; return why the job must not
    run, or None.

    A prerequisite that no longer exists (purged or deleted) counts as
    ended; with ``prereq_success`` it counts as failed, because its
    outcome can no longer be checked.
    """
    for prereq_id in job.prereq_jobs:
        try:
            prereq: Job | None = await wait_terminal(prereq_id)
        except JobNotFoundError:
            prereq = None
        if not job.prereq_success:
            continue
        if prereq is None:
            return f"prerequisite job {prereq_id} was purged before it was seen to end"
        if prereq.phase is not ExecutionPhase.COMPLETED:
            return f"prerequisite job {prereq_id} ended {prereq.phase}"
    return None
