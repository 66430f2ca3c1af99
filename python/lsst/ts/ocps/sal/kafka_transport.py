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

"""The SAL transport over Kafka, wire-compatible with ts_salobj 8."""

from __future__ import annotations

__all__ = ["KafkaTransport"]

import asyncio
import base64
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import fastavro
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from .avro_schema import schema_text
from .kafka_codec import FramingError, decode_value, encode_value, make_key, parse_frame
from .kafka_config import KafkaConfig
from .kafka_retry import WARNING_INTERVAL, Backoff, LimitedWarnings, is_retriable
from .schema_registry import (
    RegistryError,
    RegistryUnavailableError,
    SchemaRegistryClient,
)
from .transport import RecordCallback, Transport

if TYPE_CHECKING:
    from .interface import ComponentInfo, TopicInfo

_T = TypeVar("_T")

REQUEST_TIMEOUT = 5.0
"""Timeout of one blocking broker or registry request (seconds)."""

METADATA_TIMEOUT = 2.0
"""Timeout of one topic listing; an unreachable broker fails it (seconds)."""

CLOSE_TIMEOUT = 2.0
"""Longest wait for pending writes and group deletion at close (seconds)."""


@dataclasses.dataclass(eq=False)
class _ReadState:
    """One read topic: its schema, id and history bookkeeping."""

    topic: TopicInfo
    parsed_schema: Any
    schema_id: int
    wants_history: bool
    history_end: int | None = None
    stash: dict[int, tuple[int, dict[str, Any]]] = dataclasses.field(
        default_factory=dict
    )


@dataclasses.dataclass(eq=False)
class _WriteState:
    """One write topic: where it goes and how it is framed."""

    topic: TopicInfo
    kafka_name: str
    key: bytes
    parsed_schema: Any
    schema_id: int


