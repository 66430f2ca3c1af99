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

"""The unittest mixin and harness helpers, used as a CSC package would."""

from __future__ import annotations

import os
import pathlib
import unittest
from typing import Any

import pytest
from lsst.ts.ocps.sal import State
from lsst.ts.ocps.sal.testing import BaseCscTestCase, get_expected_summary_states
from lsst.ts.ocps.sal.testing_csc import MinimalOcpsCsc
from support.sal import CONFIGS_DIR, STD_TIMEOUT


class MixinTestCase(BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def basic_make_csc(
        self,
        initial_state: State | None,
        config_dir: str | pathlib.Path | None,
        simulation_mode: int,
        **kwargs: Any,
    ) -> MinimalOcpsCsc:
        csc = MinimalOcpsCsc(
            index=2,
            initial_state=initial_state,
            config_dir=CONFIGS_DIR / "good" if config_dir is None else config_dir,
            simulation_mode=simulation_mode,
            **kwargs,
        )
        csc.shutdown_delay = 0.1
        return csc

    async def test_environment(self) -> None:
        assert os.environ["LSST_SITE"] == "test"
        assert os.environ["LSST_TOPIC_SUBNAME"].startswith("test_")

    async def test_standard_state_transitions(self) -> None:
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            await self.assert_next_sample(
                self.remote.evt_softwareVersions, cscVersion="test"
            )
            await self.check_standard_state_transitions(
                enabled_commands=("execute", "abort_job"),
                override="fast.yaml",
                timeout=STD_TIMEOUT,
            )

    async def test_initial_state_disabled(self) -> None:
        async with self.make_csc(initial_state=State.DISABLED):
            await self.assert_next_summary_state(State.DISABLED)
            assert self.csc.summary_state == State.DISABLED

    async def test_assert_next_sample_checks_values(self) -> None:
        async with self.make_csc():
            with pytest.raises(
                AssertionError,
                match=r"summaryState=<State.STANDBY: 5> != <State.ENABLED: 2>",
            ):
                await self.assert_next_summary_state(State.ENABLED)


def test_get_expected_summary_states() -> None:
    assert get_expected_summary_states(State.STANDBY, State.ENABLED) == [
        State.DISABLED,
        State.ENABLED,
    ]
    assert get_expected_summary_states(State.ENABLED, State.OFFLINE) == [
        State.DISABLED,
        State.STANDBY,
        State.OFFLINE,
    ]
    assert get_expected_summary_states(State.STANDBY, State.STANDBY) == []
    with pytest.raises(ValueError, match="FAULT"):
        get_expected_summary_states(State.FAULT, State.STANDBY)
