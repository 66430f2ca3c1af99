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

"""The base CSC: summary states, generic commands, heartbeat, faults."""

from __future__ import annotations

__all__ = ["HOLD_START", "BaseCsc"]

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from . import command_line
from .closing import AsyncClosing
from .command_topics import ControllerCommand
from .domain import Domain
from .enums import State
from .errors import ExpectedError
from .heartbeat import Heartbeat, check_no_duplicate
from .log_handler import SalLogHandler
from .sal_info import SalInfo
from .topics import Sample, WriteTopic

HOLD_START: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "HOLD_START", default=False
)
"""While True, a new CSC waits for `BaseCsc.release_start` before starting.

The test harness sets it so a Remote can be listening before the CSC
writes its first event.
"""

_TRANSITIONS: dict[str, tuple[frozenset[State], State]] = {
    "start": (frozenset({State.STANDBY}), State.DISABLED),
    "enable": (frozenset({State.DISABLED}), State.ENABLED),
    "disable": (frozenset({State.ENABLED}), State.DISABLED),
    "standby": (frozenset({State.DISABLED, State.FAULT}), State.STANDBY),
    "exitControl": (frozenset({State.STANDBY}), State.OFFLINE),
}
"""State-transition command: (states it is allowed in, state it leads to)."""


class BaseCsc(AsyncClosing):
    """A Commandable SAL Component.

    Subclasses provide a ``do_<command>`` coroutine for every command of
    their interface that is not a generic state-transition command, and
    may override the ``begin_<cmd>``/``end_<cmd>`` hooks,
    `handle_summary_state` and `close_tasks`.

    Parameters
    ----------
    name : `str`
        SAL component name.
    index : `int` or `None`, optional
        SAL index; required (non-zero) for an indexed component.
    initial_state : `State` or `None`, optional
        State to reach at start-up; `None` means `default_initial_state`.
    override : `str`, optional
        Configuration override used when ``initial_state`` is DISABLED or
        ENABLED.
    simulation_mode : `int`, optional
        One of `valid_simulation_modes`.
    check_if_duplicate : `bool`, optional
        Refuse to start if another instance with the same index is
        heartbeating (done by the command line).
    allow_missing_callbacks : `bool`, optional
        Allow commands without a ``do_`` method (they then fail).

    Raises
    ------
    ValueError
        If the index, initial state or simulation mode is invalid.
    TypeError
        If a command has no ``do_`` method and that is not allowed.
    """

    valid_simulation_modes: ClassVar[Sequence[int]] = (0,)
    """Simulation modes this CSC supports."""

    version: ClassVar[str] = "?"
    """Written as ``softwareVersions.cscVersion``."""

    enable_cmdline_state: ClassVar[bool] = False
    """Offer ``--state`` (and ``--override``) on the command line."""

    default_initial_state: ClassVar[State] = State.STANDBY

    heartbeat_interval: float = 1.0
    """Seconds between heartbeat events."""

    shutdown_delay: float = 1.0
    """Seconds to wait after exitControl so remotes read the last events."""

    def __init__(
        self,
        name: str,
        index: int | None = None,
        initial_state: State | int | None = None,
        override: str = "",
        simulation_mode: int = 0,
        check_if_duplicate: bool = False,
        allow_missing_callbacks: bool = False,
    ) -> None:
        if initial_state is None:
            initial_state = self.default_initial_state
        initial_state = State(initial_state)
        if initial_state == State.FAULT:
            raise ValueError("initial_state must not be FAULT")
        if simulation_mode not in self.valid_simulation_modes:
            raise ValueError(
                f"simulation_mode={simulation_mode} not in "
                f"valid_simulation_modes={tuple(self.valid_simulation_modes)}"
            )

        self.log = logging.getLogger(name)
        self.domain = Domain()
        self.salinfo = SalInfo(self.domain, name, index or 0, log=self.log)
        if self.salinfo.component.indexed and not self.salinfo.index:
            raise ValueError(f"{name} is indexed: index must be non-zero")
        self.domain.identity = self.salinfo.name_index
        self.initial_state = initial_state
        self.override = override
        self.simulation_mode = simulation_mode
        self.check_if_duplicate = check_if_duplicate

        self._summary_state = State.STANDBY
        self._error_code = 0
        self._error_report = ""
        self._faulting = False
        self._exit_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._start_failed = False
        self._start_gate = asyncio.Event()
        if not HOLD_START.get():
            self._start_gate.set()

        self._make_topics(allow_missing_callbacks)
        self._heartbeat = Heartbeat(self.evt_heartbeat, self.log)
        # Attached now so records logged before start are buffered.
        self._log_handler = SalLogHandler(self.evt_logMessage)
        self.log.addHandler(self._log_handler)
        self.done_task: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )
        self.start_task = asyncio.create_task(self._run_start())

    # Topic attributes are set at run time from the interface; this
    # declaration lets type checkers accept them (lookups still fail).
    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _make_topics(self, allow_missing_callbacks: bool) -> None:
        """Make ``cmd_*`` and ``evt_*`` attributes and bind the handlers."""
        component = self.salinfo.component
        self.salinfo.add_writer(component.ackcmd)
        missing = []
        for sal_name, topic_info in component.commands.items():
            command = ControllerCommand(
                salinfo=self.salinfo,
                topic_info=topic_info,
                ackcmd_info=component.ackcmd,
            )
            setattr(self, topic_info.attr_name, command)
            handler = getattr(self, f"do_{sal_name[len('command_'):]}", None)
            if handler is None:
                missing.append(sal_name)
            else:
                command.callback = handler
        if missing and not allow_missing_callbacks:
            raise TypeError(f"{type(self).__name__} has no do_ method for {missing}")
        for topic_info in list(component.events.values()) + list(
            component.telemetry.values()
        ):
            setattr(
                self,
                topic_info.attr_name,
                WriteTopic(salinfo=self.salinfo, topic_info=topic_info),
            )

    @property
    def summary_state(self) -> State:
        """The current summary state."""
        return self._summary_state

    @property
    def disabled_or_enabled(self) -> bool:
        """Is the state DISABLED or ENABLED?"""
        return self._summary_state in (State.DISABLED, State.ENABLED)

    def release_start(self) -> None:
        """Let a CSC made under `HOLD_START` begin starting."""
        self._start_gate.set()

    async def _run_start(self) -> None:
        await self._start_gate.wait()
        try:
            await self.start()
        except Exception as e:
            self.log.exception("Start-up failed")
            self._start_failed = True
            await self.close(exception=e)
            raise

    async def start(self) -> None:
        """Start the endpoint, write the start-up events, reach the state.

        Subclasses that override it must call ``await super().start()``.
        """
        await self.salinfo.start()
        self._log_handler.start()
        if self.log.getEffectiveLevel() > logging.INFO:
            self.log.setLevel(logging.INFO)
        await self.evt_logLevel.set_write(
            level=self.log.getEffectiveLevel(), subsystem=""
        )
        if self.check_if_duplicate:
            await check_no_duplicate(self.salinfo, 3 * self.heartbeat_interval)
        self._heartbeat.start(self.heartbeat_interval)
        await self.evt_simulationMode.set_write(mode=self.simulation_mode)
        await self.evt_softwareVersions.set_write(
            salVersion="",
            xmlVersion=self.salinfo.component.xml_version,
            cscVersion=self.version,
            subsystemVersions="",
        )
        await self.handle_summary_state()
        await self._report_summary_state()
        await self.handle_startup_reported()
        await self._go_to_initial_state()

    async def _go_to_initial_state(self) -> None:
        """Run the transition handlers that reach ``initial_state``."""
        steps = {
            State.STANDBY: [],
            State.DISABLED: ["start"],
            State.ENABLED: ["start", "enable"],
            State.OFFLINE: ["exitControl"],
        }[self.initial_state]
        data = Sample(**self.cmd_start.topic_info.make_data())
        data.configurationOverride = self.override
        for step in steps:
            self.log.info("Executing %s command during startup", step)
            try:
                await self._change_state(step, data)
            except Exception:
                self.log.exception("%s during startup failed", step)
                return

    async def _report_summary_state(self) -> None:
        """Write summaryState, then errorCode (0) when not in FAULT."""
        await self.evt_summaryState.set_write(
            summaryState=int(self._summary_state), force_output=True
        )
        if self._summary_state != State.FAULT:
            self._error_code = 0
            self._error_report = ""
            await self.evt_errorCode.set_write(
                errorCode=0, errorReport="", traceback=""
            )

    async def handle_summary_state(self) -> None:
        """Called after each change of summary state, before it is reported."""

    async def handle_startup_reported(self) -> None:
        """Called once the initial summaryState and errorCode are written.

        Runs before the CSC goes on to a non-default initial state.
        """

    async def close_tasks(self) -> None:
        """Stop what the subclass runs; called once, early in `close`."""

    async def fault(self, code: int | None, report: str, traceback: str = "") -> None:
        """Go to FAULT, reporting why.

        Parameters
        ----------
        code : `int` or `None`
            Error code; `None` skips the errorCode event.
        report : `str`
            What went wrong.
        traceback : `str`, optional
            Traceback text, if any.
        """
        if self._faulting:
            return
        self._faulting = True
        try:
            self._summary_state = State.FAULT
            if code is not None:
                self._error_code = code
                self._error_report = report
                await self.evt_errorCode.set_write(
                    errorCode=code,
                    errorReport=report,
                    traceback=traceback,
                    force_output=True,
                )
            self.log.critical("Fault! errorCode=%s, errorReport=%r", code, report)
            await self.handle_summary_state()
            await self._report_summary_state()
        finally:
            self._faulting = False

    def assert_enabled(self, action: str = "") -> None:
        """Raise `ExpectedError` unless the state is ENABLED.

        Parameters
        ----------
        action : `str`, optional
            What was attempted, for the message (e.g. a command name).
        """
        state = self._summary_state
        if state == State.ENABLED:
            return
        refusal = f"{action} not allowed" if action else "Not allowed"
        if state == State.FAULT:
            raise ExpectedError(
                f"{refusal} in Fault state: errorCode={self._error_code}, "
                f"errorReport={self._error_report!r}"
            )
        raise ExpectedError(f"{refusal} in state={state!r}")

    async def _change_state(self, cmd: str, data: Sample) -> None:
        """Run one state-transition command.

        A failure in ``begin_<cmd>`` leaves the state alone; a failure in
        ``end_<cmd>`` puts the old state back (salobj keeps the new state
        after an `ExpectedError` there; keeping states consistent with what
        was reported is simpler to reason about).
        """
        allowed, new_state = _TRANSITIONS[cmd]
        old_state = self._summary_state
        if old_state not in allowed:
            raise ExpectedError(f"{cmd} not allowed in state {old_state!r}")
        await getattr(self, f"begin_{cmd}")(data)
        self._summary_state = new_state
        try:
            await getattr(self, f"end_{cmd}")(data)
        except BaseException:
            self._summary_state = old_state
            raise
        await self.handle_summary_state()
        await self._report_summary_state()
        if new_state == State.OFFLINE and self._exit_task is None:
            self._exit_task = asyncio.create_task(self._close_after_exit())

    async def _close_after_exit(self) -> None:
        # Let the final ack go out and remotes read it before closing.
        await asyncio.sleep(self.shutdown_delay)
        await self.close()

    async def do_start(self, data: Sample) -> None:
        """Go from STANDBY to DISABLED."""
        await self._change_state("start", data)

    async def do_enable(self, data: Sample) -> None:
        """Go from DISABLED to ENABLED."""
        await self._change_state("enable", data)

    async def do_disable(self, data: Sample) -> None:
        """Go from ENABLED to DISABLED."""
        await self._change_state("disable", data)

    async def do_standby(self, data: Sample) -> None:
        """Go from DISABLED or FAULT to STANDBY."""
        await self._change_state("standby", data)

    async def do_exitControl(self, data: Sample) -> None:
        """Go from STANDBY to OFFLINE, then shut down."""
        await self._change_state("exitControl", data)

    async def do_setLogLevel(self, data: Sample) -> None:
        """Set the log level of the CSC's logger (``subsystem`` is ignored)."""
        self.log.setLevel(data.level)
        await self.evt_logLevel.set_write(
            level=self.log.getEffectiveLevel(), subsystem=""
        )

    async def begin_start(self, data: Sample) -> None:
        """Called before going to DISABLED by the start command."""

    async def end_start(self, data: Sample) -> None:
        """Called after going to DISABLED by the start command."""

    async def begin_enable(self, data: Sample) -> None:
        """Called before going to ENABLED."""

    async def end_enable(self, data: Sample) -> None:
        """Called after going to ENABLED."""

    async def begin_disable(self, data: Sample) -> None:
        """Called before going to DISABLED by the disable command."""

    async def end_disable(self, data: Sample) -> None:
        """Called after going to DISABLED by the disable command."""

    async def begin_standby(self, data: Sample) -> None:
        """Called before going to STANDBY."""

    async def end_standby(self, data: Sample) -> None:
        """Called after going to STANDBY."""

    async def begin_exitControl(self, data: Sample) -> None:
        """Called before going to OFFLINE."""

    async def end_exitControl(self, data: Sample) -> None:
        """Called after going to OFFLINE."""

    async def close(self, exception: BaseException | None = None) -> None:
        """Shut down: stop tasks, detach logging, close the endpoint.

        Safe to call more than once and from a command handler; every
        call waits for the shutdown to finish.

        Parameters
        ----------
        exception : `BaseException` or `None`, optional
            Why it closed; `done_task` then ends with it.
        """
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._close(exception))
        await asyncio.shield(self._close_task)

    async def _close(self, exception: BaseException | None) -> None:
        try:
            await self.close_tasks()
        except Exception:
            self.log.exception("close_tasks failed")
        await self._heartbeat.close()
        current = asyncio.current_task()
        tasks = [self._exit_task]
        if not self._start_failed:
            tasks.append(self.start_task)
        for task in tasks:
            if task is not None and task is not current and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.log.removeHandler(self._log_handler)
        await self._log_handler.close_async()
        await self.domain.close()
        if not self.done_task.done():
            if exception is None:
                self.done_task.set_result(None)
            else:
                self.done_task.set_exception(exception)

    async def __aenter__(self) -> BaseCsc:
        await self.start_task
        return self

    @classmethod
    async def amain(cls, index: int | bool | None, **kwargs: Any) -> None:
        """Make a CSC from the command line and run it until it exits.

        See `command_line.amain`.
        """
        await command_line.amain(cls, index=index, **kwargs)

    @classmethod
    def make_from_cmd_line(cls, index: int | bool | None, **kwargs: Any) -> BaseCsc:
        """Make a CSC from command-line arguments.

        See `command_line.make_from_cmd_line`.
        """
        return command_line.make_from_cmd_line(cls, index=index, **kwargs)
