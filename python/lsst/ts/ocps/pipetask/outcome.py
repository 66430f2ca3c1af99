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


"""What a finished pipetask run left behind, read back and explained."""

from __future__ import annotations

__all__ = [
    "MAX_FAILURES",
    "MAX_MESSAGE",
    "describe_failure",
    "parse_traceback",
    "read_log_records",
    "summarize",
]

import collections
import json
import logging
import pathlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# Like options, this module never imports the Science Pipelines: it only
# reads the files and text a run wrote.

MAX_MESSAGE = 2000
"""Characters kept of an error message."""

MAX_FAILURES = 100
"""Failed quanta listed in a summary; the CSC's job_result must stay small."""

_EXCEPTION_LINE = re.compile(r"(?P<cls>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?")

_CLICK_HINT = re.compile(r";\s*ERROR logs above.*$")


def read_log_records(path: pathlib.Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a pipetask JSON log file, skipping bad lines.

    Parameters
    ----------
    path : `pathlib.Path`
        A ``--log-file`` ending in ``.json``; may not exist.
    """
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as stream:
        for line in stream:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def parse_traceback(text: str) -> tuple[str, str] | None:
    """Find the final exception class and message in a formatted traceback.

    Parameters
    ----------
    text : `str`
        Traceback text as `traceback.format_exception` writes it.

    Returns
    -------
    exception : `tuple` [`str`, `str`] or `None`
        Dotted class name and message (possibly several lines), or None
        if no exception line was found.
    """
    lines = text.rstrip().splitlines()
    last_frame = max(
        (i for i, line in enumerate(lines) if line.startswith('  File "')),
        default=-1,
    )
    for i in range(last_frame + 1, len(lines)):
        line = lines[i]
        if not line or line[0].isspace():
            continue
        match = _EXCEPTION_LINE.fullmatch(line)
        if match is None:
            continue
        message = "\n".join([match.group("message") or "", *lines[i + 1 :]])
        return match.group("cls"), message.strip()
    return None


def summarize(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Reduce a pipetask ``--summary`` report to what callers need.

    Parameters
    ----------
    summary : `collections.abc.Mapping` [`str`, `typing.Any`]
        The parsed ``summary.json``.

    Returns
    -------
    brief : `dict` [`str`, `typing.Any`]
        ``status``; ``quanta`` with ``total``, ``byStatus`` and ``byTask``
        (counts per status); ``expected`` quanta per task from the graph;
        ``failures`` (task label, data id, exception class and message; at
        most `MAX_FAILURES`, ``failuresOmitted`` counts the rest);
        ``exception`` of the whole run, if any.
    """
    by_status: collections.Counter[str] = collections.Counter()
    by_task: dict[str, collections.Counter[str]] = {}
    failures = []
    for report in summary.get("quantaReports") or []:
        status = str(report.get("status", "unknown"))
        label = str(report.get("taskLabel", "?"))
        by_status[status] += 1
        by_task.setdefault(label, collections.Counter())[status] += 1
        info = report.get("exceptionInfo")
        if status == "failure" or info:
            info = info or {}
            failures.append(
                {
                    "taskLabel": label,
                    "dataId": report.get("dataId") or {},
                    "status": status,
                    "exceptionClass": info.get("className"),
                    "message": info.get("message"),
                }
            )
    task_summaries = (summary.get("qgraphSummary") or {}).get("qgraphTaskSummaries")
    expected = {
        label: task.get("numQuanta") for label, task in (task_summaries or {}).items()
    }
    return {
        "status": summary.get("status"),
        "quanta": {
            "total": sum(by_status.values()),
            "byStatus": dict(by_status),
            "byTask": {label: dict(counts) for label, counts in by_task.items()},
        },
        "expected": expected,
        "failures": failures[:MAX_FAILURES],
        "failuresOmitted": max(0, len(failures) - MAX_FAILURES),
        "exception": summary.get("exceptionInfo"),
    }


def _short_class(name: str | None) -> str:
    """Return an exception class name without its module."""
    return (name or "Exception").rpartition(".")[2]


def _format_data_id(data_id: Mapping[str, Any]) -> str:
    """Write a data id the way a pipetask log line shows it."""
    return "{" + ", ".join(f"{key}: {value!r}" for key, value in data_id.items()) + "}"


def describe_failure(
    exit_code: int,
    brief: Mapping[str, Any] | None,
    log_path: pathlib.Path,
    stderr_tail: Sequence[str],
) -> str:
    """Say in one message why a pipetask run failed.

    Parameters
    ----------
    exit_code : `int`
        pipetask's exit code.
    brief : `collections.abc.Mapping` or `None`
        Output of `summarize`, if pipetask wrote a summary.
    log_path : `pathlib.Path`
        The JSON log file.
    stderr_tail : `collections.abc.Sequence` [`str`]
        Last lines of pipetask's standard error.

    Returns
    -------
    message : `str`
        Starts with ``pipetask failed:`` and names, where known, the
        failing task, its data id and the exception class.
    """
    failures = [] if brief is None else brief["failures"]
    failed = [f for f in failures if f["status"] == "failure"]
    if brief is not None and failed:
        first = failed[0]
        count = brief["quanta"]["byStatus"].get("failure", len(failed))
        total = brief["quanta"]["total"]
        text = (
            f"{count} of {total} quanta failed; first: task "
            f"{first['taskLabel']!r} {_format_data_id(first['dataId'])}: "
            f"{_short_class(first['exceptionClass'])}: {first['message']}"
        )
        return f"pipetask failed: {text}"[:MAX_MESSAGE]

    exception = None
    error_lines = []
    for record in read_log_records(log_path):
        if "exc_info" in record:
            exception = parse_traceback(str(record["exc_info"])) or exception
        elif record.get("levelno", 0) >= logging.ERROR:
            error_lines.append(str(record.get("message", "")).splitlines()[0])
    if exception is None and "Traceback (most recent call last):" in stderr_tail:
        exception = parse_traceback("\n".join(stderr_tail))
    if exception is None and brief is not None and brief.get("exception"):
        info = brief["exception"]
        exception = (info.get("className") or "", info.get("message") or "")
    if exception is not None:
        first_line = (exception[1].splitlines() or [""])[0]
        text = f"{_short_class(exception[0])}: {first_line}"
    else:
        click_errors = [line for line in stderr_tail if line.startswith("Error: ")]
        pieces = [
            _CLICK_HINT.sub("", line.removeprefix("Error: "))
            for line in click_errors[-1:]
        ]
        pieces += error_lines[:2]
        text = "; ".join(pieces) or f"pipetask exited with code {exit_code}"
    return f"pipetask failed: {text}"[:MAX_MESSAGE]
