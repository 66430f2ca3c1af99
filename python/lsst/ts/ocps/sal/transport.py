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

"""The abstract SAL transport and the factory that picks one."""

from __future__ import annotations

__all__ = ["RecordCallback", "Transport", "make_transport"]

import abc
import os
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .interface import ComponentInfo, TopicInfo

RecordCallback = Callable[["TopicInfo", dict[str, Any], bool], None]
"""Called for every record read: ``(topic, data, is_history)``."""

BROKER_ENV_VAR = "LSST_KAFKA_BROKER_ADDR"
"""When set (non-empty), `make_transport` returns the Kafka transport."""


class Transport(abc.ABC):
    """Moves complete SAL records between one endpoint and everyone else.

    A transport knows nothing about stamping, index filtering or command
    semantics: the `SalInfo` that owns it does all of that. One transport
    instance serves exactly one `SalInfo` and is started once.

    Notes
    -----
    Reader positioning rules every implementation follows:

    * Command and ackcmd readers start at the end: nothing written before
      `start` is delivered.
    * Topics named in ``history_topics`` deliver, before `start` returns,
      the latest record per ``salIndex`` among the last N records
      (``is_history=True``); live records follow with ``is_history=False``.
    * ``on_record`` is always called from the event loop thread, in the
      order records of one topic arrived.
    """

    @abc.abstractmethod
    async def start(
        self,
        *,
        component: ComponentInfo,
        index: int,
        identity: str,
        write_topics: Sequence[TopicInfo],
        read_topics: Sequence[TopicInfo],
        history_topics: Collection[str],
        on_record: RecordCallback,
    ) -> None:
        """Create topics, position readers and begin delivering records.

        Parameters
        ----------
        component : `ComponentInfo`
            The SAL component all topics belong to.
        index : `int`
            SAL index of the owning endpoint (0 means all indices).
        identity : `str`
            Identity of the owning endpoint, e.g. ``OCPS:1``.
        write_topics : `~collections.abc.Sequence` [`TopicInfo`]
            Topics this endpoint writes.
        read_topics : `~collections.abc.Sequence` [`TopicInfo`]
            Topics this endpoint reads.
        history_topics : `~collections.abc.Collection` [`str`]
            ``sal_name`` of the read topics that want late-joiner history.
        on_record : `RecordCallback`
            Receives every record read.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    async def write(self, topic: TopicInfo, data: dict[str, Any]) -> None:
        """Send one complete record.

        Parameters
        ----------
        topic : `TopicInfo`
            The topic to write.
        data : `dict` [`str`, `~typing.Any`]
            The complete record, private fields already stamped.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop reading and writing and release every resource.

        Safe to call more than once, and before `start`.
        """
        raise NotImplementedError()


def make_transport() -> Transport:
    """Make the transport the environment asks for.

    Returns
    -------
    transport : `Transport`
        A Kafka transport when ``LSST_KAFKA_BROKER_ADDR`` is set and not
        empty, otherwise an in-process transport.
    """
    if os.environ.get(BROKER_ENV_VAR, ""):
        from .kafka_transport import KafkaTransport

        return KafkaTransport()

    from .inprocess_transport import InProcessTransport

    return InProcessTransport()
