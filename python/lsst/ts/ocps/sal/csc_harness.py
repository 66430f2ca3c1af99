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

"""A pytest-friendly CSC harness: a CSC, a Remote and assertions."""

from __future__ import annotations

__all__ = [
    "STD_TIMEOUT",
    "CscHarness",
    "check_bin_script",
    "get_expected_summary_states",
    "make_csc",
    "make_test_subname",
    "set_summary_state",
    "set_test_environment",
]

import asyncio
import base64
import contextlib
import enum
import os
import pathlib
import secrets
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from .base_csc import HOLD_START, BaseCsc
from .enums import SalRetCode, State
from .errors import AckError
from .remote import Remote
from .tai import current_tai
from .topics import ReadTopic, Sample

STD_TIMEOUT = 30.0
"""Seconds a harness waits for an expected event or ack."""

_ORDER = [State.OFFLINE, State.STANDBY, State.DISABLED, State.ENABLED]


def make_test_subname(randomize: bool = True) -> str:
    """Return a topic subname no other test uses.

    Parameters
    ----------
    randomize : `bool`, optional
        Use random bytes (default) rather than the process id.

    Returns
    -------
    subname : `str`
        ``test_`` and a suffix of letters, digits and ``_``.
    """
    raw = secrets.token_bytes(9) if randomize else os.getpid().to_bytes(4, "big")
    suffix = base64.urlsafe_b64encode(raw).decode().replace("=", "").replace("-", "")
    return f"test_{suffix}"


def set_test_environment(randomize: bool = True) -> str:
    """Set ``LSST_TOPIC_SUBNAME`` to a fresh test name and ``LSST_SITE``.

    Returns the subname set; ``randomize`` is as for `make_test_subname`.
    """
    subname = make_test_subname(randomize)
    os.environ["LSST_TOPIC_SUBNAME"] = subname
    os.environ["LSST_SITE"] = "test"
    return subname


def get_expected_summary_states(initial: State, final: State) -> list[State]:
    """States passed through (after ``initial``) going to ``final``.

    Parameters
    ----------
    initial : `State`
        The state to start from: OFFLINE, STANDBY, DISABLED or ENABLED.
    final : `State`
        The state to reach, one of the same four.

    Returns
    -------
    states : `list` [`State`]
        Every state on the way, ``final`` last; empty if the two are equal.

    Raises
    ------
    ValueError
        If either state is FAULT.
    """
    if State.FAULT in (initial, final):
        raise ValueError("FAULT is not a target of ordinary transitions")
    i, j = _ORDER.index(initial), _ORDER.index(final)
    step = 1 if j > i else -1
    return [_ORDER[k] for k in range(i + step, j + step, step)] if i != j else []


def _startup_states(default: State, initial: State | None) -> list[State]:
    """Every summaryState a new CSC reports on its way to ``initial``."""
    final = default if initial is None else initial
    return [default] + get_expected_summary_states(default, final)


async def set_summary_state(
    remote: Remote, state: State, override: str = "", timeout: float = STD_TIMEOUT
) -> list[State]:
    """Command a CSC into a state, one transition at a time.

    A CSC in FAULT is first sent to STANDBY.

    Parameters
    ----------
    remote : `Remote`
        A Remote of the CSC, reading ``summaryState``.
    state : `State`
        The state to reach (not FAULT).
    override : `str`, optional
        ``configurationOverride`` of the start command, if one is sent.
    timeout : `float`, optional
        Seconds to wait for the current state and for each command.

    Returns
    -------
    states : `list` [`State`]
        The states passed through, ``state`` last.

    Raises
    ------
    AckError
        If a command fails.
    """
    current = State((await remote.evt_summaryState.aget(timeout=timeout)).summaryState)
    visited = []
    if current == State.FAULT:
        await remote.cmd_standby.set_start(timeout=timeout)
        current = State.STANDBY
        visited.append(current)
    commands = {
        (State.STANDBY, State.DISABLED): "start",
        (State.DISABLED, State.ENABLED): "enable",
        (State.ENABLED, State.DISABLED): "disable",
        (State.DISABLED, State.STANDBY): "standby",
        (State.STANDBY, State.OFFLINE): "exitControl",
    }
    for next_state in get_expected_summary_states(current, state):
        name = commands[(current, next_state)]
        fields = {"configurationOverride": override} if name == "start" else {}
        await getattr(remote, f"cmd_{name}").set_start(timeout=timeout, **fields)
        current = next_state
        visited.append(current)
    return visited


