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

"""The ``job_result`` payload the OCPS CSC publishes for a finished job."""

from __future__ import annotations

__all__ = [
    "ABORTED_EXIT_CODE",
    "FAILED_EXIT_CODE",
    "MAX_RESULT_CHARS",
    "JobReport",
    "describe_job",
    "exit_code_for",
    "make_job_report",
]

import dataclasses
import json
import logging
import signal
from collections.abc import Mapping
from typing import Any

from ..models import ExecutionPhase, Job

ABORTED_EXIT_CODE = 255
"""``job_result.exit_code`` of an aborted job (what callers expect)."""

FAILED_EXIT_CODE = 1
"""``job_result.exit_code`` of a failed job with no usable exit code."""

MAX_RESULT_CHARS = 200_000
"""Longest ``job_result.result`` text; longer ones lose results.

A Kafka record is limited to 1 MB by default; the full list of results
of a big job stays available from the REST API.
"""


@dataclasses.dataclass(frozen=True)
class JobReport:
    """The fields of one ``job_result`` event.

    Parameters
    ----------
    job_id : `str`
        The job's id.
    exit_code : `int`
        0 completed, 255 aborted, else the process exit code (or 1).
    result : `dict` [`str`, `typing.Any`]
        The final job as JSON-ready data.
    """

    job_id: str
    exit_code: int
    result: dict[str, Any]

    @property
    def result_text(self) -> str:
        """The ``result`` field: ``result`` as a JSON object string."""
        return json.dumps(self.result)


def exit_code_for(job: Job) -> int:
    """Return the ``job_result.exit_code`` of a terminal job.

    Parameters
    ----------
    job : `Job`
        A job in a terminal phase.

    Returns
    -------
    exit_code : `int`
        0 for COMPLETED, 255 for ABORTED; for ERROR and UNKNOWN the
        process exit code when it is a failure code, 128 + N when the
        process was killed by signal N, else 1.
    """
    if job.phase == ExecutionPhase.COMPLETED:
        return 0
    if job.phase == ExecutionPhase.ABORTED:
        return ABORTED_EXIT_CODE
    code = job.exit_code
    if code is None or code == 0:
        return FAILED_EXIT_CODE
    if code < 0:
        return 128 + min(-code, int(max(signal.Signals)))
    return code


def make_job_report(
    job: Job,
    *,
    command: list[str] | None = None,
    environment: Mapping[str, str] | None = None,
    butler: str | None = None,
    max_chars: int = MAX_RESULT_CHARS,
) -> JobReport:
    """Build the ``job_result`` of a terminal job.

    Parameters
    ----------
    job : `Job`
        The job, in a terminal phase.
    command : `list` [`str`] or `None`
        The job's argv, if known.
    environment : `~collections.abc.Mapping` [`str`, `str`] or `None`
        Environment variables the job type sets, if known.
    butler : `str` or `None`
        Butler repository of the job; added as ``BUTLER_REPO`` unless the
        environment already has it.
    max_chars : `int`
        Longest JSON text of ``result``: beyond it only the first results
        are kept and ``resultsOmitted`` says how many were left out.

    Returns
    -------
    report : `JobReport`
        The event fields.

    Notes
    -----
    ``result`` is the UWS-style job of `Job.to_dict` with what OCPS
    callers read added or adjusted: ``job_id`` (an alias of ``jobId``),
    ``phase`` in lower case, ``errorSummary`` always an object with a
    ``message`` (``""`` if the job did not fail), and ``parameters``
    holding the job parameters plus ``command`` and ``environment`` as a
    list of ``{"name", "value"}``. A parameter that is itself called
    ``command`` or ``environment`` is replaced by these. ``results`` are
    the job's results with their details, e.g. the ``datasetType`` and
    ``dataId`` of the output datasets that the pipetask job lists in its
    result file.
    """
    result = job.to_dict()
    result["job_id"] = job.job_id
    result["phase"] = str(job.phase).lower()
    if job.error_summary is None:
        result["errorSummary"] = {"message": ""}

    env = dict(environment or {})
    if butler and "BUTLER_REPO" not in env:
        env["BUTLER_REPO"] = butler
    parameters = dict(job.parameters)
    parameters["command"] = list(command or [])
    parameters["environment"] = [
        {"name": name, "value": value} for name, value in env.items()
    ]
    result["parameters"] = parameters

    results = result["results"]
    keep = len(results)
    while keep > 0 and len(json.dumps(result)) > max_chars:
        keep //= 2
        result["results"] = results[:keep]
        result["resultsOmitted"] = len(results) - keep
    return JobReport(job_id=job.job_id, exit_code=exit_code_for(job), result=result)


def describe_job(job: Job, job_types: Any, log: logging.Logger) -> JobReport:
    """Build a job's report, rendering its command from its job type.

    Parameters
    ----------
    job : `Job`
        The job, in a terminal phase.
    job_types : `typing.Any`
        A `JobTypeRegistry` (a mapping of name to `JobType`).
    log : `logging.Logger`
        Where to say why the command could not be rendered.

    Returns
    -------
    report : `JobReport`
        The event fields; without ``command`` and type environment if the
        job's type is no longer loaded or cannot render the parameters.
    """
    command: list[str] | None = None
    environment: dict[str, str] | None = None
    job_type = job_types.get(job.type)
    if job_type is not None:
        try:
            command = job_type.render_argv(job.parameters)
            environment = job_type.render_environment(job.parameters)
        except Exception as e:
            log.warning(f"job_id={job.job_id} report without command: {e!r}")
    butler = job.parameters.get("butler")
    return make_job_report(
        job,
        command=command,
        environment=environment,
        butler=butler if isinstance(butler, str) else None,
    )
