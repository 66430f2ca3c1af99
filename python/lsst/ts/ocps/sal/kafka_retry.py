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

"""How the Kafka transport retries failures and reports repeated ones."""

from __future__ import annotations

__all__ = [
    "RETRIABLE_CODES",
    "WARNING_INTERVAL",
    "Backoff",
    "LimitedWarnings",
    "is_retriable",
]

import logging
import math
import threading
import time

from confluent_kafka import KafkaError, KafkaException

from .schema_registry import RegistryUnavailableError

RETRIABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._WAIT_COORD,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_CONTROLLER,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
"""Kafka error codes retried even when librdkafka does not flag them."""

WARNING_INTERVAL = 10.0
"""A repeated warning of one kind is logged at most this often (seconds)."""


def is_retriable(error: BaseException) -> bool:
    """Is an error one that trying again later may cure?

    Parameters
    ----------
    error : `BaseException`
        The error a broker or registry call raised.

    Returns
    -------
    retriable : `bool`
        True for an unreachable registry and for Kafka errors that say
        the broker is away, slow or electing.
    """
    if isinstance(error, RegistryUnavailableError):
        return True
    if isinstance(error, KafkaException) and isinstance(error.args[0], KafkaError):
        kafka_error: KafkaError = error.args[0]
        return kafka_error.code() in RETRIABLE_CODES or kafka_error.retriable()
    return False


class Backoff:
    """Retry delays (seconds) that double from ``initial`` to ``maximum``.

    Parameters
    ----------
    initial : `float`
        The first delay.
    maximum : `float`, optional
        The longest delay.
    """

    def __init__(self, initial: float, maximum: float = math.inf) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        """Return the delay before the next attempt."""
        delay = self._next
        self._next = min(delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self._next = self.initial


class LimitedWarnings:
    """Log a warning of each kind at once, then at most once an interval.

    Safe to call from any thread.

    Parameters
    ----------
    log : `logging.Logger`
        Where warnings go.
    interval : `float`, optional
        Seconds during which further warnings of a kind are counted, not
        logged.
    """

    def __init__(self, log: logging.Logger, interval: float = WARNING_INTERVAL) -> None:
        self.log = log
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        """Log ``message`` unless one of this kind was logged recently.

        Parameters
        ----------
        kind : `str`
            What the warning is about; kinds are limited separately.
        message : `str`
            The text; the number of warnings of its kind left unlogged
            since the last one is appended.
        """
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} more like it not logged)"
        self.log.warning(message)