class KafkaTransport(Transport):
    """Moves SAL records over Kafka, framed and keyed exactly as salobj does.

    Settings come from the environment at `start` (see `KafkaConfig`)
    unless ``config`` is given. Blocking client calls run in threads: a
    consumer thread reads and decodes, a producer thread serves delivery
    reports, and set-up runs in `asyncio.to_thread`.

    Parameters
    ----------
    config : `KafkaConfig` or `None`, optional
        Settings; `None` reads them from the environment at `start`.
    retry_initial : `float`, optional
        First delay (seconds) before retrying an unreachable broker or
        registry during `start`; doubled after each failure.
    retry_max : `float`, optional
        Longest delay between retries (seconds).
    num_messages : `int`, optional
        Records fetched per consumer call.
    consume_timeout : `float`, optional
        How long one consumer call waits for records (seconds).
    warning_interval : `float`, optional
        A repeated warning of one kind (bad records, broker unreachable)
        is logged at most this often (seconds).

    Notes
    -----
    Bad records (tombstones, bad framing, unknown schema ids, bodies that
    do not decode) are logged and skipped, and count towards the end of
    history so a bad last record cannot stall `start`. A broker that is
    down makes `start` retry with backoff until it answers (cancel the
    call to give up); one that goes away later is logged and reconnected
    to by librdkafka.
    """

    def __init__(
        self,
        config: KafkaConfig | None = None,
        *,
        retry_initial: float = 0.5,
        retry_max: float = 10.0,
        num_messages: int = 1,
        consume_timeout: float = 0.1,
        warning_interval: float = WARNING_INTERVAL,
    ) -> None:
        self.config = config
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.num_messages = num_messages
        self.consume_timeout = consume_timeout
        self.log = logging.getLogger("ocps.sal.kafka")
        self._warnings = LimitedWarnings(self.log, warning_interval)

        self.group_id = ""
        self.schema_ids: dict[str, int] = {}
        self._component: ComponentInfo | None = None
        self._index = 0
        self._identity = ""
        self._on_record: RecordCallback | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._registry: SchemaRegistryClient | None = None
        self._admin: AdminClient | None = None
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._read_states: dict[str, _ReadState] = {}
        self._write_states: dict[str, _WriteState] = {}
        self._writer_schemas: dict[int, Any] = {}
        self._history_pending: set[str] = set()
        self._assigned = False
        self._ready: asyncio.Future[None] | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False

    # Set-up

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
        if self._started or self._closed:
            raise RuntimeError("KafkaTransport can be started only once")
        self._started = True
        self._loop = asyncio.get_running_loop()
        if self.config is None:
            self.config = KafkaConfig.from_env()
        config = self.config
        self._component = component
        self._index = index
        self._identity = identity
        self._on_record = on_record
        self._registry = SchemaRegistryClient(config.registry_url, REQUEST_TIMEOUT)
        self._admin = AdminClient(self._client_settings(config.admin_config()))

        topics = {t.sal_name: t for t in [*write_topics, *read_topics]}
        names = {
            sal_name: topic.kafka_topic_name(config.topic_subname)
            for sal_name, topic in topics.items()
        }
        await self._retry("Creating Kafka topics", self._ensure_topics, topics)
        schemas = {sal_name: topic.avro_schema() for sal_name, topic in topics.items()}
        for sal_name, topic in topics.items():
            self.schema_ids[sal_name] = await self._retry(
                f"Registering the schema of {names[sal_name]}",
                self._register,
                topic.avro_subject(config.topic_subname),
                schema_text(schemas[sal_name]),
            )
        parsed = {
            sal_name: fastavro.parse_schema(schema)
            for sal_name, schema in schemas.items()
        }

        key_index = index if component.indexed else None
        for topic in write_topics:
            self._write_states[topic.sal_name] = _WriteState(
                topic=topic,
                kafka_name=names[topic.sal_name],
                key=make_key(component.name, key_index, topic.sal_name).encode(),
                parsed_schema=parsed[topic.sal_name],
                schema_id=self.schema_ids[topic.sal_name],
            )
        if write_topics:
            await asyncio.to_thread(self._make_producer)

        for topic in read_topics:
            self._read_states[names[topic.sal_name]] = _ReadState(
                topic=topic,
                parsed_schema=parsed[topic.sal_name],
                schema_id=self.schema_ids[topic.sal_name],
                wants_history=topic.sal_name in history_topics,
            )
        if read_topics:
            self._ready = self._loop.create_future()
            self._make_consumer()
            await self._ready
        self.log.debug("%s: Kafka transport started, group %s", identity, self.group_id)

    async def _retry(self, what: str, func: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking call in a thread; retry while it is retriable."""
        backoff = Backoff(self.retry_initial, self.retry_max)
        attempt = 1
        while True:
            try:
                return await asyncio.to_thread(func, *args)
            except Exception as e:
                if not is_retriable(e):
                    raise
                delay = backoff.next()
                self.log.warning(
                    "%s: %s failed (attempt %d): %s; retrying in %.1f s",
                    self._identity,
                    what,
                    attempt,
                    e,
                    delay,
                )
            await asyncio.sleep(delay)
            attempt += 1

    def _ensure_topics(self, topics: dict[str, TopicInfo]) -> None:
        """Create the missing topics: 1 partition, events compacted."""
        assert self._admin is not None and self.config is not None
        subname = self.config.topic_subname
        wanted = {topic.kafka_topic_name(subname): topic for topic in topics.values()}
        missing = sorted(set(wanted) - self._existing_topics())
        if missing:
            new_topics = [
                NewTopic(
                    name,
                    num_partitions=1,
                    replication_factor=self.config.replication_factor,
                    config=(
                        {"cleanup.policy": "compact"}
                        if wanted[name].category == "event"
                        else {}
                    ),
                )
                for name in missing
            ]
            futures = self._admin.create_topics(
                new_topics, request_timeout=REQUEST_TIMEOUT
            )
            for name, future in futures.items():
                try:
                    future.result()
                except KafkaException as e:
                    if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
            self.log.debug("%s: created topics %s", self._identity, missing)

        # Creation is asynchronous in the cluster: wait until all are seen.
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while missing:
            missing = sorted(set(wanted) - self._existing_topics())
            if missing and time.monotonic() > deadline:
                raise KafkaException(
                    KafkaError(KafkaError._TIMED_OUT, f"Topics {missing} not created")
                )
            if missing:
                time.sleep(0.05)

    def _existing_topics(self) -> set[str]:
        assert self._admin is not None
        metadata = self._admin.list_topics(timeout=METADATA_TIMEOUT)
        self._admin.poll(0)
        return {name for name, info in metadata.topics.items() if info.error is None}

    def _register(self, subject: str, text: str) -> int:
        assert self._registry is not None
        try:
            return self._registry.register(subject, text)
        except RegistryError as e:
            raise RuntimeError(
                f"Schema registry refused the schema of {subject}: {e}"
            ) from e

    def _client_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Add the error callback and logger every client of ours gets."""
        return {
            **settings,
            "error_cb": self._on_client_error,
            "logger": self.log.getChild("rdkafka"),
        }

    def _make_producer(self) -> None:
        assert self.config is not None
        self._producer = Producer(self._client_settings(self.config.producer_config()))
        for state in self._write_states.values():
            try:
                self._producer.list_topics(topic=state.kafka_name, timeout=1)
            except KafkaException as e:
                self.log.debug("Metadata warm-up of %s failed: %s", state.kafka_name, e)
        self._start_thread("kafka-producer", self._producer_loop)

    def _make_consumer(self) -> None:
        assert self.config is not None and self._component is not None
        name_index = self._component.name
        if self._component.indexed:
            name_index += f":{self._index}"
        rand = base64.urlsafe_b64encode(os.urandom(12)).decode().replace("=", "_")
        if self._identity == name_index:
            self.group_id = f"{name_index}-{rand}"
        else:
            self.group_id = f"{self._identity}-{name_index}-{rand}"
        self._consumer = Consumer(
            self._client_settings(self.config.consumer_config(self.group_id))
        )
        self._consumer.subscribe(
            list(self._read_states),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._start_thread("kafka-consumer", self._consumer_loop)

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"{name}-{self._identity}")
        self._threads.append(thread)
        thread.start()

    # Consumer thread

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Position every partition (runs in the consumer thread)."""
        if self._assigned:
            # Rebalance: never read history again.
            consumer.assign(partitions)
            return
        assert self.config is not None and self._component is not None
        if self._component.indexed:
            max_history = self.config.max_history_for(self._component.name)
        else:
            max_history = 1
        # Known shortcoming (tansu 0.6.0 only): tansu reports the high
        # watermark as the first offset of the newest produce batch + 1, so
        # when that batch held several records, a reader placed "at the end"
        # re-reads its tail. salobj has the same exposure. On tansu, give
        # producers batch.num.messages=1 through
        # LSST_KAFKA_PRODUCER_CONFIGURATION (the test fixtures do). Nothing
        # to change here once tansu reports the true end; Kafka does.
        for partition in partitions:
            state = self._read_states[partition.topic]
            low, high = self._watermarks(consumer, partition)
            if high <= 0:
                partition.offset = OFFSET_BEGINNING
            elif not state.wants_history:
                partition.offset = high
            else:
                start = high - max_history
                partition.offset = OFFSET_BEGINNING if start <= low else start
                state.history_end = high - 1
                self._history_pending.add(partition.topic)
        consumer.assign(partitions)
        self._assigned = True
        self.log.debug(
            "%s: assigned %s; history pending for %s",
            self._identity,
            [(p.topic, p.offset) for p in partitions],
            sorted(self._history_pending),
        )
        self._check_ready()

    def _watermarks(
        self, consumer: Consumer, partition: TopicPartition
    ) -> tuple[int, int]:
        backoff = Backoff(0.1, self.retry_max)
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    partition, timeout=REQUEST_TIMEOUT, cached=False
                )
                return int(low), int(high)
            except KafkaException as e:
                if self._stopping.is_set():
                    return 0, 0
                self._warnings.warning(
                    "watermarks",
                    f"{self._identity}: cannot read the end of {partition.topic}: {e}",
                )
            time.sleep(backoff.next())

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.log.debug("%s: partitions revoked: %s", self._identity, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.log.warning("%s: partitions lost: %s", self._identity, partitions)

    def _consumer_loop(self) -> None:
        assert self._consumer is not None
        backoff = Backoff(0.1, 1.0)
        while not self._stopping.is_set():
            try:
                messages = self._consumer.consume(
                    self.num_messages, self.consume_timeout
                )
            except Exception as e:
                self._warnings.warning(
                    "consume", f"{self._identity}: Kafka read failed: {e!r}"
                )
                self._stopping.wait(backoff.next())
                continue
            for message in messages:
                try:
                    if self._handle_message(message):
                        backoff.reset()
                    else:
                        self._stopping.wait(backoff.next())
                except Exception:
                    self.log.exception(
                        "%s: reading a Kafka record failed", self._identity
                    )

    def _handle_message(self, message: Message) -> bool:
        """Decode a record and route it; return False for a Kafka error."""
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return True
            self._warnings.warning(
                "consume", f"{self._identity}: Kafka read error: {error}"
            )
            return False
        kafka_name = message.topic() or ""
        state = self._read_states.get(kafka_name)
        if state is None:
            return True
        offset = message.offset() or 0
        data = self._decode(state, message)

        if state.history_end is None:
            if data is not None:
                self._post(state.topic, data, False)
            return True

        if data is not None:
            sal_index = data.get("salIndex", 0)
            if self._index == 0 or sal_index == self._index:
                state.stash[sal_index] = (offset, data)
        if offset >= state.history_end:
            for _, history_data in sorted(state.stash.values(), key=lambda od: od[0]):
                self._post(state.topic, history_data, True)
            state.stash.clear()
            state.history_end = None
            self._history_pending.discard(kafka_name)
            self._check_ready()
        return True

    def _decode(self, state: _ReadState, message: Message) -> dict[str, Any] | None:
        where = f"{message.topic()}[{message.offset()}]"
        try:
            schema_id, body = parse_frame(message.value())
        except FramingError as e:
            kind = "tombstone" if message.value() is None else "framing"
            self._warnings.warning(kind, f"{self._identity}: skipping {where}: {e}")
            return None
        if schema_id == state.schema_id:
            writer_schema, reader_schema = state.parsed_schema, None
        else:
            writer_schema = self._writer_schema(schema_id, where)
            if writer_schema is None:
                return None
            reader_schema = state.parsed_schema
        try:
            return decode_value(body, writer_schema, reader_schema)
        except ValueError as e:
            self._warnings.warning(
                "decode",
                f"{self._identity}: skipping {where} (schema id {schema_id}): {e}",
            )
            return None

    def _writer_schema(self, schema_id: int, where: str) -> Any | None:
        parsed = self._writer_schemas.get(schema_id)
        if parsed is not None:
            return parsed
        assert self._registry is not None
        backoff = Backoff(0.1)
        for _ in range(5):
            try:
                text = self._registry.get_schema_text(schema_id)
                parsed = fastavro.parse_schema(json.loads(text))
                self._writer_schemas[schema_id] = parsed
                return parsed
            except RegistryUnavailableError as e:
                self._warnings.warning("registry", f"{self._identity}: {e}")
                if self._stopping.wait(backoff.next()):
                    break
            except RegistryError as e:
                self._warnings.warning(
                    "schema id",
                    f"{self._identity}: skipping {where}: unknown schema id {schema_id}: {e}",
                )
                return None
            except Exception as e:
                self._warnings.warning(
                    "schema id",
                    f"{self._identity}: skipping {where}: bad schema {schema_id}: {e!r}",
                )
                return None
        self._warnings.warning(
            "registry", f"{self._identity}: skipping {where}: registry unreachable"
        )
        return None

    def _check_ready(self) -> None:
        if self._assigned and not self._history_pending and self._loop is not None:
            self._call_in_loop(self._set_ready)

    def _set_ready(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def _post(self, topic: TopicInfo, data: dict[str, Any], is_history: bool) -> None:
        self._call_in_loop(self._dispatch, topic, data, is_history)

    def _call_in_loop(self, func: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(func, *args)
        except RuntimeError:
            # The event loop is closed: nobody is left to deliver to.
            self._stopping.set()

    def _dispatch(
        self, topic: TopicInfo, data: dict[str, Any], is_history: bool
    ) -> None:
        if self._closed or self._on_record is None:
            return
        try:
            self._on_record(topic, data, is_history)
        except Exception:
            self.log.exception(
                "%s: on_record failed for %s", self._identity, topic.sal_name
            )

    # Producer

    def _producer_loop(self) -> None:
        assert self._producer is not None
        while not self._stopping.is_set():
            try:
                self._producer.poll(0.05)
            except Exception:
                self.log.exception("%s: Kafka producer poll failed", self._identity)
                self._stopping.wait(0.5)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._warnings.warning(
                "delivery",
                f"{self._identity}: delivery to {message.topic()} failed: {error}",
            )

    def _on_client_error(self, error: KafkaError) -> None:
        assert self.config is not None
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            text = f"{self._identity}: Kafka broker {self.config.broker_addr} unreachable: {error}"
        else:
            text = f"{self._identity}: Kafka client error: {error}"
        self._warnings.warning(f"client {error.code()}", text)

    async def write(self, topic: TopicInfo, data: dict[str, Any]) -> None:
        if self._closed or self._producer is None:
            raise RuntimeError("KafkaTransport is not running; cannot write")
        state = self._write_states.get(topic.sal_name)
        if state is None:
            raise RuntimeError(
                f"{topic.sal_name} is not a write topic of this transport"
            )
        value = encode_value(state.schema_id, state.parsed_schema, data)
        for _ in range(100):
            try:
                self._producer.produce(
                    state.kafka_name,
                    key=state.key,
                    value=value,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:
                # The local queue is full (broker slow or away): wait.
                await asyncio.sleep(0.05)
        raise RuntimeError(
            f"Kafka producer queue full; cannot write {state.kafka_name}"
        )

    async def flush(self, timeout: float = REQUEST_TIMEOUT) -> int:
        """Wait until every record written so far is delivered.

        Parameters
        ----------
        timeout : `float`
            Longest wait (seconds).

        Returns
        -------
        pending : `int`
            Records still not delivered (0 when all were).
        """
        if self._producer is None:
            return 0
        return int(await asyncio.to_thread(self._producer.flush, timeout))

    # Shut-down

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        self._threads.clear()

        # Leaving the group and flushing are independent: with the broker
        # away each waits for its timeout, so wait for both at once.
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        steps = []
        if consumer is not None:
            steps.append(asyncio.to_thread(self._close_consumer, consumer))
        if producer is not None:
            steps.append(asyncio.to_thread(self._close_producer, producer))
        await asyncio.gather(*steps)
        self._admin = None

    def _close_producer(self, producer: Producer) -> None:
        left = producer.flush(CLOSE_TIMEOUT)
        if left:
            self.log.warning(
                "%s: %d Kafka records not delivered at close", self._identity, left
            )

    def _close_consumer(self, consumer: Consumer) -> None:
        try:
            consumer.close()
        except Exception as e:
            self.log.warning(
                "%s: closing the Kafka consumer failed: %s", self._identity, e
            )
        if self._admin is None or not self.group_id:
            return
        try:
            futures = self._admin.delete_consumer_groups(
                [self.group_id], request_timeout=CLOSE_TIMEOUT
            )
            for future in futures.values():
                future.result(timeout=CLOSE_TIMEOUT + 1)
            self.log.debug(
                "%s: deleted consumer group %s", self._identity, self.group_id
            )
        except Exception as e:
            self.log.warning(
                "%s: could not delete consumer group %s: %s",
                self._identity,
                self.group_id,
                e,
            )
