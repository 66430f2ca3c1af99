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

"""The durable job journal: one SQLite database holding every job."""

from __future__ import annotations

__all__ = ["JOURNAL_FILE_NAME", "SCHEMA_VERSION", "Journal"]

import asyncio
import concurrent.futures
import datetime
import json
import logging
import pathlib
import sqlite3
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

from ..exceptions import JobNotFoundError, JobStateError, OcpsError
from ..models import (
    ACTIVE_PHASES,
    TERMINAL_PHASES,
    ErrorSummary,
    ErrorType,
    ExecutionPhase,
    Job,
    JobResult,
)

JOURNAL_FILE_NAME = "ocps.sqlite3"
"""Name of the journal database file inside the state directory."""

SCHEMA_VERSION = 1
"""Version of the table layout; bumped with a migration when it changes."""

_T = TypeVar("_T")

_COLUMNS = (
    "job_id",
    "type",
    "version",
    "phase",
    "run_id",
    "owner_id",
    "creation_time",
    "start_time",
    "end_time",
    "execution_duration",
    "destruction",
    "exit_code",
    "error_summary",
    "parameters",
    "results",
    "prereq_jobs",
    "prereq_success",
    "wait_for",
    "wait_timeout",
    "job_info",
    "runner_state",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    version TEXT NOT NULL,
    phase TEXT NOT NULL,
    run_id TEXT,
    owner_id TEXT,
    creation_time TEXT NOT NULL,
    start_time TEXT,
    end_time TEXT,
    execution_duration REAL NOT NULL,
    destruction TEXT,
    exit_code INTEGER,
    error_summary TEXT,
    parameters TEXT NOT NULL,
    results TEXT NOT NULL,
    prereq_jobs TEXT NOT NULL,
    prereq_success INTEGER NOT NULL,
    wait_for TEXT NOT NULL,
    wait_timeout REAL NOT NULL,
    job_info TEXT NOT NULL,
    runner_state TEXT NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_creation ON jobs (creation_time);
CREATE INDEX IF NOT EXISTS jobs_by_phase ON jobs (phase, creation_time);
CREATE INDEX IF NOT EXISTS jobs_by_destruction ON jobs (destruction)
    WHERE destruction IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_unreported ON jobs (creation_time)
    WHERE reported = 0;
"""


def _time_to_db(value: datetime.datetime | None) -> str | None:
    """Write a time as fixed-width UTC ISO 8601, so text order is time
    order."""
    if value is None:
        return None
    return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")


def _time_from_db(text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    return datetime.datetime.fromisoformat(text)


def _job_to_row(job: Job) -> tuple[Any, ...]:
    error = job.error_summary
    return (
        job.job_id,
        job.type,
        job.version,
        str(job.phase),
        job.run_id,
        job.owner_id,
        _time_to_db(job.creation_time),
        _time_to_db(job.start_time),
        _time_to_db(job.end_time),
        float(job.execution_duration),
        _time_to_db(job.destruction),
        job.exit_code,
        None if error is None else json.dumps(error.to_dict()),
        json.dumps(job.parameters),
        json.dumps([result.to_dict() for result in job.results]),
        json.dumps(list(job.prereq_jobs)),
        int(job.prereq_success),
        json.dumps(list(job.wait_for)),
        float(job.wait_timeout),
        json.dumps(job.job_info),
        json.dumps(job.runner_state),
    )


def _job_from_row(row: sqlite3.Row) -> Job:
    error_data = row["error_summary"]
    error = None
    if error_data is not None:
        error_dict = json.loads(error_data)
        error = ErrorSummary(
            message=error_dict["message"], type=ErrorType(error_dict["type"])
        )
    creation_time = _time_from_db(row["creation_time"])
    assert creation_time is not None
    return Job(
        job_id=row["job_id"],
        type=row["type"],
        version=row["version"],
        parameters=json.loads(row["parameters"]),
        run_id=row["run_id"],
        owner_id=row["owner_id"],
        phase=ExecutionPhase(row["phase"]),
        creation_time=creation_time,
        start_time=_time_from_db(row["start_time"]),
        end_time=_time_from_db(row["end_time"]),
        execution_duration=row["execution_duration"],
        destruction=_time_from_db(row["destruction"]),
        exit_code=row["exit_code"],
        error_summary=error,
        results=[JobResult.from_dict(item) for item in json.loads(row["results"])],
        prereq_jobs=json.loads(row["prereq_jobs"]),
        prereq_success=bool(row["prereq_success"]),
        wait_for=json.loads(row["wait_for"]),
        wait_timeout=row["wait_timeout"],
        job_info=json.loads(row["job_info"]),
        runner_state=json.loads(row["runner_state"]),
    )


class Journal:
    """Every job, durably, in an SQLite database in WAL mode.

    Parameters
    ----------
    path : `pathlib.Path`
        The database file; created with its tables if missing.
    log : `logging.Logger` or `None`
        Logger; a child ``journal`` of it is used.

    Notes
    -----
    Durability: WAL mode with ``synchronous=NORMAL``. A transaction is in
    the write-ahead log (the operating system's page cache) once its
    commit returns, so it survives a crash or kill -9 of this process;
    only a power loss or kernel crash can lose the last transactions.
    FULL would add an fsync per commit for that case, which a job
    service on one host does not need.

    Threading: every SQLite call runs on one dedicated worker thread that
    owns the connection, so the event loop never waits on the disk (a
    WAL checkpoint can take milliseconds) and calls are serialized. A
    coroutine that is cancelled while its call runs does not undo the
    call: a started write completes.

    Times are stored as fixed-width UTC ISO 8601 text, so indexes order
    them correctly; parameters, results, job info and runner state are
    JSON text.
    """

    def __init__(self, path: pathlib.Path, log: logging.Logger | None = None) -> None:
        self.path = pathlib.Path(path)
        parent_log = log if log is not None else logging.getLogger("ocps")
        self.log = parent_log.getChild("journal")
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        """Is the journal open?"""
        return self._executor is not None

    async def open(self) -> None:
        """Open (or create) the database and check its schema version.

        Raises
        ------
        OcpsError
            Raised if the database was written by a newer schema version.
        """
        if self._executor is not None:
            return
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ocps-journal"
        )
        try:
            await self._call(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    async def close(self) -> None:
        """Close the database; pending calls complete first."""
        if self._executor is None:
            return
        try:
            await self._call(self._close_sync)
        finally:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=True)

    async def insert(self, job: Job) -> None:
        """Add a new job.

        Raises
        ------
        JobStateError
            Raised if a job with the same id exists.
        """
        await self._call(self._insert_sync, [job])

    async def insert_many(self, jobs: Iterable[Job]) -> None:
        """Add many jobs in one transaction (for loading and benchmarks).

        Raises
        ------
        JobStateError
            Raised if any job id exists already; nothing is added then.
        """
        await self._call(self._insert_sync, list(jobs))

    async def update(self, job: Job) -> None:
        """Write every field of an existing job.

        Raises
        ------
        JobNotFoundError
            Raised if the job is not in the journal.
        """
        await self._call(self._update_sync, job)

    async def get(self, job_id: str) -> Job:
        """Read one job.

        Raises
        ------
        JobNotFoundError
            Raised if the job is not in the journal.
        """
        job = await self._call(self._get_sync, job_id)
        if job is None:
            raise JobNotFoundError(f"job_id={job_id!r} not found")
        return job

    async def existing_ids(self, job_ids: Collection[str]) -> set[str]:
        """Return those of ``job_ids`` that are in the journal."""
        return await self._call(self._existing_ids_sync, list(job_ids))

    async def list_jobs(
        self,
        *,
        phases: Collection[ExecutionPhase] | None = None,
        after: datetime.datetime | None = None,
        last: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """List jobs, newest first.

        Parameters
        ----------
        phases : `collections.abc.Collection` [`ExecutionPhase`] or `None`
            Only jobs in one of these phases; None for all.
        after : `datetime.datetime` or `None`
            Only jobs created strictly after this time.
        last : `int` or `None`
            Only the ``last`` most recent of the matching jobs (UWS LAST).
        limit : `int`
            Page size.
        offset : `int`
            Jobs to skip before the page.

        Returns
        -------
        jobs : `list` [`Job`]
            The page of jobs.
        """
        if last is not None:
            limit = min(limit, max(0, last - offset))
        if limit <= 0:
            return []
        return await self._call(
            self._list_sync,
            None if phases is None else sorted(str(phase) for phase in phases),
            _time_to_db(after),
            limit,
            offset,
        )

    async def list_ids(
        self, *, phases: Collection[ExecutionPhase] | None = None
    ) -> list[str]:
        """List the ids of jobs, newest first, without loading the jobs.

        Parameters
        ----------
        phases : `collections.abc.Collection` [`ExecutionPhase`] or `None`
            Only jobs in one of these phases; None for all.

        Returns
        -------
        job_ids : `list` [`str`]
            The ids, in the order of `list_jobs`.
        """
        return await self._call(
            self._list_ids_sync,
            None if phases is None else sorted(str(phase) for phase in phases),
        )

    async def count_by_phase(self) -> dict[ExecutionPhase, int]:
        """Return the number of jobs in each phase, in one query.

        Returns
        -------
        counts : `dict` [`ExecutionPhase`, `int`]
            Every phase, with 0 for phases that no job is in.
        """
        found = await self._call(self._count_by_phase_sync)
        return {phase: found.get(str(phase), 0) for phase in ExecutionPhase}

    async def active_jobs(self) -> list[Job]:
        """Return every job in an active phase, oldest first."""
        return await self._call(self._active_sync)

    async def delete(self, job_id: str) -> bool:
        """Remove a job; return False if it was not there."""
        return await self._call(self._delete_sync, job_id)

    async def expired_ids(self, now: datetime.datetime) -> list[str]:
        """Return the ids of terminal jobs whose destruction time has come."""
        return await self._call(self._expired_sync, _time_to_db(now))

    async def next_destruction(self) -> datetime.datetime | None:
        """Return the earliest destruction time of any job, if any."""
        text = await self._call(self._next_destruction_sync)
        return _time_from_db(text)

    async def mark_reported(self, job_id: str) -> None:
        """Set the job's ``reported`` flag.

        Raises
        ------
        JobNotFoundError
            Raised if the job is not in the journal.
        """
        found = await self._call(self._mark_reported_sync, job_id)
        if not found:
            raise JobNotFoundError(f"job_id={job_id!r} not found")

    async def unreported_jobs(self) -> list[Job]:
        """Return terminal jobs whose ``reported`` flag is not set, oldest
        first."""
        return await self._call(self._unreported_sync)

    async def count(self) -> int:
        """Return the number of jobs."""
        return await self._call(self._count_sync)

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise OcpsError(f"journal {self.path} is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise OcpsError(f"journal {self.path} is not open")
        return self._connection

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False
        )
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=5000")
            connection.executescript(_SCHEMA)
            row = connection.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO schema_version (version) VALUES (?)",
                    (SCHEMA_VERSION,),
                )
            elif row[0] > SCHEMA_VERSION:
                raise OcpsError(
                    f"journal {self.path} has schema version {row[0]}; "
                    f"this ts_ocps knows only up to {SCHEMA_VERSION}"
                )
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _insert_sync(self, jobs: list[Job]) -> None:
        placeholders = ", ".join("?" for _ in _COLUMNS)
        sql = f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
        rows = [_job_to_row(job) for job in jobs]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(sql, rows)
        except sqlite3.IntegrityError as e:
            self._db.execute("ROLLBACK")
            if len(jobs) == 1:
                message = f"job_id={jobs[0].job_id!r} exists already"
            else:
                message = f"one of the {len(jobs)} job ids exists already"
            raise JobStateError(message) from e
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _update_sync(self, job: Job) -> None:
        assignments = ", ".join(f"{name} = ?" for name in _COLUMNS[1:])
        row = _job_to_row(job)
        cursor = self._db.execute(
            f"UPDATE jobs SET {assignments} WHERE job_id = ?", row[1:] + row[:1]
        )
        if cursor.rowcount == 0:
            raise JobNotFoundError(f"job_id={job.job_id!r} not found")

    def _get_sync(self, job_id: str) -> Job | None:
        row = self._db.execute(
            "SELECT * FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
        return None if row is None else _job_from_row(row)

    def _existing_ids_sync(self, job_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for job_id in job_ids:
            row = self._db.execute(
                "SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is not None:
                found.add(job_id)
        return found

    def _list_sync(
        self, phases: list[str] | None, after: str | None, limit: int, offset: int
    ) -> list[Job]:
        conditions: list[str] = []
        args: list[Any] = []
        if phases is not None:
            if not phases:
                return []
            conditions.append(f"phase IN ({', '.join('?' for _ in phases)})")
            args += phases
        if after is not None:
            conditions.append("creation_time > ?")
            args.append(after)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._db.execute(
            f"SELECT * FROM jobs {where} "
            "ORDER BY creation_time DESC, rowid DESC LIMIT ? OFFSET ?",
            args + [limit, offset],
        ).fetchall()
        return [_job_from_row(row) for row in rows]

    def _list_ids_sync(self, phases: list[str] | None) -> list[str]:
        where = ""
        if phases is not None:
            if not phases:
                return []
            where = f"WHERE phase IN ({', '.join('?' for _ in phases)})"
        # Plain tuples: a sqlite3.Row per id would cost more than the query.
        cursor = self._db.cursor()
        cursor.row_factory = None
        cursor.execute(
            f"SELECT job_id FROM jobs {where} "
            "ORDER BY creation_time DESC, rowid DESC",
            phases or [],
        )
        return [row[0] for row in cursor]

    def _count_by_phase_sync(self) -> dict[str, int]:
        rows = self._db.execute("SELECT phase, COUNT(*) FROM jobs GROUP BY phase")
        return {phase: count for phase, count in rows}

    def _active_sync(self) -> list[Job]:
        phases = sorted(str(phase) for phase in ACTIVE_PHASES)
        rows = self._db.execute(
            f"SELECT * FROM jobs WHERE phase IN ({', '.join('?' for _ in phases)}) "
            "ORDER BY creation_time, rowid",
            phases,
        ).fetchall()
        return [_job_from_row(row) for row in rows]

    def _delete_sync(self, job_id: str) -> bool:
        cursor = self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        return cursor.rowcount > 0

    def _expired_sync(self, now: str) -> list[str]:
        phases = sorted(str(phase) for phase in TERMINAL_PHASES)
        rows = self._db.execute(
            "SELECT job_id FROM jobs WHERE destruction IS NOT NULL "
            f"AND destruction <= ? AND phase IN ({', '.join('?' for _ in phases)}) "
            "ORDER BY destruction",
            [now] + phases,
        ).fetchall()
        return [row[0] for row in rows]

    def _next_destruction_sync(self) -> str | None:
        row = self._db.execute(
            "SELECT MIN(destruction) FROM jobs WHERE destruction IS NOT NULL"
        ).fetchone()
        return None if row is None else row[0]

    def _mark_reported_sync(self, job_id: str) -> bool:
        cursor = self._db.execute(
            "UPDATE jobs SET reported = 1 WHERE job_id = ?", (job_id,)
        )
        return cursor.rowcount > 0

    def _unreported_sync(self) -> list[Job]:
        phases = sorted(str(phase) for phase in TERMINAL_PHASES)
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE reported = 0 "
            f"AND phase IN ({', '.join('?' for _ in phases)}) "
            "ORDER BY creation_time, rowid",
            phases,
        ).fetchall()
        return [_job_from_row(row) for row in rows]

    def _count_sync(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
