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

"""The job model: UWS 1.1 phases, error summaries, results and jobs."""

from __future__ import annotations

__all__ = [
    "ACTIVE_PHASES",
    "JOB_RESULT_KEYS",
    "TERMINAL_PHASES",
    "ErrorSummary",
    "ErrorType",
    "ExecutionPhase",
    "Job",
    "JobResult",
    "format_time",
    "parse_time",
]

import dataclasses
import datetime
import enum
from typing import Any


class ExecutionPhase(enum.StrEnum):
    """The phase of a job, as UWS 1.1 names them."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    HELD = "HELD"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"


TERMINAL_PHASES = frozenset(
    {
        ExecutionPhase.COMPLETED,
        ExecutionPhase.ERROR,
        ExecutionPhase.ABORTED,
        ExecutionPhase.UNKNOWN,
    }
)
"""Phases a job never leaves; its ``endTime`` is set on entering one."""

ACTIVE_PHASES = frozenset(
    {
        ExecutionPhase.PENDING,
        ExecutionPhase.QUEUED,
        ExecutionPhase.HELD,
        ExecutionPhase.EXECUTING,
    }
)
"""Phases of a job that may still change; such a job is never purged."""


class ErrorType(enum.StrEnum):
    """Whether retrying the same job could succeed (UWS ``errorSummary``)."""

    FATAL = "fatal"
    TRANSIENT = "transient"


def format_time(value: datetime.datetime | None) -> str | None:
    """Format a UTC time as ISO 8601 with a ``Z`` suffix, or pass None.

    Parameters
    ----------
    value : `datetime.datetime` or `None`
        An aware UTC time.

    Returns
    -------
    text : `str` or `None`
        E.g. ``2026-12-03T17:04:46.123Z``.
    """
    if value is None:
        return None
    text = value.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime.datetime | None:
    """Parse a time written by `format_time` (or any ISO 8601 time).

    Parameters
    ----------
    text : `str` or `None`
        ISO 8601 time; a naive time is taken as UTC.

    Returns
    -------
    value : `datetime.datetime` or `None`
        An aware UTC time.

    Raises
    ------
    ValueError
        Raised if ``text`` is not an ISO 8601 time.
    """
    if text is None:
        return None
    value = datetime.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


@dataclasses.dataclass
class ErrorSummary:
    """Why a job ended in ERROR (UWS ``errorSummary``).

    Parameters
    ----------
    message : `str`
        What went wrong, readable by an operator.
    type : `ErrorType`
        Fatal or transient.
    """

    message: str
    type: ErrorType = ErrorType.FATAL

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "type": str(self.type)}


JOB_RESULT_KEYS = ("id", "uri", "size", "mimeType")
"""The standard keys of a result in JSON; every other key is a detail."""


@dataclasses.dataclass
class JobResult:
    """One result of a job (UWS result reference).

    Parameters
    ----------
    id : `str`
        Identifier, unique within the job.
    uri : `str`
        Where the result is, e.g. ``file:///...`` or a Butler URI.
    size : `int` or `None`
        Size in bytes, if known.
    mime_type : `str` or `None`
        MIME type, if known.
    details : `dict` [`str`, `typing.Any`]
        Further JSON-ready facts about the result, e.g. the
        ``datasetType`` and ``dataId`` of a Butler dataset.
    """

    id: str
    uri: str
    size: int | None = None
    mime_type: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data.

        The four standard keys come first, then the details; a detail
        never replaces a standard key.
        """
        data: dict[str, Any] = {
            "id": self.id,
            "uri": self.uri,
            "size": self.size,
            "mimeType": self.mime_type,
        }
        for key, value in self.details.items():
            data.setdefault(key, value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        """Make a result from what `to_dict` returns.

        Every key other than the four standard ones becomes a detail.
        """
        return cls(
            id=data["id"],
            uri=data["uri"],
            size=data.get("size"),
            mime_type=data.get("mimeType"),
            details={
                key: value for key, value in data.items() if key not in JOB_RESULT_KEYS
            },
        )


@dataclasses.dataclass
class Job:
    """A job and everything known about it.

    Field names are snake_case here; `to_dict` gives the camelCase JSON
    that UWS servers and OCPS clients use.

    Parameters
    ----------
    job_id : `str`
        Unique id; safe as a path component and as a Butler collection
        name part (lower-case hex and dashes).
    type : `str`
        Job type name.
    version : `str`
        Job type version.
    parameters : `dict` [`str`, `typing.Any`]
        Validated parameters with defaults filled.
    run_id : `str` or `None`
        Opaque label chosen by the submitter.
    owner_id : `str` or `None`
        Who submitted the job (e.g. a SAL identity).
    phase : `ExecutionPhase`
        Current phase.
    creation_time : `datetime.datetime`
        When the job was accepted.
    start_time : `datetime.datetime` or `None`
        When the job started executing.
    end_time : `datetime.datetime` or `None`
        When the job reached a terminal phase.
    execution_duration : `float`
        Allowed wall-clock run time in seconds; 0 means unlimited.
    destruction : `datetime.datetime` or `None`
        When the finished job and its files will be purged.
    exit_code : `int` or `None`
        Exit code of the job's process, if it ran and ended.
    error_summary : `ErrorSummary` or `None`
        Why the job ended in ERROR (or ABORTED, with a reason).
    results : `list` [`JobResult`]
        Result references.
    prereq_jobs : `list` [`str`]
        Ids of jobs that must end before this one runs.
    prereq_success : `bool`
        If True the prerequisites must all end COMPLETED, else the job
        ends in ERROR without running.
    wait_for : `list` [`str`]
        Paths or globs that must exist before the job runs.
    wait_timeout : `float`
        Seconds to wait for ``wait_for``; 0 means forever.
    job_info : `dict` [`str`, `typing.Any`]
        Service-specific data, e.g. the job's result JSON file.
    runner_state : `dict` [`str`, `typing.Any`]
        What a runner needs to find the job again after a restart
        (process id and start time, batch job id, ...). Not published.
    """

    job_id: str
    type: str
    version: str
    parameters: dict[str, Any]
    run_id: str | None = None
    owner_id: str | None = None
    phase: ExecutionPhase = ExecutionPhase.PENDING
    creation_time: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    start_time: datetime.datetime | None = None
    end_time: datetime.datetime | None = None
    execution_duration: float = 0.0
    destruction: datetime.datetime | None = None
    exit_code: int | None = None
    error_summary: ErrorSummary | None = None
    results: list[JobResult] = dataclasses.field(default_factory=list)
    prereq_jobs: list[str] = dataclasses.field(default_factory=list)
    prereq_success: bool = False
    wait_for: list[str] = dataclasses.field(default_factory=list)
    wait_timeout: float = 0.0
    job_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    runner_state: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        """Is the job in a phase it never leaves?"""
        return self.phase in TERMINAL_PHASES

    def to_dict(self) -> dict[str, Any]:
        """Return the job as UWS-style camelCase JSON-ready data."""
        return {
            "jobId": self.job_id,
            "runId": self.run_id,
            "ownerId": self.owner_id,
            "type": self.type,
            "version": self.version,
            "phase": str(self.phase),
            "creationTime": format_time(self.creation_time),
            "startTime": format_time(self.start_time),
            "endTime": format_time(self.end_time),
            "executionDuration": self.execution_duration,
            "destruction": format_time(self.destruction),
            "exitCode": self.exit_code,
            "errorSummary": (
                None if self.error_summary is None else self.error_summary.to_dict()
            ),
            "parameters": self.parameters,
            "results": [result.to_dict() for result in self.results],
            "prereqJobs": list(self.prereq_jobs),
            "prereqSuccess": self.prereq_success,
            "waitFor": list(self.wait_for),
            "waitTimeout": self.wait_timeout,
            "jobInfo": self.job_info,
        }
