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

"""Tests of the SQLite job journal."""

import asyncio
import datetime
import pathlib
import signal
import sqlite3
import sys

import pytest
from lsst.ts.ocps.exceptions import JobNotFoundError, JobStateError, OcpsError
from lsst.ts.ocps.jobs.journal import SCHEMA_VERSION, Journal
from lsst.ts.ocps.models import (
    ErrorSummary,
    ErrorType,
    ExecutionPhase,
    Job,
    JobResult,
)

T0 = datetime.datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=datetime.UTC)


def make_job(index: int, phase: ExecutionPhase = ExecutionPhase.COMPLETED) -> Job:
    return Job(
        job_id=f"job-{index:06d}",
        type="sleep",
        version="1.0",
        parameters={"seconds": index},
        phase=phase,
        creation_time=T0 + datetime.timedelta(seconds=index),
    )


def full_job() -> Job:
    """A job with every field set to a non-default value."""
    return Job(
        job_id="full-job",
        type="pipetask",
        version="2.1",
        parameters={"pipeline": "cp.yaml", "nested": {"list": [1, 2.5, None, "é"]}},
        run_id="run 7",
        owner_id="MTScheduler:1",
        phase=ExecutionPhase.ERROR,
        creation_time=T0,
        start_time=T0 + datetime.timedelta(seconds=1),
        end_time=T0 + datetime.timedelta(seconds=2.5),
        execution_duration=600.0,
        destruction=T0 + datetime.timedelta(days=7),
        exit_code=-9,
        error_summary=ErrorSummary("process killed", ErrorType.TRANSIENT),
        results=[
            JobResult("a", "file:///tmp/a.txt", 12, "text/plain"),
            JobResult(
                "b",
                "s3://b",
                details={"datasetType": "bias", "dataId": {"detector": 1}},
            ),
        ],
        prereq_jobs=["p1", "p2"],
        prereq_success=True,
        wait_for=["/data/*.fits"],
        wait_timeout=30.5,
        job_info={"result": {"ok": False}},
        runner_state={"runner": "local", "state": {"pid": 123, "start_ticks": 456}},
    )


@pytest.fixture
async def journal(tmp_path: pathlib.Path) -> Journal:
    journal = Journal(tmp_path / "ocps.sqlite3")
    await journal.open()
    yield journal
    await journal.close()


async def test_round_trip_every_field(journal: Journal, tmp_path: pathlib.Path) -> None:
    job = full_job()
    await journal.insert(job)
    assert await journal.get(job.job_id) == job
    await journal.close()
    reopened = Journal(tmp_path / "ocps.sqlite3")
    await reopened.open()
    try:
        assert await reopened.get(job.job_id) == job
    finally:
        await reopened.close()
    await journal.open()


async def test_pragmas_and_schema(journal: Journal) -> None:
    connection = sqlite3.connect(journal.path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = connection.execute("SELECT version FROM schema_version").fetchall()
        assert version == [(SCHEMA_VERSION,)]
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(jobs)")}
        assert {"jobs_by_creation", "jobs_by_phase"} <= indexes
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE phase = 'ERROR' "
            "ORDER BY creation_time DESC LIMIT 10"
        ).fetchall()
        assert "jobs_by_phase" in str(plan)
    finally:
        connection.close()


async def test_newer_schema_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ocps.sqlite3"
    journal = Journal(path)
    await journal.open()
    await journal.close()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    connection.commit()
    connection.close()
    with pytest.raises(OcpsError, match="schema version"):
        await journal.open()
    assert not journal.is_open


async def test_insert_update_delete(journal: Journal) -> None:
    job = make_job(1, ExecutionPhase.QUEUED)
    await journal.insert(job)
    with pytest.raises(JobStateError, match="exists already"):
        await journal.insert(job)
    job.phase = ExecutionPhase.EXECUTING
    await journal.update(job)
    assert (await journal.get(job.job_id)).phase == ExecutionPhase.EXECUTING
    with pytest.raises(JobNotFoundError):
        await journal.update(make_job(2))
    assert await journal.delete(job.job_id)
    assert not await journal.delete(job.job_id)
    with pytest.raises(JobNotFoundError):
        await journal.get(job.job_id)
    assert await journal.count() == 0


async def test_insert_many_is_all_or_nothing(journal: Journal) -> None:
    await journal.insert(make_job(5))
    with pytest.raises(JobStateError):
        await journal.insert_many([make_job(4), make_job(5), make_job(6)])
    assert await journal.count() == 1
    await journal.insert_many([make_job(i) for i in range(6, 10)])
    assert await journal.count() == 5


