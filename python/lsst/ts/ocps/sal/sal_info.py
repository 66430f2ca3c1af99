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

"""The per-component SAL endpoint: stamping, filtering and dispatch."""

from __future__ import annotations

__all__ = ["MAX_SEQ_NUM", "SalInfo", "check_record"]

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from .domain import Domain
from .tai import current_tai, utc_from_tai
from .transport import Transport, make_transport

if TYPE_CHECKING:
    from .interface import ComponentInfo, TopicInfo

MAX_SEQ_NUM = 2**31 - 1
"""Largest ``private_seqNum``; event counters wrap to 1 after it."""

_AVRO_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "string": (str,),
}


class RecordReader(Protocol):
    """What a `SalInfo` needs from a reader topic."""

    topic_info: TopicInfo
    max_history: int

    def _deliver(self, data: dict[str, Any], is_history: bool) -> None: ...

    async def close(self) -> None: ...


def _value_ok(avro_type: Any, value: Any) -> bool:
    """Does a value fit an Avro type (primitive name or array dict)?"""
    if isinstance(avro_type, dict):
        if avro_type.get("type") != "array" or not isinstance(value, list):
            return False
        return all(_value_ok(avro_type["items"], item) for item in value)
    allowed = _AVRO_PYTHON_TYPES.get(avro_type)
    if allowed is None:
        return False
    if avro_type != "boolean" and isinstance(value, bool):
        return False
    return isinstance(value, allowed)


_schema_cache: dict[tuple[str, str], tuple[list[dict[str, Any]], str]] = {}


def _schema_facts(topic: TopicInfo) -> tuple[list[dict[str, Any]], str]:
    """The schema fields and revCode of a topic, computed once."""
    key = (topic.component, topic.sal_name)
    facts = _schema_cache.get(key)
    if facts is None:
        facts = (topic.avro_schema()["fields"], topic.rev_code())
        _schema_cache[key] = facts
    return facts


def check_record(topic: TopicInfo, data: Any) -> str | None:
    """Check a record against its topic's schema.

    Parameters
    ----------
    topic : `TopicInfo`
        The topic the record claims to belong to.
    data : `~typing.Any`
        The record.

    Returns
    -------
    problem : `str` or `None`
        What is wrong, or `None` if the record is good.
    """
    if not isinstance(data, dict):
        return f"record is a {type(data).__name__}, not a dict"
    fields = _schema_facts(topic)[0]
    names = [field["name"] for field in fields]
    missing = [name for name in names if name not in data]
    if missing:
        return f"missing fields {missing}"
    extra = sorted(set(data) - set(names))
    if extra:
        return f"unknown fields {extra}"
    for field in fields:
        if not _value_ok(field["type"], data[field["name"]]):
            return (
                f"field {field['name']}={data[field['name']]!r} is not {field['type']}"
            )
    return None


