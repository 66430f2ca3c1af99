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

"""Running a CSC from the command line: argument parsing and ``amain``."""

from __future__ import annotations

__all__ = ["amain", "make_from_cmd_line", "make_parser"]

import argparse
import asyncio
import enum
import logging
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .enums import State

if TYPE_CHECKING:
    from .base_csc import BaseCsc

IndexSpec = int | bool | type[enum.IntEnum] | None
"""How the command line gets the SAL index; see `make_parser`."""

_STATE_NAMES = {
    "offline": State.OFFLINE,
    "standby": State.STANDBY,
    "disabled": State.DISABLED,
    "enabled": State.ENABLED,
}


def _is_configurable(csc_class: type[BaseCsc]) -> bool:
    from .configurable_csc import ConfigurableCsc

    return issubclass(csc_class, ConfigurableCsc)


def make_parser(csc_class: type[BaseCsc], index: IndexSpec) -> argparse.ArgumentParser:
    """Make the argument parser of a CSC class.

    Parameters
    ----------
    csc_class : `type` [`BaseCsc`]
        The CSC class; ``add_arguments(parser)`` is called if it has it.
    index : `int`, `bool`, `enum.IntEnum` subclass or `None`
        `True`: a positional index, any positive int. An `enum.IntEnum`
        class: a positional index among its values. A non-zero `int`: that
        index, no argument. `None`, `False` or 0: no index.

    Returns
    -------
    parser : `argparse.ArgumentParser`
        The parser.
    """
    parser = argparse.ArgumentParser(description=f"Run {csc_class.__name__}")
    if isinstance(index, type) and issubclass(index, enum.IntEnum):
        parser.add_argument(
            "index",
            type=int,
            choices=[int(item) for item in index],
            help="SAL index: " + ", ".join(f"{i.name}={i.value}" for i in index),
        )
    elif index is True:
        parser.add_argument("index", type=int, help="SAL index (a positive int)")
    parser.add_argument("--version", action="version", version=csc_class.version)
    parser.add_argument(
        "--loglevel", type=int, help="Log level: 10 debug, 20 info, 30 warning, ..."
    )
    if csc_class.enable_cmdline_state:
        parser.add_argument(
            "--state",
            choices=list(_STATE_NAMES),
            dest="state",
            help="Initial summary state",
        )
        if _is_configurable(csc_class):
            parser.add_argument(
                "--override",
                default="",
                help="configurationOverride for an initial DISABLED/ENABLED state",
            )
    modes = sorted(csc_class.valid_simulation_modes)
    if len(modes) == 2 and modes[0] == 0:
        parser.add_argument(
            "--simulate",
            action="store_const",
            const=modes[1],
            default=0,
            help=f"Run in simulation mode {modes[1]}",
        )
    elif len(modes) > 1:
        parser.add_argument(
            "--simulate", type=int, choices=modes, default=0, help="Simulation mode"
        )
    if _is_configurable(csc_class):
        parser.add_argument("--configdir", help="Configuration directory")
    add_arguments = getattr(csc_class, "add_arguments", None)
    if add_arguments is not None:
        add_arguments(parser)
    return parser


def make_from_cmd_line(
    csc_class: type[BaseCsc],
    index: IndexSpec,
    argv: Sequence[str] | None = None,
    **kwargs: Any,
) -> BaseCsc:
    """Parse the command line and make the CSC (call from the event loop).

    Parameters
    ----------
    csc_class : `type` [`BaseCsc`]
        The CSC class; ``add_kwargs_from_args(args, kwargs)`` is called if
        it has it.
    index : `int`, `bool`, `enum.IntEnum` subclass or `None`
        See `make_parser`.
    argv : `~collections.abc.Sequence` [`str`] or `None`, optional
        Arguments; `None` means ``sys.argv[1:]``.
    **kwargs : `~typing.Any`
        More constructor arguments.

    Returns
    -------
    csc : `BaseCsc`
        The CSC, starting, with the duplicate-instance check on.
    """
    parser = make_parser(csc_class, index)
    args = parser.parse_args(argv)
    csc_kwargs: dict[str, Any] = dict(kwargs)
    if hasattr(args, "index"):
        if args.index <= 0:
            parser.error(f"index={args.index} must be positive")
        csc_kwargs["index"] = args.index
    elif isinstance(index, int) and not isinstance(index, bool) and index:
        csc_kwargs["index"] = index
    if getattr(args, "state", None):
        csc_kwargs["initial_state"] = _STATE_NAMES[args.state]
    if getattr(args, "override", ""):
        csc_kwargs["override"] = args.override
    if getattr(args, "simulate", 0):
        csc_kwargs["simulation_mode"] = args.simulate
    if getattr(args, "configdir", None):
        csc_kwargs["config_dir"] = args.configdir
    add_kwargs = getattr(csc_class, "add_kwargs_from_args", None)
    if add_kwargs is not None:
        add_kwargs(args, csc_kwargs)
    csc = csc_class(check_if_duplicate=True, **csc_kwargs)
    if args.loglevel is not None:
        csc.log.setLevel(args.loglevel)
    return csc


async def amain(
    csc_class: type[BaseCsc],
    index: IndexSpec,
    argv: Sequence[str] | None = None,
    **kwargs: Any,
) -> None:
    """Run a CSC from the command line until it exits.

    SIGINT and SIGTERM close the CSC (no OFFLINE summaryState is written).

    Parameters
    ----------
    csc_class : `type` [`BaseCsc`]
        The CSC class.
    index : `int`, `bool`, `enum.IntEnum` subclass or `None`
        See `make_parser`.
    argv : `~collections.abc.Sequence` [`str`] or `None`, optional
        Arguments; `None` means ``sys.argv[1:]``.
    **kwargs : `~typing.Any`
        More constructor arguments.

    Raises
    ------
    Exception
        Whatever made start-up fail (e.g. `ExpectedError` for a duplicate
        instance).
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            level=logging.INFO,
        )
    csc = make_from_cmd_line(csc_class, index, argv, **kwargs)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stop_task = asyncio.create_task(stop.wait())
    waiters: list[asyncio.Future[Any]] = [stop_task, csc.done_task]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            csc.log.info("Signal received; closing")
        await csc.close()
        await csc.done_task
    finally:
        stop_task.cancel()
        # The start task fails with the same error as done_task, if any.
        await asyncio.gather(stop_task, csc.start_task, return_exceptions=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
