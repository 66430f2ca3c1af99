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

"""A transport that moves SAL records between endpoints of one process."""

from __future__ import annotations

__all__ = ["InProcessBus", "InProcessTransport"]

import asyncio
import copy
import dataclasses
import logging
import os
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .transport import RecordCallback, Transport

if TYPE_CHECKING:
    from .interface import ComponentInfo, TopicInfo

_log = logging.getLogger("ocps.sal.inprocess")


@dataclasses.dataclass(eq=False)
class _Subscriber:
    """One started transport's interest in the bus."""

    loop: asyncio.AbstractEventLoop
    topic_names: frozenset[tuple[str, str]]
    on_record: RecordCallback
    topic_infos: dict[tuple[str, str], TopicInfo]


class InProcessBus:
    """A process-wide exchange for one ``LSST_TOPIC_SUBNAME``.

    Every record written is copied to each subscriber that reads its topic,
    in write order, and the latest record per (topic, salIndex) is kept so
    late joiners get history, as a compacted Kafka topic would give them.
    """

    _buses: ClassVar[dict[str, InProcessBus]] = {}

    def __init__(self, subname: str) -> None:
        self.subname = subname
        self._subscribers: list[_Subscriber] = []
        self._latest: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}

    @classmethod
    def get(cls, subname: str | None = None) -> InProcessBus:
        """Get the bus for a topic subname, creating it if needed.

        Parameters
        ----------
        subname : `str` or `None`, optional
            Topic subname; `None` reads ``LSST_TOPIC_SUBNAME``.

        Returns
        -------
        bus : `InProcessBus`
            The bus shared by every endpoint of this process on that subname.

        Raises
        ------
        RuntimeError
            If ``subname`` is `None` and ``LSST_TOPIC_SUBNAME`` is not set.
        """
        if subname is None:
            subname = os.environ.get("LSST_TOPIC_SUBNAME", "")
            if not subname:
                raise RuntimeError(
                    "You must define environment variable LSST_TOPIC_SUBNAME"
                )
        bus = cls._buses.get(subname)
        if bus is None:
            bus = cls(subname)
            cls._buses[subname] = bus
        return bus

    def subscribe(self, subscriber: _Subscriber) -> None:
        """Add a subscriber."""
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        """Remove a subscriber; a no-op if it is not subscribed."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def latest(self, component: str, sal_name: str) -> list[dict[str, Any]]:
        """Copies of the latest record per salIndex of one topic."""
        by_index = self._latest.get((component, sal_name), {})
        return [copy.deepcopy(data) for data in by_index.values()]

    def publish(self, topic: TopicInfo, data: dict[str, Any]) -> None:
        """Deliver a record to every subscriber that reads its topic.

        The record is not checked: a malformed record reaches readers as
        it is, which is how tests feed bad input to a `SalInfo`.

        Parameters
        ----------
        topic : `TopicInfo`
            The topic written.
        data : `dict` [`str`, `~typing.Any`]
            The record.
        """
        key = (topic.component, topic.sal_name)
        if topic.category == "event" and isinstance(data, dict):
            index = data.get("salIndex", 0)
            self._latest.setdefault(key, {})[index] = copy.deepcopy(data)
        for subscriber in list(self._subscribers):
            if key not in subscriber.topic_names:
                continue
            if subscriber.loop.is_closed():
                self.unsubscribe(subscriber)
                continue
            subscriber.loop.call_soon_threadsafe(
                subscriber.on_record,
                subscriber.topic_infos[key],
                copy.deepcopy(data),
                False,
            )


class InProcessTransport(Transport):
    """A `Transport` over the process-wide `InProcessBus`.

    Only endpoints in the same process, on the same ``LSST_TOPIC_SUBNAME``,
    see each other. Records are deep-copied on the way, so no endpoint can
    change what another one received.
    """

    def __init__(self, bus: InProcessBus | None = None) -> None:
        self._bus = bus
        self._subscriber: _Subscriber | None = None

    @property
    def bus(self) -> InProcessBus:
        """The bus, once started."""
        if self._bus is None:
            raise RuntimeError("Transport not started")
        return self._bus

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
        if self._subscriber is not None:
            raise RuntimeError("Transport already started")
        if self._bus is None:
            self._bus = InProcessBus.get()
        topic_infos = {(t.component, t.sal_name): t for t in read_topics}
        self._subscriber = _Subscriber(
            loop=asyncio.get_running_loop(),
            topic_names=frozenset(topic_infos),
            on_record=on_record,
            topic_infos=topic_infos,
        )

        # History first, before live records can arrive: nothing can be
        # published in between because this runs without awaiting.
        for topic in read_topics:
            if topic.sal_name not in history_topics:
                continue
            for data in self._bus.latest(topic.component, topic.sal_name):
                on_record(topic, data, True)
        self._bus.subscribe(self._subscriber)
        _log.debug(
            "%s: subscribed to %d topics on %r",
            identity,
            len(topic_infos),
            self._bus.subname,
        )

    async def write(self, topic: TopicInfo, data: dict[str, Any]) -> None:
        if self._subscriber is None:
            raise RuntimeError("Transport not started")
        self.bus.publish(topic, data)

    async def close(self) -> None:
        if self._subscriber is not None and self._bus is not None:
            self._bus.unsubscribe(self._subscriber)
        self._subscriber = None
