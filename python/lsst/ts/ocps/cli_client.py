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

"""The ``ocps`` client commands: talk to a job server and print its answers."""

from __future__ import annotations

__all__ = ["print_json", "run_client_command"]

import argparse
import json
from typing import Any, TextIO

from .rest.client import OcpsClient


def print_json(data: Any, out: TextIO) -> None:
    """Write ``data`` as indented JSON and a newline.

    Parameters
    ----------
    data : `typing.Any`
        JSON-serialisable data.
    out : `typing.TextIO`
        Where to write.
    """
    json.dump(data, out, indent=2)
    out.write("\n")


def _print_table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        out.write("  ".join(cells).rstrip() + "\n")


def _write_bytes(data: bytes, out: TextIO) -> None:
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(data.decode(errors="replace"))
    else:
        out.flush()
        buffer.write(data)
        buffer.flush()


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _print_job(job: dict[str, Any], out: TextIO) -> None:
    lines = [
        ("job id", job["jobId"]),
        ("type", f"{job['type']} {job['version']}"),
        ("phase", job["phase"]),
        ("run id", job.get("runId")),
        ("created", job.get("creationTime")),
        ("started", job.get("startTime")),
        ("ended", job.get("endTime")),
        ("exit code", job.get("exitCode")),
        ("error", (job.get("errorSummary") or {}).get("message")),
        ("parameters", json.dumps(job.get("parameters", {}))),
    ]
    if job.get("prereqJobs"):
        lines.append(("prerequisites", ", ".join(job["prereqJobs"])))
    if job.get("jobInfo", {}).get("result") is not None:
        lines.append(("result", json.dumps(job["jobInfo"]["result"])))
    for result in job.get("results", []):
        lines.append(("output", result["uri"]))
    for name, value in lines:
        out.write(f"{name + ':':<15}{_text(value)}\n")


async def run_client_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run one client subcommand against the server at ``args.url``.

    Parameters
    ----------
    args : `argparse.Namespace`
        The parsed arguments of ``submit``, ``status``, ``list``,
        ``abort``, ``logs`` or ``types``.
    out : `typing.TextIO`
        Where the answer is printed.

    Returns
    -------
    status : `int`
        0, or 1 if ``submit --wait`` saw the job end other than COMPLETED.

    Raises
    ------
    ClientError
        Raised if the server refused the request or could not be reached.
    """
    async with OcpsClient(args.url, token=args.token) as client:
        if args.command == "submit":
            parameters = dict(args.json_params or {})
            parameters.update(dict(args.params))
            job = await client.submit(
                args.type,
                parameters,
                run_id=args.run_id,
                prereq_jobs=args.prereq,
                prereq_success=args.prereq_success,
                execution_duration=args.execution_duration,
            )
            if args.wait:
                job = await client.wait(job["jobId"])
            if args.json:
                print_json(job, out)
            elif args.wait:
                _print_job(job, out)
            else:
                out.write(f"{job['jobId']} {job['type']} {job['phase']}\n")
            return 1 if args.wait and job["phase"] != "COMPLETED" else 0

        if args.command == "status":
            job = await client.get(args.job_id)
            if args.json:
                print_json(job, out)
            else:
                _print_job(job, out)
            return 0

        if args.command == "list":
            jobs = await client.list(
                phases=args.phase, last=args.last, limit=args.limit
            )
            if args.json:
                print_json(jobs, out)
                return 0
            rows = [["JOB ID", "TYPE", "PHASE", "CREATED", "EXIT"]]
            for job in jobs:
                rows.append(
                    [
                        job["jobId"],
                        job["type"],
                        job["phase"],
                        _text(job.get("creationTime")),
                        _text(job.get("exitCode")),
                    ]
                )
            _print_table(rows, out)
            return 0

        if args.command == "abort":
            job = await client.abort(args.job_id)
            if args.json:
                print_json(job, out)
            else:
                out.write(f"{job['jobId']} {job['phase']}\n")
            return 0

        if args.command == "logs":
            async for chunk in client.logs(
                args.job_id, stream=args.stream, tail=args.tail, follow=args.follow
            ):
                _write_bytes(chunk, out)
            return 0

        types = await client.types()
        if args.json:
            print_json(types, out)
            return 0
        for job_type in types:
            out.write(
                f"{job_type['name']} {job_type['version']}: "
                f"{job_type['description']}\n"
            )
            for item in job_type.get("env", []):
                extras = [f"units {item['units']}"] if item.get("units") else []
                extras += [
                    f"{key} {json.dumps(item[key])}"
                    for key in ("default", "min", "max")
                    if item.get(key) is not None
                ]
                detail = f" ({', '.join(extras)})" if extras else ""
                description = item.get("description") or ""
                out.write(f"    {item['name']}{detail} {description}".rstrip() + "\n")
        return 0