class SalInfo:
    """One SAL endpoint of one component: a Remote's or a CSC's.

    It owns a transport, stamps the private fields of every record it
    writes, and hands each record read to its reader topic after the
    checks SAL readers make: schema, SAL index, ordering and, for
    commands, a positive ``private_seqNum``. A bad record is logged and
    skipped; reading goes on.

    Parameters
    ----------
    domain : `Domain`
        Supplies identity and origin; `Domain.close` closes this endpoint.
    name : `str`
        SAL component name, e.g. ``OCPS``.
    index : `int`, optional
        SAL index; 0 reads every index and writes the index in the data.
    transport : `Transport` or `None`, optional
        The transport; `None` calls `make_transport`.
    log : `logging.Logger` or `None`, optional
        Parent logger; `None` uses ``ocps.sal``.
    """

    def __init__(
        self,
        domain: Domain,
        name: str,
        index: int = 0,
        *,
        transport: Transport | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        from .interface import get_component_info

        self.domain = domain
        self.component: ComponentInfo = get_component_info(name)
        self.name = name
        self.index = int(index) if self.component.indexed else 0
        if self.index < 0 or self.index > MAX_SEQ_NUM:
            raise ValueError(f"index={index} must be in the range [0, {MAX_SEQ_NUM}]")
        parent = logging.getLogger("ocps.sal") if log is None else log
        self.log = parent.getChild(f"SalInfo.{self.name_index}")
        self.transport = make_transport() if transport is None else transport

        self._readers: dict[str, RecordReader] = {}
        self._write_topics: dict[str, TopicInfo] = {}
        self._seq_nums: dict[str, int] = {}
        self._last_written: dict[str, float] = {}
        self._last_read: dict[tuple[str, int], float] = {}
        self._write_lock = asyncio.Lock()
        self._started = False
        self._closing = False
        self._closed = False
        self.start_task: asyncio.Future[None] = asyncio.Future()
        domain.add_salinfo(self)

    @property
    def identity(self) -> str:
        """Identity stamped on every record written."""
        return self.domain.identity

    @property
    def origin(self) -> int:
        """Process id stamped on every record written."""
        return self.domain.origin

    @property
    def name_index(self) -> str:
        """``name:index`` for an indexed component, else ``name``."""
        return f"{self.name}:{self.index}" if self.component.indexed else self.name

    @property
    def started(self) -> bool:
        """Has `start` finished?"""
        return self._started

    @property
    def closed(self) -> bool:
        """Has `close` been called?"""
        return self._closed

    def topic_info(self, sal_name: str) -> TopicInfo:
        """The interface of one topic, by ``sal_name``."""
        return self.component.topics[sal_name]

    def add_reader(self, reader: RecordReader) -> None:
        """Register a reader topic; only before `start`."""
        if self._started:
            raise RuntimeError("Cannot add a reader after start")
        self._readers[reader.topic_info.sal_name] = reader

    def add_writer(self, topic: TopicInfo) -> None:
        """Register a topic this endpoint writes; only before `start`."""
        if self._started:
            raise RuntimeError("Cannot add a writer after start")
        self._write_topics[topic.sal_name] = topic

    async def start(self) -> None:
        """Start the transport: create topics and position readers.

        Records older than the start are not delivered, except history of
        event topics whose reader has ``max_history > 0``.
        """
        if self._started or self._closing:
            raise RuntimeError("Already started or closed")
        try:
            await self.transport.start(
                component=self.component,
                index=self.index,
                identity=self.identity,
                write_topics=list(self._write_topics.values()),
                read_topics=[reader.topic_info for reader in self._readers.values()],
                history_topics=[
                    name
                    for name, reader in self._readers.items()
                    if reader.max_history > 0 and reader.topic_info.category == "event"
                ],
                on_record=self._on_record,
            )
        except BaseException as e:
            if not self.start_task.done():
                self.start_task.set_exception(e)
                # The caller gets the exception; keep asyncio quiet about it.
                self.start_task.exception()
            raise
        self._started = True
        if not self.start_task.done():
            self.start_task.set_result(None)

    async def write(self, topic: TopicInfo, data: dict[str, Any]) -> dict[str, Any]:
        """Stamp a record and send it.

        Parameters
        ----------
        topic : `TopicInfo`
            A registered write topic.
        data : `dict` [`str`, `~typing.Any`]
            The complete record. For commands and acks ``private_seqNum``
            is kept; events and telemetry get the next per-topic counter.

        Returns
        -------
        record : `dict` [`str`, `~typing.Any`]
            The record as written, private fields stamped.

        Raises
        ------
        RuntimeError
            If this endpoint is not started, is closed, or does not write
            the topic.
        ValueError
            If the record does not fit the topic's schema.
        """
        if not self._started or self._closed:
            raise RuntimeError(f"{self.name_index} is not running; cannot write")
        if topic.sal_name not in self._write_topics:
            raise RuntimeError(f"{self.name_index} does not write {topic.sal_name}")
        record = dict(data)
        if self.component.indexed and self.index != 0:
            record["salIndex"] = self.index

        # Stamp and write under one lock so stamps never go backwards per
        # topic, which readers' out-of-order filters depend on.
        async with self._write_lock:
            if topic.category in ("event", "telemetry"):
                seq_num = self._seq_nums.get(topic.sal_name, 0) % MAX_SEQ_NUM + 1
                record["private_seqNum"] = seq_num
            tai = max(current_tai(), self._last_written.get(topic.sal_name, 0.0))
            record["private_sndStamp"] = tai
            record["private_kafkaStamp"] = tai
            record["private_efdStamp"] = utc_from_tai(tai)
            record["private_revCode"] = _schema_facts(topic)[1]
            record["private_identity"] = self.identity
            record["private_origin"] = self.origin
            problem = check_record(topic, record)
            if problem is not None:
                raise ValueError(f"Cannot write {topic.sal_name}: {problem}")
            await self.transport.write(topic, record)
            self._last_written[topic.sal_name] = tai
            if topic.category in ("event", "telemetry"):
                self._seq_nums[topic.sal_name] = record["private_seqNum"]
        return record

    def _on_record(self, topic: TopicInfo, data: Any, is_history: bool) -> None:
        """Check one record read and hand it to its reader."""
        if self._closing:
            return
        reader = self._readers.get(topic.sal_name)
        if reader is None:
            return
        problem = check_record(topic, data)
        if problem is not None:
            self.log.warning("Skipping bad %s record: %s", topic.sal_name, problem)
            return

        index = data.get("salIndex", 0)
        if self.index != 0 and index != self.index:
            return
        if topic.category in ("event", "telemetry"):
            key = (topic.sal_name, index)
            stamp = data["private_sndStamp"]
            if not is_history and stamp < self._last_read.get(key, stamp):
                self.log.warning(
                    "Skipping out-of-order %s record: private_sndStamp=%s",
                    topic.sal_name,
                    stamp,
                )
                return
            self._last_read[key] = stamp
        elif topic.category == "command" and data["private_seqNum"] <= 0:
            self.log.warning(
                "Ignoring %s with private_seqNum=%s <= 0 from %s",
                topic.sal_name,
                data["private_seqNum"],
                data["private_identity"],
            )
            return

        data["private_rcvStamp"] = current_tai()
        try:
            reader._deliver(data, is_history)
        except Exception:
            self.log.exception("Reader of %s failed on a record", topic.sal_name)

    async def close(self) -> None:
        """Close every reader, then the transport; safe to call twice.

        Readers close first, so command handlers they cancel can still
        write their ``CMD_ABORTED`` ack.
        """
        if self._closing:
            return
        self._closing = True
        if not self.start_task.done():
            self.start_task.cancel()
        for reader in list(self._readers.values()):
            await reader.close()
        self._closed = True
        try:
            await self.transport.close()
        finally:
            self.domain.remove_salinfo(self)
