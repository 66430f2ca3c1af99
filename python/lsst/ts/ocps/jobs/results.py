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

"""The result-file protocol: what a job leaves behind becomes its results.

A job may write a JSON object to the file named by ``OCPS_RESULT_FILE``
(`RESULT_FILE_NAME` in its work dir); when the job ends the object
becomes ``jobInfo["result"]``. Two of its keys mean the same to every
job type:

``results``
    A list of results the job made outside its output globs, e.g.
    Butler datasets. Each entry is an object with a string ``id``, unique
    within the job, and a string ``uri``, and optionally ``size`` (bytes,
    an integer >= 0 or null) and ``mimeType`` (a string or null). Any
    other keys of an entry (the pipetask job writes ``datasetType``,
    ``dataId`` and ``run``) are kept as the result's details and
    published next to the standard keys. Valid entries are moved out of
    ``jobInfo["result"]`` into the job's results, after the files that
    match the job type's ``output_globs``; at most
    `MAX_DECLARED_RESULTS` are taken. An entry that is not valid, whose
    id is taken, or that is beyond that limit is logged as
    ``job_id=... ignored result entry ...`` and left in
    ``jobInfo["result"]["results"]``, so nothing the job wrote is lost.
``error``
    An object with a string ``message`` saying why the job failed. If
    the job's process exits with a non-zero code, the job's
    ``errorSummary.message`` is ``"<message> (exit code N)"`` instead of
    ``"process exited with code N"``. The key stays in
    ``jobInfo["result"]``; messages longer than `MAX_ERROR_MESSAGE`
    characters are cut in the summary.
"""

from __future__ import annotations

__all__ = [
    "MAX_DECLARED_RESULTS",
    "MAX_ERROR_MESSAGE",
    "RESULT_FILE_NAME",
    "collect_outputs",
    "declared_error",
]

import json
import mimetypes
import pathlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..models import JOB_RESULT_KEYS, JobResult
from ..runners.local import PRIVATE_DIR_NAME

RESULT_FILE_NAME = "result.json"
"""File in the work dir whose JSON object becomes ``jobInfo["result"]``."""

MAX_DECLARED_RESULTS = 10_000
"""Most ``results`` entries of a result file that become job results.

The job, its journal row and the CSC's report all carry every result; a
job that lists more should publish an index file as one result instead.
"""

MAX_ERROR_MESSAGE = 4000
"""Most characters of a result file's ``error`` message in a summary."""


def declared_error(job_info: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Find the job's own failure message in its result file.

    Returns
    -------
    message : `str` or `None`
        ``error.message`` of the result JSON, stripped and cut to
        `MAX_ERROR_MESSAGE` characters; None if there is none.
    problem : `str` or `None`
        Why an ``error`` that is there cannot be used; None if it can.
    """
    result = job_info.get("result")
    if not isinstance(result, dict) or "error" not in result:
        return None, None
    error = result["error"]
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message.strip():
        return None, "must be an object with a non-empty string 'message'"
    message = message.strip()
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 3] + "..."
    return message, None


def _json_type(value: Any) -> str:
    """Name the JSON type of a parsed JSON value, with an article."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else "null"


def _declared_result(entry: Any, taken: Collection[str]) -> JobResult | str:
    """Make a job result of a ``results`` entry of the result JSON.

    Parameters
    ----------
    entry : `typing.Any`
        The entry.
    taken : `collections.abc.Collection` [`str`]
        Ids of the job's results so far.

    Returns
    -------
    result : `JobResult` or `str`
        The result, or why the entry is not valid.
    """
    if not isinstance(entry, dict):
        return f"is {_json_type(entry)}, not an object"
    result_id = entry.get("id")
    uri = entry.get("uri")
    size = entry.get("size")
    mime_type = entry.get("mimeType")
    if not isinstance(result_id, str) or not result_id:
        return "needs a non-empty string 'id'"
    if result_id in taken:
        return f"has id {result_id!r}, which another result has"
    if not isinstance(uri, str) or not uri:
        return f"id={result_id!r} needs a non-empty string 'uri'"
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int) or size < 0
    ):
        return f"id={result_id!r}: 'size' must be an integer >= 0 or null"
    if mime_type is not None and not isinstance(mime_type, str):
        return f"id={result_id!r}: 'mimeType' must be a string or null"
    details = {key: value for key, value in entry.items() if key not in JOB_RESULT_KEYS}
    return JobResult(
        id=result_id, uri=uri, size=size, mime_type=mime_type, details=details
    )


