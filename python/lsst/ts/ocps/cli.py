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

"""The ``ocps`` command: run the job server or talk to one."""

from __future__ import annotations

__all__ = ["DEFAULT_URL", "main", "parse_param"]

import argparse
import asyncio
import json
import logging
import os
import pathlib
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from .exceptions import JobTypeError, OcpsError
from .paths import DEFAULT_JOB_TYPES_DIR
from .rest.client import ClientError, OcpsClient

if TYPE_CHECKING:
    from .runners.registry import RunnerSettings

DEFAULT_URL = "http://127.0.0.1:8080"
"""Server address used when neither ``--url`` nor ``OCPS_URL`` is set."""

_log = logging.getLogger("ocps.cli")


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


def _default_state_dir() -> pathlib.Path:
    env = os.environ.get("OCPS_STATE_DIR")
    if env:
        return pathlib.Path(env)
    return pathlib.Path.home() / ".local" / "state" / "ocps"


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


def _print_json(data: Any, out: TextIO) -> None:
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


async def _run_remote(args: argparse.Namespace, out: TextIO) -> int:
    """Run one client subcommand; return the exit status."""
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
                _print_json(job, out)
            elif args.wait:
                _print_job(job, out)
            else:
                out.write(f"{job['jobId']} {job['type']} {job['phase']}\n")
            return 1 if args.wait and job["phase"] != "COMPLETED" else 0

        if args.command == "status":
            job = await client.get(args.job_id)
            if args.json:
                _print_json(job, out)
            else:
                _print_job(job, out)
            return 0

        if args.command == "list":
            jobs = await client.list(
                phases=args.phase, last=args.last, limit=args.limit
            )
            if args.json:
                _print_json(jobs, out)
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
                _print_json(job, out)
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
            _print_json(types, out)
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


def _validate(args: argparse.Namespace, out: TextIO) -> int:
    from .jobs.job_types import validate_directory

    problems = validate_directory(args.directory)
    if args.json:
        _print_json(
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


def _runner_settings(args: argparse.Namespace) -> RunnerSettings:
    """Read the runner options of ``ocps serve``.

    Raises
    ------
    ValueError
        Raised if a Slurm option is given without ``--slurm``, a value is
        invalid, or the default runner is not enabled.
    """
    # Imported here so that the client commands do not load the runners.
    from .runners.registry import RunnerSettings, SlurmSettings

    slurm_given = [
        flag
        for flag, value in (
            ("--slurm-partition", args.slurm_partition),
            ("--slurm-account", args.slurm_account),
            ("--slurm-option", args.slurm_options),
            ("--slurm-poll-interval", args.slurm_poll_interval),
            ("--slurm-conf", args.slurm_conf),
        )
        if value is not None and value != []
    ]
    slurm = None
    if args.slurm:
        try:
            slurm = SlurmSettings(
                partition=args.slurm_partition,
                account=args.slurm_account,
                sbatch_options=tuple(args.slurm_options),
                poll_interval=(
                    0.5
                    if args.slurm_poll_interval is None
                    else args.slurm_poll_interval
                ),
                slurm_conf=(
                    str(pathlib.Path(args.slurm_conf).absolute())
                    if args.slurm_conf
                    else None
                ),
            )
        except ValueError as e:
            raise ValueError(f"invalid Slurm settings: {e}") from e
    elif slurm_given:
        raise ValueError(f"{', '.join(slurm_given)}: only with --slurm")
    try:
        return RunnerSettings(default_runner=args.default_runner, slurm=slurm)
    except ValueError as e:
        raise ValueError(
            f"--default-runner {args.default_runner}: {e} (--slurm)"
        ) from e


async def _serve(args: argparse.Namespace) -> int:
    """Run the job server until SIGTERM or SIGINT."""
    from .jobs.job_manager import JobManager, ManagerConfig
    from .jobs.job_types import JobTypeRegistry
    from .rest.app import create_app, load_token, start_server
    from .runners.registry import make_runners

    try:
        runner_settings = _runner_settings(args)
    except ValueError as e:
        sys.stderr.write(f"ocps: {e}\n")
        return 2
    try:
        registry = JobTypeRegistry.from_directory(
            args.job_types,
            default_runner=runner_settings.default_runner,
            runners=runner_settings.available,
        )
        token = load_token(args.token_file)
    except JobTypeError as e:
        sys.stderr.write(f"ocps: invalid job types in {args.job_types}:\n")
        for problem in e.problems:
            sys.stderr.write(f"  {problem}\n")
        return 2
    except OcpsError as e:
        sys.stderr.write(f"ocps: {e}\n")
        return 2

    state_dir = args.state_dir or _default_state_dir()
    config = ManagerConfig(
        state_dir=state_dir,
        max_concurrent=args.max_concurrent,
        retention=args.retention,
    )
    manager_log = logging.getLogger("ocps.manager")
    runners = make_runners(
        runner_settings, kill_grace=config.kill_grace, log=manager_log
    )
    manager = JobManager(config, registry, runners=runners, log=manager_log)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    await manager.start()
    try:
        app = create_app(manager, token=token)
        runner, port = await start_server(app, args.host, args.port)
        try:
            _log.info(
                "listening on http://%s:%d with %d job type(s) from %s, state in %s, "
                "runners: %s (default %s)",
                args.host,
                port,
                len(registry),
                args.job_types,
                state_dir,
                ", ".join(sorted(runners)),
                runner_settings.default_runner,
            )
            await stop.wait()
            _log.info("stopping")
        finally:
            await runner.cleanup()
    finally:
        await manager.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    _log.info("stopped")
    return 0


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
        return asyncio.run(_serve(args))
    if args.command == "validate":
        return _validate(args, sys.stdout)
    try:
        return asyncio.run(_run_remote(args, sys.stdout))
    except ClientError as e:
        sys.stderr.write(f"ocps: error: {e.message}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. "| head"); silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
