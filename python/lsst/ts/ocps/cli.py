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

"""The ``ocps`` command: parse the arguments and run the subcommand."""

from __future__ import annotations

__all__ = ["DEFAULT_URL", "main", "parse_param"]

import argparse
import asyncio
import json
import logging
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from .cli_client import print_json, run_client_command
from .cli_serve import serve
from .paths import DEFAULT_JOB_TYPES_DIR
from .rest.client import ClientError

DEFAULT_URL = "http://127.0.0.1:8080"
"""Server address used when neither ``--url`` nor ``OCPS_URL`` is set."""


def parse_param(text: str) -> tuple[str, Any]:
    """Parse a ``-p name=value`` option.

    The value is parsed as JSON when it parses (``5`` is a number,
    ``true`` a boolean, ``[1,2]`` a list, ``"5"`` a string), otherwise it
    is taken as a plain string.

    Parameters
    ----------
    text : `str`
        ``name=value``.

    Returns
    -------
    name : `str`
        The parameter name.
    value : `typing.Any`
        The parameter value.

    Raises
    ------
    argparse.ArgumentTypeError
        Raised if there is no ``=`` or the name is empty.
    """
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, not {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocps",
        description="OCS-Controlled Pipeline System job server and client.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the job server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument(
        "--port", type=int, default=8080, help="port to bind; 0 = any free port"
    )
    serve.add_argument(
        "--job-types",
        type=pathlib.Path,
        default=DEFAULT_JOB_TYPES_DIR,
        help="directory of job-type YAML files (default: %(default)s)",
    )
    serve.add_argument(
        "--state-dir",
        type=pathlib.Path,
        default=None,
        help="journal and job directories "
        "(default: $OCPS_STATE_DIR or ~/.local/state/ocps)",
    )
    serve.add_argument(
        "--max-concurrent",
        type=int,
        default=4,
        help="jobs executing at once; 0 = unlimited",
    )
    serve.add_argument(
        "--retention",
        type=float,
        default=7 * 86400,
        help="seconds a finished job is kept",
    )
    serve.add_argument(
        "--token-file",
        type=pathlib.Path,
        default=None,
        help="file holding the bearer token of PUT/POST/DELETE "
        "(default: $OCPS_API_TOKEN; none = no authentication)",
    )
    serve.add_argument(
        "--default-runner",
        choices=["local", "slurm"],
        default="local",
        help="runner of the job types that name none (default: %(default)s); "
        "slurm needs --slurm",
    )
    slurm = serve.add_argument_group(
        "Slurm runner", "run job types with 'runner: slurm' as Slurm batch jobs"
    )
    slurm.add_argument("--slurm", action="store_true", help="enable the Slurm runner")
    slurm.add_argument(
        "--slurm-partition",
        default=None,
        metavar="PARTITION",
        help="default partition of the jobs",
    )
    slurm.add_argument(
        "--slurm-account",
        default=None,
        metavar="ACCOUNT",
        help="default account of the jobs",
    )
    slurm.add_argument(
        "--slurm-option",
        dest="slurm_options",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra sbatch option for every job, e.g. --slurm-option=--qos=normal "
        "(repeatable)",
    )
    slurm.add_argument(
        "--slurm-poll-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between two squeue calls (default: 0.5)",
    )
    slurm.add_argument(
        "--slurm-conf",
        default=None,
        metavar="PATH",
        help="SLURM_CONF of the Slurm commands (default: inherited)",
    )
    serve.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level",
    )

    validate = commands.add_parser(
        "validate", help="check a directory of job types (no server needed)"
    )
    validate.add_argument("directory", type=pathlib.Path)
    validate.add_argument("--json", action="store_true", help="print JSON")

    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--url",
        default=os.environ.get("OCPS_URL", DEFAULT_URL),
        help="server address (default: $OCPS_URL or %s)" % DEFAULT_URL,
    )
    remote.add_argument(
        "--token",
        default=os.environ.get("OCPS_API_TOKEN"),
        help="bearer token (default: $OCPS_API_TOKEN)",
    )
    remote.add_argument("--json", action="store_true", help="print JSON")

    submit = commands.add_parser("submit", parents=[remote], help="submit a job")
    submit.add_argument("type", help="job type name")
    submit.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        type=parse_param,
        default=[],
        metavar="NAME=VALUE",
        help="a parameter; the value is JSON if it parses, else a string",
    )
    submit.add_argument(
        "--json-params",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="parameters as a JSON object (-p values override)",
    )
    submit.add_argument(
        "--prereq", action="append", default=[], metavar="ID", help="prerequisite job"
    )
    submit.add_argument(
        "--prereq-success",
        action="store_true",
        help="fail the job if a prerequisite does not complete",
    )
    submit.add_argument("--run-id", default=None, help="opaque label")
    submit.add_argument(
        "--execution-duration",
        type=float,
        default=None,
        help="allowed run time in seconds",
    )
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait until the job is finished; exit 0 only if it COMPLETED",
    )

    status = commands.add_parser("status", parents=[remote], help="show a job")
    status.add_argument("job_id", metavar="ID")

    list_ = commands.add_parser("list", parents=[remote], help="list jobs")
    list_.add_argument(
        "--phase", action="append", default=[], help="only this phase (repeatable)"
    )
    list_.add_argument("--last", type=int, default=None, help="only the N newest")
    list_.add_argument("--limit", type=int, default=100, help="page size")

    abort = commands.add_parser("abort", parents=[remote], help="abort a job")
    abort.add_argument("job_id", metavar="ID")

    logs = commands.add_parser("logs", parents=[remote], help="print a job's log")
    logs.add_argument("job_id", metavar="ID")
    logs.add_argument("--stream", choices=["stdout", "stderr"], default="stdout")
    logs.add_argument("--tail", type=int, default=None, metavar="N")
    logs.add_argument(
        "--follow", action="store_true", help="stream until the job is finished"
    )

    commands.add_parser("types", parents=[remote], help="list the job types")
    return parser


def _validate(args: argparse.Namespace, out: TextIO) -> int:
    from .jobs.job_types import validate_directory

    problems = validate_directory(args.directory)
    if args.json:
        print_json(
            {
                "valid": not problems,
                "problems": [
                    {"path": p.path, "field": p.field, "reason": p.reason}
                    for p in problems
                ],
            },
            out,
        )
    elif problems:
        for problem in problems:
            out.write(f"{problem}\n")
        out.write(f"{len(problems)} problem(s) in {args.directory}\n")
    else:
        out.write(f"{args.directory}: all job types are valid\n")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ocps`` command.

    Parameters
    ----------
    argv : `list` [`str`] or `None`, optional
        Arguments without the program name; None for ``sys.argv[1:]``.

    Returns
    -------
    status : `int`
        0 on success, 1 if the server refused or could not be reached (or
        a waited-for job did not complete, or validation found problems),
        2 for usage errors or a server that cannot start.
    """
    args = _make_parser().parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(
            level=args.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return asyncio.run(serve(args))
    if args.command == "validate":
        return _validate(args, sys.stdout)
    try:
        return asyncio.run(run_client_command(args, sys.stdout))
    except ClientError as e:
        sys.stderr.write(f"ocps: error: {e.message}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. "| head"); silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