class CscHarness:
    """A CSC, a Remote on its domain, and assertions over both.

    Make it with `make_csc`.

    Attributes
    ----------
    csc : `BaseCsc`
        The CSC.
    remote : `Remote`
        A Remote sharing the CSC's domain (identity and origin).
    start_tai : `float`
        TAI when the CSC was made; older samples are stale.
    """

    def __init__(self, csc: BaseCsc, remote: Remote, start_tai: float) -> None:
        self.csc = csc
        self.remote = remote
        self.start_tai = start_tai

    async def assert_next_sample(
        self,
        topic: ReadTopic,
        flush: bool = False,
        timeout: float = STD_TIMEOUT,
        **expected: Any,
    ) -> Sample:
        """Read the next fresh sample and check field values.

        Samples written before the CSC was made are skipped.

        Parameters
        ----------
        topic : `ReadTopic`
            The topic to read.
        flush : `bool`, optional
            Drop queued samples first.
        timeout : `float`, optional
            Seconds to wait for a fresh sample.
        **expected : `~typing.Any`
            Expected field values; an `enum.IntEnum` value is compared
            as that enum.

        Returns
        -------
        data : `Sample`
            The sample read.

        Raises
        ------
        AssertionError
            If a field differs from its expected value.
        TimeoutError
            If no fresh sample arrives in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await topic.next(flush=flush, timeout=deadline - loop.time())
            flush = False
            if data.private_sndStamp > self.start_tai:
                break
        for name, value in expected.items():
            actual = getattr(data, name)
            if isinstance(value, enum.IntEnum):
                actual = type(value)(actual)
            assert actual == value, f"{topic.name}.{name}={actual!r} != {value!r}"
        return data

    async def assert_next_summary_state(
        self,
        state: State,
        flush: bool = False,
        timeout: float = STD_TIMEOUT,
        remote: Remote | None = None,
    ) -> None:
        """Check the next summaryState event.

        Parameters
        ----------
        state : `State`
            The expected state.
        flush : `bool`, optional
            Drop queued samples first.
        timeout : `float`, optional
            Seconds to wait.
        remote : `Remote` or `None`, optional
            The Remote to read; `None` means the harness's.
        """
        remote = self.remote if remote is None else remote
        await self.assert_next_sample(
            remote.evt_summaryState, flush=flush, timeout=timeout, summaryState=state
        )

    async def check_bad_commands(
        self, bad_commands: Iterable[str], timeout: float = STD_TIMEOUT
    ) -> None:
        """Send each command and require ``CMD_FAILED``.

        Parameters
        ----------
        bad_commands : `~collections.abc.Iterable` [`str`]
            Command names without ``cmd_``, sent with default fields.
        timeout : `float`, optional
            Seconds to wait for each ack.
        """
        for name in bad_commands:
            command = getattr(self.remote, f"cmd_{name}")
            try:
                ack = await command.start(timeout=timeout)
            except AckError as e:
                assert e.ackcmd.ack == SalRetCode.CMD_FAILED, f"{name}: {e}"
            else:
                raise AssertionError(
                    f"{name} succeeded in {self.csc.summary_state!r}: {ack}"
                )

    async def check_standard_state_transitions(
        self,
        enabled_commands: Sequence[str],
        skip_commands: Sequence[str] | None = None,
        override: str = "",
        timeout: float = STD_TIMEOUT,
    ) -> None:
        """Check refused commands in every state, then every transition.

        The CSC must be in STANDBY. In STANDBY, DISABLED and ENABLED every
        command not valid there is sent (with default fields) and must
        fail; then start, enable, disable, standby and exitControl must
        each reach their state and report it.

        Parameters
        ----------
        enabled_commands : `~collections.abc.Sequence` [`str`]
            Commands, besides the generic ones, valid in ENABLED.
        skip_commands : `~collections.abc.Sequence` [`str`] or `None`
            Commands never to send.
        override : `str`, optional
            ``configurationOverride`` of the start command.
        timeout : `float`, optional
            Seconds to wait for each ack and event.
        """
        assert self.csc.summary_state == State.STANDBY, self.csc.summary_state
        skip = set(skip_commands or ())
        names = [
            sal_name[len("command_") :]
            for sal_name in self.csc.salinfo.component.commands
        ]
        valid = {
            State.STANDBY: {"start", "exitControl", "setLogLevel"},
            State.DISABLED: {"enable", "standby", "setLogLevel"},
            State.ENABLED: {"disable", "setLogLevel"} | set(enabled_commands),
        }

        async def check_state(state: State) -> None:
            bad = [n for n in names if n not in valid[state] and n not in skip]
            await self.check_bad_commands(bad, timeout=timeout)
            assert self.csc.summary_state == state

        steps = [
            ("start", State.DISABLED),
            ("enable", State.ENABLED),
            ("disable", State.DISABLED),
            ("standby", State.STANDBY),
            ("exitControl", State.OFFLINE),
        ]
        await check_state(State.STANDBY)
        for name, state in steps:
            fields = {"configurationOverride": override} if name == "start" else {}
            await getattr(self.remote, f"cmd_{name}").set_start(
                timeout=timeout, **fields
            )
            assert self.csc.summary_state == state
            await self.assert_next_summary_state(state, timeout=timeout)
            if state in valid and name != "standby":
                await check_state(state)


@contextlib.asynccontextmanager
async def make_csc(
    factory: Callable[..., BaseCsc],
    initial_state: State | None = None,
    config_dir: str | pathlib.Path | None = None,
    simulation_mode: int = 0,
    log_level: int | None = None,
    timeout: float = STD_TIMEOUT,
    **kwargs: Any,
) -> AsyncIterator[CscHarness]:
    """Make a CSC and a Remote for it; close both on exit.

    The CSC is held until the Remote is reading, so the Remote sees every
    start-up event. When ``initial_state`` is not the default, the
    summaryState events on the way are checked and consumed (the last one
    stays queued).

    Parameters
    ----------
    factory : `~collections.abc.Callable`
        Called as ``factory(initial_state=..., config_dir=...,
        simulation_mode=..., **kwargs)`` to make the CSC (omitting
        ``config_dir`` when it is `None`).
    initial_state : `State` or `None`, optional
        For the factory; `None` means the CSC's default.
    config_dir : `str`, `pathlib.Path` or `None`, optional
        For the factory.
    simulation_mode : `int`, optional
        For the factory.
    log_level : `int` or `None`, optional
        Level to set on the CSC's logger.
    timeout : `float`, optional
        Seconds to wait for start-up.
    **kwargs : `~typing.Any`
        For the factory.

    Yields
    ------
    harness : `CscHarness`
        The CSC and Remote.
    """
    if config_dir is not None:
        kwargs["config_dir"] = config_dir
    start_tai = current_tai()
    token = HOLD_START.set(True)
    try:
        csc = factory(
            initial_state=initial_state, simulation_mode=simulation_mode, **kwargs
        )
    finally:
        HOLD_START.reset(token)
    # The CSC's logger is process-wide: restore its level on exit so that
    # one test's setLogLevel does not leak into the next.
    saved_level = csc.log.level
    if log_level is not None:
        csc.log.setLevel(log_level)
    remote = Remote(csc.domain, csc.salinfo.name, csc.salinfo.index)
    try:
        await asyncio.wait_for(remote.start_task, timeout)
        csc.release_start()
        await asyncio.wait_for(csc.start_task, timeout)
        harness = CscHarness(csc, remote, start_tai)
        states = _startup_states(csc.default_initial_state, initial_state)
        for state in states[:-1]:
            await harness.assert_next_summary_state(state, timeout=timeout)
        yield harness
    finally:
        await remote.close()
        await csc.close()
        csc.log.setLevel(saved_level)


async def check_bin_script(
    name: str,
    index: int,
    exe_name: str | Sequence[str],
    default_initial_state: State = State.STANDBY,
    initial_state: State | None = None,
    override: str | None = None,
    cmdline_args: Sequence[str] = (),
    timeout: float = STD_TIMEOUT,
) -> None:
    """Run a CSC's command-line entry and check it starts and exits.

    The process is started with ``index``, ``--state``/``--override`` when
    given, and ``cmdline_args``; it must report the expected summary
    states (and, with ``override``, a configurationApplied naming it),
    then exit with status 0 on exitControl. It only works with a transport
    that crosses processes (Kafka).

    Parameters
    ----------
    name : `str`
        SAL component name.
    index : `int`
        SAL index.
    exe_name : `str` or `~collections.abc.Sequence` [`str`]
        An executable on ``PATH``, or the argv prefix to run.
    default_initial_state : `State`, optional
        The state the CSC reports first.
    initial_state : `State` or `None`, optional
        Passed as ``--state``; `None` passes nothing.
    override : `str` or `None`, optional
        Passed as ``--override``; `None` passes nothing.
    cmdline_args : `~collections.abc.Sequence` [`str`], optional
        More arguments, appended.
    timeout : `float`, optional
        Seconds to wait for each event and for the exit.

    Raises
    ------
    AssertionError
        If the process does not behave.
    """
    if isinstance(exe_name, str):
        exe_path = shutil.which(exe_name)
        assert exe_path is not None, f"{exe_name!r} is not on PATH"
        argv = [exe_path]
    else:
        argv = list(exe_name)
    argv.append(str(index))
    if initial_state is not None:
        argv += ["--state", initial_state.name.lower()]
    if override is not None:
        argv += ["--override", override]
    argv += list(cmdline_args)

    async with Remote(None, name, index) as remote:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, env=dict(os.environ)
        )
        try:
            for state in _startup_states(default_initial_state, initial_state):
                data = await remote.evt_summaryState.next(flush=False, timeout=timeout)
                assert data.summaryState == state, f"{data.summaryState} != {state!r}"
            if override:
                applied = await remote.evt_configurationApplied.next(
                    flush=False, timeout=timeout
                )
                assert override in applied.configurations.split(",")
            await set_summary_state(remote, State.OFFLINE, timeout=timeout)
            while data.summaryState != State.OFFLINE:
                data = await remote.evt_summaryState.next(flush=False, timeout=timeout)
            code = await asyncio.wait_for(process.wait(), timeout)
            assert code == 0, f"{argv} exited with {code}"
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), timeout)
                except TimeoutError:
                    process.kill()
                    await process.wait()