async def test_list_filters(journal: Journal) -> None:
    phases = [ExecutionPhase.COMPLETED, ExecutionPhase.ERROR, ExecutionPhase.QUEUED]
    await journal.insert_many([make_job(i, phases[i % 3]) for i in range(30)])

    def ids(jobs: list[Job]) -> list[int]:
        return [int(job.job_id[4:]) for job in jobs]

    assert ids(await journal.list_jobs(limit=5)) == [29, 28, 27, 26, 25]
    assert ids(await journal.list_jobs(limit=3, offset=2)) == [27, 26, 25]
    errors = await journal.list_jobs(phases=[ExecutionPhase.ERROR], limit=100)
    assert ids(errors) == list(range(28, 0, -3))
    both = await journal.list_jobs(
        phases=[ExecutionPhase.ERROR, ExecutionPhase.QUEUED], limit=4
    )
    assert ids(both) == [29, 28, 26, 25]
    assert await journal.list_jobs(phases=[]) == []
    after = T0 + datetime.timedelta(seconds=26)
    assert ids(await journal.list_jobs(after=after)) == [29, 28, 27]
    assert ids(await journal.list_jobs(last=4)) == [29, 28, 27, 26]
    assert ids(await journal.list_jobs(last=4, offset=2, limit=10)) == [27, 26]
    assert ids(await journal.list_jobs(last=4, offset=5)) == []
    active = await journal.active_jobs()
    assert ids(active) == list(range(2, 30, 3))


async def test_ids_and_counts_by_phase(journal: Journal) -> None:
    empty = await journal.count_by_phase()
    assert empty == {phase: 0 for phase in ExecutionPhase}
    assert await journal.list_ids() == []

    phases = [ExecutionPhase.COMPLETED, ExecutionPhase.ERROR, ExecutionPhase.QUEUED]
    jobs = [make_job(i, phases[i % 3]) for i in range(30)]
    # Two jobs created at the same time are listed newest inserted first.
    twin = make_job(30, ExecutionPhase.ERROR)
    twin.creation_time = jobs[-1].creation_time
    await journal.insert_many(jobs + [twin])

    every = await journal.list_ids()
    assert every == [job.job_id for job in await journal.list_jobs(limit=1000)]
    assert every[:3] == ["job-000030", "job-000029", "job-000028"]
    errors = await journal.list_ids(phases=[ExecutionPhase.ERROR])
    assert errors == ["job-000030"] + [f"job-{i:06d}" for i in range(28, 0, -3)]
    assert await journal.list_ids(phases=[]) == []
    assert await journal.list_ids(phases=[ExecutionPhase.ABORTED]) == []

    counts = await journal.count_by_phase()
    assert counts == {phase: 0 for phase in ExecutionPhase} | {
        ExecutionPhase.COMPLETED: 10,
        ExecutionPhase.ERROR: 11,
        ExecutionPhase.QUEUED: 10,
    }
    await journal.delete("job-000000")
    assert (await journal.count_by_phase())[ExecutionPhase.COMPLETED] == 9


async def test_destruction_and_reporting(journal: Journal) -> None:
    jobs = [make_job(i) for i in range(3)] + [make_job(3, ExecutionPhase.EXECUTING)]
    for i, job in enumerate(jobs[:3]):
        job.destruction = T0 + datetime.timedelta(hours=i)
    await journal.insert_many(jobs)
    assert await journal.next_destruction() == T0
    now = T0 + datetime.timedelta(minutes=90)
    assert await journal.expired_ids(now) == ["job-000000", "job-000001"]
    unreported = [job.job_id for job in await journal.unreported_jobs()]
    assert unreported == ["job-000000", "job-000001", "job-000002"]
    await journal.mark_reported("job-000001")
    unreported = [job.job_id for job in await journal.unreported_jobs()]
    assert unreported == ["job-000000", "job-000002"]
    with pytest.raises(JobNotFoundError):
        await journal.mark_reported("nope")
    # The flag survives a rewrite of the job.
    await journal.update(jobs[1])
    assert "job-000001" not in [job.job_id for job in await journal.unreported_jobs()]


async def test_closed_journal_refuses(tmp_path: pathlib.Path) -> None:
    journal = Journal(tmp_path / "ocps.sqlite3")
    with pytest.raises(OcpsError, match="not open"):
        await journal.get("x")


async def test_write_survives_kill_9(tmp_path: pathlib.Path) -> None:
    # A process journals a change and is killed at once with SIGKILL.
    path = tmp_path / "ocps.sqlite3"
    code = f"""
import asyncio, os, signal, sys
from lsst.ts.ocps.jobs.journal import Journal
from lsst.ts.ocps.models import ExecutionPhase, Job

async def main():
    journal = Journal({str(path)!r})
    await journal.open()
    job = Job(job_id="doomed", type="t", version="1", parameters={{}})
    await journal.insert(job)
    job.phase = ExecutionPhase.EXECUTING
    await journal.update(job)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await process.wait() == -signal.SIGKILL
    journal = Journal(path)
    await journal.open()
    try:
        assert (await journal.get("doomed")).phase == ExecutionPhase.EXECUTING
    finally:
        await journal.close()
