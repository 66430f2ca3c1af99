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

"""The Kafka transport's retry delays, error classes and warning limiter."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException
from lsst.ts.ocps.sal.kafka_retry import Backoff, LimitedWarnings, is_retriable
from lsst.ts.ocps.sal.schema_registry import RegistryError, RegistryUnavailableError


def test_backoff_doubles_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next() for _ in range(6)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    backoff.reset()
    assert backoff.next() == pytest.approx(0.1)
    unbounded = Backoff(0.5)
    assert [unbounded.next() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]


def test_retriable_errors() -> None:
    assert is_retriable(RegistryUnavailableError("registry down"))
    assert is_retriable(KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN)))
    assert not is_retriable(RegistryError(409, 409, "incompatible"))
    assert not is_retriable(
        KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    )
    assert not is_retriable(ValueError("bad record"))


def test_limited_warnings_count_what_they_hold_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("ocps.tests.kafka_retry")
    caplog.set_level(logging.WARNING, log.name)
    warnings = LimitedWarnings(log, interval=3600)
    for i in range(3):
        warnings.warning("consume", f"read failed {i}")
    warnings.warning("delivery", "delivery failed")
    assert [r.getMessage() for r in caplog.records] == [
        "read failed 0",
        "delivery failed",
    ]

    warnings.interval = 0
    warnings.warning("consume", "read failed 3")
    assert caplog.records[-1].getMessage() == (
        "read failed 3 (2 more like it not logged)"
    )
