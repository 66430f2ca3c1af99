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

"""Test helpers for CSCs: a unittest mixin and the pytest harness."""

from __future__ import annotations

__all__ = [
    "STD_TIMEOUT",
    "BaseCscTestCase",
    "CscHarness",
    "check_bin_script",
    "get_expected_summary_states",
    "make_csc",
    "make_test_subname",
    "set_summary_state",
    "set_test_environment",
]

import abc
import contextlib
import os
import pathlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .base_csc import BaseCsc
from .csc_harness import (
    STD_TIMEOUT,
    CscHarness,
    check_bin_script,
    get_expected_summary_states,
    make_csc,
    make_test_subname,
    set_summary_state,
    set_test_environment,
)
from .enums import State
from .remote import Remote
from .topics import ReadTopic, Sample

_TEST_ENV_VARS = ("LSST_TOPIC_SUBNAME", "LSST_SITE")
"""Environment variables `BaseCscTestCase` sets per test and restores."""


class BaseCscTestCase(abc.ABC):
    """Mixin for `unittest.IsolatedAsyncioTestCase` testing a CSC.

    Each test gets a fresh ``LSST_TOPIC_SUBNAME`` and ``LSST_SITE=test``.
    Define `basic_make_csc`; then ``async with self.make_csc(...)`` sets
    ``self.csc`` and ``self.remote``.
    """

    csc: BaseCsc
    remote: Remote
    _harness: CscHarness | None = None

    def run(self, result: Any = None) -> Any:
        saved = {name: os.environ.get(name) for name in _TEST_ENV_VARS}
        set_test_environment()
        try:
            return super().run(result)  # type: ignore[misc]
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    @abc.abstractmethod
    def basic_make_csc(
        self,
        initial_state: State | None,
        config_dir: str | pathlib.Path | None,
        simulation_mode: int,
        **kwargs: Any,
    ) -> BaseCsc:
        """Make the CSC under test.

        Parameters
        ----------
        initial_state : `State` or `None`
            The initial state; `None` means the CSC's default.
        config_dir : `str`, `pathlib.Path` or `None`
            The configuration directory, if any.
        simulation_mode : `int`
            The simulation mode.
        **kwargs : `~typing.Any`
            More constructor arguments given to `make_csc`.

        Returns
        -------
        csc : `BaseCsc`
            The CSC, not started yet.
        """
        raise NotImplementedError()

    @contextlib.asynccontextmanager
    async def make_csc(
        self,
        initial_state: State | None = None,
        config_dir: str | pathlib.Path | None = None,
        simulation_mode: int = 0,
        log_level: int | None = None,
        timeout: float = STD_TIMEOUT,
        **kwargs: Any,
    ) -> AsyncIterator[None]:
        """Make ``self.csc`` and ``self.remote``; close them on exit.

        The arguments are those of `csc_harness.make_csc`, less the
        factory (`basic_make_csc` is used).
        """

        def factory(**fields: Any) -> BaseCsc:
            return self.basic_make_csc(
                initial_state=fields.pop("initial_state"),
                config_dir=fields.pop("config_dir", None),
                simulation_mode=fields.pop("simulation_mode"),
                **fields,
            )

        async with make_csc(
            factory,
            initial_state=initial_state,
            config_dir=config_dir,
            simulation_mode=simulation_mode,
            log_level=log_level,
            timeout=timeout,
            **kwargs,
        ) as harness:
            self._harness = harness
            self.csc = harness.csc
            self.remote = harness.remote
            try:
                yield
            finally:
                self._harness = None

    @property
    def harness(self) -> CscHarness:
        """The harness of the current `make_csc` block."""
        assert self._harness is not None, "Only inside make_csc"
        return self._harness

    async def assert_next_summary_state(
        self,
        state: State,
        flush: bool = False,
        timeout: float = STD_TIMEOUT,
        remote: Remote | None = None,
    ) -> None:
        """See `CscHarness.assert_next_summary_state`."""
        await self.harness.assert_next_summary_state(state, flush, timeout, remote)

    async def assert_next_sample(
        self,
        topic: ReadTopic,
        flush: bool = False,
        timeout: float = STD_TIMEOUT,
        **expected: Any,
    ) -> Sample:
        """See `CscHarness.assert_next_sample`."""
        return await self.harness.assert_next_sample(topic, flush, timeout, **expected)

    async def check_standard_state_transitions(
        self,
        enabled_commands: Sequence[str],
        skip_commands: Sequence[str] | None = None,
        override: str = "",
        timeout: float = STD_TIMEOUT,
    ) -> None:
        """See `CscHarness.check_standard_state_transitions`."""
        await self.harness.check_standard_state_transitions(
            enabled_commands, skip_commands, override, timeout
        )

    async def check_bin_script(
        self,
        name: str,
        index: int,
        exe_name: str | Sequence[str],
        **kwargs: Any,
    ) -> None:
        """See `check_bin_script`."""
        await check_bin_script(name, index, exe_name, **kwargs)
