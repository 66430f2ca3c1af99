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
    "make_quick_harness",
    "next_log_message",
    "sal_any_env",
    "sal_env",
]

import contextlib
import pathlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from lsst.ts.ocps.sal.base_csc import BaseCsc
from lsst.ts.ocps.sal.enums import State
from lsst.ts.ocps.sal.testing import CscHarness, make_csc, make_test_subname
from lsst.ts.ocps.sal.testing_csc import MinimalOcpsCsc

CONFIGS_DIR = pathlib.Path(__file__).parent.parent / "data" / "sal_configs"
"""Config sets for `MinimalOcpsCsc`, one directory per case."""

STD_TIMEOUT = 20.0
"""Seconds to wait for an expected event or ack in SAL tests."""


@pytest.fixture
def sal_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh topic subname and ``LSST_SITE=test`` on the in-process bus."""
    subname = make_test_subname()
    monkeypatch.delenv("LSST_KAFKA_BROKER_ADDR", raising=False)
    monkeypatch.setenv("LSST_TOPIC_SUBNAME", subname)
    monkeypatch.setenv("LSST_SITE", "test")
    yield subname


@pytest.fixture
def sal_any_env(any_transport_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once per transport, with ``LSST_SITE=test``.

    The transports are those of `any_transport_env` (``support.kafka``):
    ``inprocess``, then ``kafka``; the value is the transport's name.
    """
    monkeypatch.setenv("LSST_SITE", "test")
    return any_transport_env


@contextlib.asynccontextmanager
async def make_quick_harness(
    csc_class: Callable[..., BaseCsc],
    index: int,
    config_dir: pathlib.Path,
    timeout: float,
    **kwargs: Any,
) -> AsyncIterator[CscHarness]:
    """`make_csc` for a CSC class that takes ``index`` and ``config_dir``.

    The CSC's ``shutdown_delay`` is cut to 0.1 s so exitControl tests
    finish quickly.
    """

    def factory(**fields: Any) -> BaseCsc:
        csc = csc_class(index=index, **fields)
        csc.shutdown_delay = 0.1
        return csc

    async with make_csc(
        factory, config_dir=config_dir, timeout=timeout, **kwargs
    ) as harness:
        yield harness


@contextlib.asynccontextmanager
async def make_harness(
    initial_state: State | None = None,
    config_dir: pathlib.Path | None = None,
    index: int = 1,
    **kwargs: Any,
) -> AsyncIterator[CscHarness]:
    """A `MinimalOcpsCsc` (config set ``good`` by default) and a Remote."""
    async with make_quick_harness(
        MinimalOcpsCsc,
        index=index,
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