def _take_declared_results(
    job_info: dict[str, Any], results: list[JobResult], limit: int
) -> list[str]:
    """Move the valid ``results`` entries of the result JSON to ``results``.

    Entries not taken stay in ``job_info["result"]["results"]``; the key
    is removed if there are none. At most ``limit`` entries are looked
    at.

    Returns
    -------
    ignored : `list` [`str`]
        What was not taken and why, one line each.
    """
    result = job_info.get("result")
    if not isinstance(result, dict) or "results" not in result:
        return []
    entries = result["results"]
    if not isinstance(entries, list):
        kind = _json_type(entries)
        return [f"result entries: 'results' is {kind}, not an array"]

    ignored = []
    left = []
    taken = {item.id for item in results}
    for index, entry in enumerate(entries[:limit]):
        declared = _declared_result(entry, taken)
        if isinstance(declared, str):
            ignored.append(f"result entry {index}: {declared}")
            left.append(entry)
        else:
            results.append(declared)
            taken.add(declared.id)
    if len(entries) > limit:
        ignored.append(
            f"result entries {limit} to {len(entries) - 1}: "
            f"beyond the limit of {limit} entries"
        )
        left += entries[limit:]
    if left:
        result["results"] = left
    else:
        del result["results"]
    return ignored


def collect_outputs(
    work_dir: pathlib.Path,
    globs: Sequence[str],
    limit: int = MAX_DECLARED_RESULTS,
) -> tuple[dict[str, Any], list[JobResult], list[str]]:
    """Read the job's result JSON and find its output files.

    Parameters
    ----------
    work_dir : `pathlib.Path`
        The job's work dir.
    globs : `collections.abc.Sequence` [`str`]
        The job type's output globs, relative to ``work_dir``.
    limit : `int`
        Most entries of the result JSON's ``results`` to take.

    Returns
    -------
    job_info : `dict` [`str`, `typing.Any`]
        ``{"result": {...}}`` if the result file holds a JSON object;
        ``{"result_error": "..."}`` if it exists but does not.
    results : `list` [`JobResult`]
        Regular files matching ``globs`` inside the work dir, sorted, not
        counting OCPS's private directory; then the results the result
        JSON lists (see the module docstring).
    ignored : `list` [`str`]
        Entries of the result JSON's ``results`` not taken, and why.
    """
    job_info: dict[str, Any] = {}
    result_path = work_dir / RESULT_FILE_NAME
    if result_path.is_file():
        try:
            result = json.loads(result_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            job_info["result_error"] = f"{RESULT_FILE_NAME} is not valid JSON: {e}"
        else:
            if isinstance(result, dict):
                job_info["result"] = result
            else:
                job_info["result_error"] = f"{RESULT_FILE_NAME} is not a JSON object"

    root = work_dir.resolve()
    found: set[pathlib.Path] = set()
    for pattern in globs:
        if pathlib.PurePosixPath(pattern).is_absolute():
            continue
        for path in root.glob(pattern):
            # A symlink or ".." could lead outside the work dir; leave
            # such paths out, and OCPS's own files too.
            resolved = path.resolve()
            if not resolved.is_relative_to(root) or not resolved.is_file():
                continue
            relative = resolved.relative_to(root)
            if relative.parts[0] == PRIVATE_DIR_NAME:
                continue
            found.add(resolved)
    results = []
    for path in sorted(found):
        mime_type, _ = mimetypes.guess_type(path.name)
        results.append(
            JobResult(
                id=str(path.relative_to(root)),
                uri=path.as_uri(),
                size=path.stat().st_size,
                mime_type=mime_type,
            )
        )
    ignored = _take_declared_results(job_info, results, limit)
    return job_info, results, ignored
