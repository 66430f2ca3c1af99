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

"""``ocps serve``: run the job manager and the REST job API in one process."""

from __future__ import annotations

__all__ = ["default_state_dir", "read_runner_settings", "serve"]

import argparse
import asyncio
import logging
import os
import pathlib
import signal
import sys
from typing import TYPE_CHECKING

from .exceptions import JobTypeError, OcpsError

if TYPE_CHECKING:
    from .runners.registry import RunnerSettings

_log = logging.getLogger("ocps.cli")


def default_state_dir() -> pathlib.Path:
    """The state directory of ``ocps serve`` without ``--state-dir``.

    Returns
    -------
    state_dir : `pathlib.Path`
        ``$OCPS_STATE_DIR`` if set, else ``~/.local/state/ocps``.
    """
    env = os.environ.get("OCPS_STATE_DIR")
    if env:
        return pathlib.Path(env)
    return pathlib.Path.home() / ".local" / "state" / "ocps"


def read_runner_settings(args: argparse.Namespace) -> RunnerSettings:
    """Read the runner options of ``ocps serve``.

    Parameters
    ----------
    args : `argparse.Namespace`
        The parsed ``ocps serve`` arguments.

    Returns
    -------
    settings : `RunnerSettings`
        The runners to make and the default one.

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


async def serve(args: argparse.Namespace) -> int:
    """Run the job server until SIGTERM or SIGINT.

    Parameters
    ----------
    args : `argparse.Namespace`
        The parsed ``ocps serve`` arguments.

    Returns
    -------
    status : `int`
        0 once stopped by a signal, 2 if the runner options, the job types
        or the token file are invalid.
    """
    from .jobs.job_manager import JobManager, ManagerConfig
    from .jobs.job_types import JobTypeRegistry
    from .rest.app import create_app, load_token, start_server
    from .runners.registry import make_runners

    try:
        runner_settings = read_runner_settings(args)
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

    state_dir = args.state_dir or default_state_dir()
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
