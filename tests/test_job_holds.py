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

"""Tests of `lsst.ts.ocps.jobs.holds`: what a HELD job waits for."""

import asyncio
import logging
import pathlib
from typing import Any

import pytest
from lsst.ts.ocps.exceptions import JobNotFoundError, ParameterError
from lsst.ts.ocps.jobs.holds import check_hold_request, wait_out_hold
from lsst.ts.ocps.models import ExecutionPhase, Job

LOG = logging.getLogger("ocps.test_job_holds")


def make_job(job_id: str, phase: ExecutionPhase, **kwargs: Any) -> Job:
    return Job(
        job_id=job_id, type="t", version="1", parameters={}, phase=phase, **kwargs
    )


class Ended:
    """Stand-in for `JobManager.wait_terminal`: jobs that ended already,
    recording which ids were waited for."""

    def __init__(self, *jobs: Job) -> None:
        self.jobs = {job.job_id: job for job in jobs}
        self.asked: list[str] = []

    async def __call__(self, job_id: str) -> Job:
        self.asked.append(job_id)
        if job_id not in self.jobs:
            raise JobNotFoundError(f"{job_id=} not found")
        return self.jobs[job_id]


def test_check_hold_request() -> None:
    prereqs, wait_for = check_hold_request("j", ["a", "b", "a"], ["/data/*.fits"])
    assert prereqs == ["a", "b"]
    assert wait_for == ["/data/*.fits"]


@pytest.mark.parametrize(
    "prereqs, wait_for, match",
    [
        ([], ["data/*.fits"], "must be an absolute path without '..'"),
        ([], ["/data/../etc/x"], "must be an absolute path without '..'"),
        (["a", "j"], [], "job_id='j' cannot be its own prerequisite"),
    ],
)
def test_check_hold_request_rejects(
    prereqs: list[str], wait_for: list[str], match: str
) -> None:
    with pytest.raises(ParameterError, match=match):
        check_hold_request("j", prereqs, wait_for)


async def test_prerequisites_without_success() -> None:
    waiter = Ended(make_job("a", ExecutionPhase.ERROR))
    job = make_job("j", ExecutionPhase.HELD, prereq_jobs=["a", "gone"])
    assert await wait_out_hold(job, waiter, LOG) is None
    assert waiter.asked == ["a", "gone"]


@pytest.mark.parametrize(
    "prereq_phase, failure",
    [
        (ExecutionPhase.COMPLETED, None),
        (ExecutionPhase.ABORTED, "prerequisite job a ended ABORTED"),
    ],
)
async def test_prerequisites_with_success(
    prereq_phase: ExecutionPhase, failure: str | None
) -> None:
    waiter = Ended(make_job("a", prereq_phase))
    job = make_job("j", ExecutionPhase.HELD, prereq_jobs=["a"], prereq_success=True)
    assert await wait_out_hold(job, waiter, LOG) == failure


async def test_purged_prerequisite_with_success() -> None:
    job = make_job("j", ExecutionPhase.HELD, prereq_jobs=["gone"], prereq_success=True)
    failure = await wait_out_hold(job, Ended(), LOG)
    assert failure == "prerequisite job gone was purged before it was seen to end"


async def test_data_present(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.fits").write_text("x")
    job = make_job("j", ExecutionPhase.HELD, wait_for=[str(tmp_path / "*.fits")])
    assert await wait_out_hold(job, Ended(), LOG) is None


async def test_data_timeout(tmp_path: pathlib.Path) -> None:
    pattern = str(tmp_path / "*.fits")
    job = make_job("j", ExecutionPhase.HELD, wait_for=[pattern], wait_timeout=0.2)
    failure = await wait_out_hold(job, Ended(), LOG)
    assert failure == f"timed out waiting for data: {pattern}"


async def test_error_inside_ocps(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(job_id: str) -> Job:
        raise RuntimeError("journal unreadable")

    job = make_job("j", ExecutionPhase.HELD, prereq_jobs=["a"])
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        failure = await wait_out_hold(job, broken, LOG)
    assert failure == "OCPS error while waiting: RuntimeError('journal unreadable')"
    assert [record.getMessage() for record in caplog.records] == [
        "job_id=j failed while held"
    ]


async def test_cancel_propagates() -> None:
    gate = asyncio.Event()

    async def waits(job_id: str) -> Job:
        await gate.wait()
        raise AssertionError("never released")

    job = make_job("j", ExecutionPhase.HELD, prereq_jobs=["a"])
    task = asyncio.create_task(wait_out_hold(job, waits, LOG))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
