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

"""SAL test fixtures: test environment, config dirs, a CSC harness."""

from __future__ import annotations

__all__ = [
    "CONFIGS_DIR",
    "STD_TIMEOUT",
    "make_harness",
    "next_log_message",
    "sal_any_env",
    "sal_env",
]

import contextlib
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from lsst.ts.ocps.sal.enums import State
from lsst.ts.ocps.sal.testing import CscHarness, make_csc, set_test_environment
from lsst.ts.ocps.sal.testing_csc import MinimalOcpsCsc

CONFIGS_DIR = pathlib.Path(__file__).parent.parent / "data" / "sal_configs"
"""Config sets for `MinimalOcpsCsc`, one directory per case."""

STD_TIMEOUT = 20.0
"""Seconds to wait for an expected event or ack in SAL tests."""


@pytest.fixture
def sal_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh topic subname and ``LSST_SITE=test`` on the in-process bus."""
    monkeypatch.delenv("LSST_KAFKA_BROKER_ADDR", raising=False)
    monkeypatch.setenv("LSST_TOPIC_SUBNAME", "unset")
    monkeypatch.setenv("LSST_SITE", "unset")
    yield set_test_environment()


@pytest.fixture(params=["inprocess", "kafka"])
def sal_any_env(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Run a test once per transport: ``inprocess``, then ``kafka``.

    The Kafka case uses the session tansu broker and registry stand-in
    (`kafka_env` from ``support.kafka``); both set ``LSST_SITE=test``.
    """
    monkeypatch.setenv("LSST_SITE", "test")
    if request.param == "kafka":
        request.getfixturevalue("kafka_env")
    else:
        monkeypatch.delenv("LSST_KAFKA_BROKER_ADDR", raising=False)
        monkeypatch.setenv("LSST_TOPIC_SUBNAME", "unset")
        set_test_environment()
    yield str(request.param)


@contextlib.asynccontextmanager
async def make_harness(
    initial_state: State | None = None,
    config_dir: pathlib.Path | None = None,
    index: int = 1,
    **kwargs: Any,
) -> AsyncIterator[CscHarness]:
    """A `MinimalOcpsCsc` (config set ``good`` by default) and a Remote."""

    def factory(**fields: Any) -> MinimalOcpsCsc:
        csc = MinimalOcpsCsc(index=index, **fields)
        csc.shutdown_delay = 0.1
        return csc

    async with make_csc(
        factory,
        initial_state=initial_state,
        config_dir=CONFIGS_DIR / "good" if config_dir is None else config_dir,
        timeout=STD_TIMEOUT,
        **kwargs,
    ) as harness:
        yield harness


async def next_log_message(
    harness: CscHarness, level: int, timeout: float = STD_TIMEOUT
) -> Any:
    """The next fresh ``logMessage`` at ``level``, skipping other levels."""
    while True:
        data = await harness.assert_next_sample(
            harness.remote.evt_logMessage, timeout=timeout
        )
        if data.level == level:
            return data
