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

"""The Kafka transport on a real tansu broker and the registry stand-in."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import pathlib
import struct
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import fastavro
import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource
from lsst.ts.ocps.sal.interface import ComponentInfo, TopicInfo, get_component_info
from lsst.ts.ocps.sal.kafka_codec import make_key
from lsst.ts.ocps.sal.kafka_config import KafkaConfig
from lsst.ts.ocps.sal.kafka_transport import KafkaTransport
from lsst.ts.ocps.sal.schema_registry import SchemaRegistryClient
from lsst.ts.ocps.sal.transport import make_transport
from support.kafka import KafkaEnv, TansuBroker, free_port, set_kafka_env
from support.schema_registry_standin import SchemaRegistryStandIn

STD_TIMEOUT = 60
"""Guard on any single wait; never reached when things work (seconds)."""

AVRO_DIR = pathlib.Path(__file__).parents[2] / "shared" / "reference" / "sal" / "avro"

INFO = get_component_info()


class Endpoint:
    """A started transport and the records it delivered, in order."""

    def __init__(self, transport: KafkaTransport) -> None:
        self.transport = transport
        self.queue: asyncio.Queue[tuple[str, dict[str, Any], bool]] = asyncio.Queue()
        self.history: list[tuple[str, dict[str, Any]]] = []

    def on_record(
        self, topic: TopicInfo, data: dict[str, Any], is_history: bool
    ) -> None:
        if is_history:
            self.history.append((topic.sal_name, data))
        self.queue.put_nowait((topic.sal_name, data, is_history))

    async def start(
        self,
        *,
        index: int = 1,
        identity: str = "OCPS:1",
        write: Iterable[TopicInfo] = (),
        read: Iterable[TopicInfo] = (),
        history: Iterable[str] = (),
        component: ComponentInfo = INFO,
    ) -> None:
        """Start the transport, delivering what it reads to `on_record`."""
        await self.transport.start(
            component=component,
            index=index,
            identity=identity,
            write_topics=list(write),
            read_topics=list(read),
            history_topics=list(history),
            on_record=self.on_record,
        )

    async def next(self) -> tuple[str, dict[str, Any], bool]:
        return await asyncio.wait_for(self.queue.get(), STD_TIMEOUT)

    async def write(self, sal_name: str, **fields: Any) -> dict[str, Any]:
        topic = INFO.topics[sal_name]
        data = topic.make_data(**fields)
        await self.transport.write(topic, data)
        # Wait until the broker has it, so that readers started next find
        # it before their start position.
        assert await self.transport.flush() == 0
        return data


EndpointFactory = Callable[..., Any]


@pytest.fixture
async def make_endpoint(kafka_env: KafkaEnv) -> AsyncIterator[EndpointFactory]:
    endpoints: list[Endpoint] = []

    async def make(
        *,
        index: int = 1,
        identity: str = "OCPS:1",
        write: Iterable[TopicInfo] = (),
        read: Iterable[TopicInfo] = (),
        history: Iterable[str] = (),
        component: ComponentInfo = INFO,
        **kwargs: Any,
    ) -> Endpoint:
        endpoint = Endpoint(KafkaTransport(**kwargs))
        endpoints.append(endpoint)
        await asyncio.wait_for(
            endpoint.start(
                index=index,
                identity=identity,
                write=write,
                read=read,
                history=history,
                component=component,
            ),
            STD_TIMEOUT,
        )
        return endpoint

    yield make
    for endpoint in endpoints:
        await endpoint.transport.close()


async def make_csc(make_endpoint: EndpointFactory, index: int = 1) -> Endpoint:
    return await make_endpoint(
        index=index,
        identity=f"OCPS:{index}",
        write=[*INFO.events.values(), INFO.ackcmd],
        read=INFO.commands.values(),
    )


async def make_remote(
    make_endpoint: EndpointFactory, index: int = 1, history: bool = True
) -> Endpoint:
    return await make_endpoint(
        index=index,
        identity="user@host",
        write=INFO.commands.values(),
        read=[*INFO.events.values(), INFO.ackcmd],
        history=INFO.events if history else (),
    )


def sample_fields(topic: TopicInfo, index: int, n: int = 1) -> dict[str, Any]:
    """Distinct non-default values for every field of a topic."""
    values: dict[str, Any] = {}
    for i, field in enumerate(topic.all_fields):
        kind = field.avro_type
        if field.name == "salIndex":
            values[field.name] = index
        elif kind == "string":
            values[field.name] = f"{topic.sal_name}.{field.name}#{n} é"
        elif kind == "int":
            values[field.name] = -(i + 1) * 1000 * n if i % 2 else (i + 1) * n
        elif kind in ("double", "float"):
            values[field.name] = 1.5 * (i + 1) * n
        elif kind == "boolean":
            values[field.name] = True
        else:
            raise AssertionError(f"no sample for {kind}")
    return values


def raw_records(broker_addr: str, kafka_name: str) -> list[Any]:
    """Every record of a topic, read with a plain consumer."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker_addr,
            "group.id": f"raw-{kafka_name}",
            "fetch.wait.max.ms": 10,
            "enable.auto.commit": False,
        }
    )
    try:
        partition = TopicPartition(kafka_name, 0)
        _, high = consumer.get_watermark_offsets(partition, timeout=10, cached=False)
        partition.offset = OFFSET_BEGINNING
        consumer.assign([partition])
        records: list[Any] = []
        while not records or records[-1].offset() < high - 1:
            message = consumer.poll(STD_TIMEOUT)
            assert message is not None, f"timed out reading {kafka_name}"
            assert message.error() is None, message.error()
            records.append(message)
        return records
    finally:
        consumer.close()


def produce_raw(broker_addr: str, kafka_name: str, *values: bytes | None) -> None:
    producer = Producer({"bootstrap.servers": broker_addr, "queue.buffering.max.ms": 0})
    for value in values:
        producer.produce(kafka_name, key=b"raw", value=value)
        assert producer.flush(STD_TIMEOUT) == 0


async def test_round_trip_of_every_topic(make_endpoint: EndpointFactory) -> None:
    csc = await make_csc(make_endpoint, index=3)
    remote = await make_remote(make_endpoint, index=3)

    for n, topic in enumerate(INFO.topics.values(), 1):
        fields = sample_fields(topic, index=3, n=n)
        sender, receiver = (
            (remote, csc) if topic.category == "command" else (csc, remote)
        )
        written = await sender.write(topic.sal_name, **fields)
        sal_name, data, is_history = await receiver.next()
        assert (sal_name, is_history) == (topic.sal_name, False)
        assert data == written
        assert list(data) == list(topic.field_names)
    assert csc.queue.empty() and remote.queue.empty()


async def test_keys_framing_and_registry_ids(
    make_endpoint: EndpointFactory, kafka_env: KafkaEnv
) -> None:
    csc = await make_csc(make_endpoint, index=5)
    written = await csc.write(
        "logevent_summaryState",
        **sample_fields(INFO.topics["logevent_summaryState"], index=5),
    )
    await csc.write("ackcmd", salIndex=5, ack=301, result='{"job_id": "abc"}')

    for sal_name in ("logevent_summaryState", "ackcmd"):
        topic = INFO.topics[sal_name]
        kafka_name = topic.kafka_topic_name(kafka_env.topic_subname)
        (record,) = raw_records(kafka_env.broker_addr, kafka_name)
        assert record.key() == (
            b'{ "name": "OCPS", "index": 5, "topic": "' + sal_name.encode() + b'" }'
        )
        assert record.headers() is None
        value = record.value()
        magic, schema_id = struct.unpack(">bI", value[:5])
        assert magic == 0
        subject = topic.avro_subject(kafka_env.topic_subname)
        assert kafka_env.registry.subject_versions(subject) == [schema_id]
        assert csc.transport.schema_ids[sal_name] == schema_id
        registered = json.loads(kafka_env.registry.schema_text(schema_id))
        decoded = fastavro.schemaless_reader(
            io.BytesIO(value[5:]), fastavro.parse_schema(registered), None
        )
        assert isinstance(decoded, dict)
        assert decoded["salIndex"] == 5
        if sal_name == "logevent_summaryState":
            assert decoded == written


async def test_registered_text_is_what_salobj_registers(
    make_endpoint: EndpointFactory, kafka_env: KafkaEnv
) -> None:
    await make_csc(make_endpoint)
    for sal_name, topic in INFO.topics.items():
        with (AVRO_DIR / f"OCPS_{sal_name}.json").open() as f:
            reference = json.load(f)
        (schema_id,) = kafka_env.registry.subject_versions(
            topic.avro_subject(kafka_env.topic_subname)
        )
        assert kafka_env.registry.schema_text(schema_id) == json.dumps(reference)


async def test_topic_creation_config(
    make_endpoint: EndpointFactory, kafka_env: KafkaEnv
) -> None:
    await make_csc(make_endpoint)
    # A second endpoint finds the topics there: TOPIC_ALREADY_EXISTS is fine.
    await make_remote(make_endpoint)

    admin = AdminClient({"bootstrap.servers": kafka_env.broker_addr})
    metadata = admin.list_topics(timeout=10)
    names = {
        t.kafka_topic_name(kafka_env.topic_subname): t for t in INFO.topics.values()
    }
    resources = [ConfigResource("topic", name) for name in names]
    configs = {
        resource.name: future.result(timeout=10)
        for resource, future in admin.describe_configs(resources).items()
    }
    for name, topic in names.items():
        assert len(metadata.topics[name].partitions) == 1
        entry = configs[name].get("cleanup.policy")
        if topic.category == "event":
            assert entry is not None and entry.value == "compact", name
        else:
            # Broker default (tansu reports no entry when none was set).
            assert entry is None or entry.value == "delete", name


async def test_history_for_late_joiners(
    make_endpoint: EndpointFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers = {index: await make_csc(make_endpoint, index=index) for index in (1, 2, 7)}
    for state in (5, 1, 2):
        await writers[1].write("logevent_summaryState", salIndex=1, summaryState=state)
    await writers[2].write("logevent_summaryState", salIndex=2, summaryState=3)
    await writers[7].write("logevent_summaryState", salIndex=7, summaryState=4)
    await writers[1].write("logevent_logLevel", salIndex=1, level=20)
    await writers[1].write("logevent_summaryState", salIndex=1, summaryState=1)

    # Index 0 reads all: the latest per salIndex, in offset order, all
    # delivered before start returns; logLevel was not asked for.
    everyone = await make_endpoint(
        index=0,
        identity="me@host",
        read=[INFO.topics["logevent_summaryState"], INFO.topics["logevent_logLevel"]],
        history=["logevent_summaryState"],
    )
    assert [(n, d["salIndex"], d["summaryState"]) for n, d in everyone.history] == [
        ("logevent_summaryState", 2, 3),
        ("logevent_summaryState", 7, 4),
        ("logevent_summaryState", 1, 1),
    ]

    # A reader of one index gets only that index's latest.
    one = await make_remote(make_endpoint, index=2)
    assert [(n, d["salIndex"]) for n, d in one.history] == [
        ("logevent_summaryState", 2),
    ]

    # A short look-back misses indices whose latest is older.
    monkeypatch.setenv("LSST_MAX_HISTORY_READ", "2")
    short = await make_endpoint(
        index=0,
        identity="me@host",
        read=[INFO.topics["logevent_summaryState"]],
        history=["logevent_summaryState"],
    )
    assert [(d["salIndex"], d["summaryState"]) for _, d in short.history] == [
        (7, 4),
        (1, 1),
    ]

    # Live records follow, flagged as not history.
    await writers[2].write("logevent_summaryState", salIndex=2, summaryState=5)
    for endpoint in (everyone, one, short):
        while True:
            sal_name, data, is_history = await endpoint.next()
            if not is_history:
                break
        assert (sal_name, data["salIndex"], data["summaryState"]) == (
            "logevent_summaryState",
            2,
            5,
        )


async def test_command_readers_start_at_the_end(make_endpoint: EndpointFactory) -> None:
    remote = await make_remote(make_endpoint, history=False)
    await remote.write("command_start", salIndex=1, private_seqNum=1)
    await remote.write("command_enable", salIndex=1, private_seqNum=2)
    await remote.write("command_start", salIndex=1, private_seqNum=3)

    # A (re)started CSC never sees old commands.
    csc = await make_csc(make_endpoint)
    await remote.write("command_start", salIndex=1, private_seqNum=4)
    sal_name, data, is_history = await csc.next()
    assert (sal_name, data["private_seqNum"], is_history) == ("command_start", 4, False)

    # Likewise a Remote's ackcmd reader.
    await csc.write("ackcmd", salIndex=1, private_seqNum=4, ack=303)
    late = await make_remote(make_endpoint, history=False)
    await csc.write("ackcmd", salIndex=1, private_seqNum=5, ack=303)
    sal_name, data, _ = await late.next()
    assert (sal_name, data["private_seqNum"]) == ("ackcmd", 5)


async def test_bad_records_are_skipped(
    make_endpoint: EndpointFactory,
    kafka_env: KafkaEnv,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "ocps.sal.kafka")
    csc = await make_endpoint(
        identity="OCPS:1",
        write=[INFO.topics["logevent_logMessage"]],
        read=INFO.commands.values(),
        warning_interval=0.0,
    )
    remote = await make_remote(make_endpoint)
    topic = INFO.topics["command_start"]
    kafka_name = topic.kafka_topic_name(kafka_env.topic_subname)
    own_id = csc.transport.schema_ids["command_start"]
    other_id = csc.transport.schema_ids["logevent_logMessage"]
    good = fastavro_bytes(
        topic, salIndex=1, private_seqNum=9, configurationOverride="ok"
    )

    produce_raw(
        kafka_env.broker_addr,
        kafka_name,
        b"not framed at all",
        None,
        b"\x00\x00",
        struct.pack(">bI", 0, 999_999) + good,
        struct.pack(">bI", 0, own_id) + good[:7],
        struct.pack(">bI", 0, own_id) + good + b"\x02extra",
        struct.pack(">bI", 0, other_id) + good,
        b"\x01" + struct.pack(">I", own_id) + good,
    )
    await remote.write(
        "command_start", salIndex=1, private_seqNum=10, configurationOverride="x"
    )

    sal_name, data, _ = await csc.next()
    assert (sal_name, data["private_seqNum"]) == ("command_start", 10)
    assert csc.queue.empty()
    text = caplog.text
    for expected in (
        "[0]: magic byte 110 is not 0",
        "[1]: null value (tombstone)",
        "[2]: value of 2 bytes is too short",
        "[3]: unknown schema id 999999",
        "[4] (schema id %d): Avro decoding failed" % own_id,
        "[5] (schema id %d): 6 bytes left after the record" % own_id,
        "[6] (schema id %d): Avro decoding failed" % other_id,
        "[7]: magic byte 1 is not 0",
    ):
        assert expected in text, expected

    # The loop lives on.
    await remote.write("command_enable", salIndex=1, private_seqNum=11)
    sal_name, data, _ = await csc.next()
    assert (sal_name, data["private_seqNum"]) == ("command_enable", 11)


def fastavro_bytes(topic: TopicInfo, **fields: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(
        buffer, fastavro.parse_schema(topic.avro_schema()), topic.make_data(**fields)
    )
    return buffer.getvalue()


async def test_bad_last_record_does_not_stall_history(
    make_endpoint: EndpointFactory, kafka_env: KafkaEnv
) -> None:
    csc = await make_csc(make_endpoint)
    await csc.write("logevent_summaryState", salIndex=1, summaryState=2)
    kafka_name = INFO.topics["logevent_summaryState"].kafka_topic_name(
        kafka_env.topic_subname
    )
    produce_raw(kafka_env.broker_addr, kafka_name, None, b"garbage")

    remote = await make_remote(make_endpoint)
    assert [(n, d["summaryState"]) for n, d in remote.history] == [
        ("logevent_summaryState", 2)
    ]


async def test_broker_down_at_start(
    schema_registry: SchemaRegistryStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "ocps.sal.kafka")
    broker = TansuBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    set_kafka_env(monkeypatch, broker.bootstrap, schema_registry.url, tmp_path)
    # librdkafka backs off up to 10 s between reconnects by default; the
    # broker-client file (applied to every client) shortens that here.
    client_config = tmp_path / "broker_client.yaml"
    client_config.write_text("reconnect.backoff.max.ms: 200\n")
    monkeypatch.setenv("LSST_KAFKA_BROKER_CLIENT_CONFIGURATION", str(client_config))
    csc = Endpoint(KafkaTransport(retry_initial=0.05, retry_max=0.2))
    remote = Endpoint(KafkaTransport(retry_initial=0.05, retry_max=0.2))
    try:
        start = asyncio.create_task(
            csc.start(write=INFO.events.values(), read=INFO.commands.values())
        )
        while "retrying" not in caplog.text:
            assert not start.done(), start
            await asyncio.sleep(0.05)
        assert "Creating Kafka topics failed (attempt 1)" in caplog.text

        broker.start()
        await asyncio.wait_for(start, STD_TIMEOUT)
        await remote.start(identity="me@host", write=INFO.commands.values())
        await remote.write("command_standby", salIndex=1, private_seqNum=1)
        sal_name, _, _ = await csc.next()
        assert sal_name == "command_standby"
    finally:
        await csc.transport.close()
        await remote.transport.close()
        broker.stop()


async def test_broker_goes_away(
    schema_registry: SchemaRegistryStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "ocps.sal.kafka")
    broker = TansuBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    set_kafka_env(monkeypatch, broker.bootstrap, schema_registry.url, tmp_path)
    csc = Endpoint(KafkaTransport())
    try:
        await csc.start(write=INFO.events.values(), read=INFO.commands.values())
        broker.stop()
        # Writing while the broker is away queues the record; no error.
        topic = INFO.topics["logevent_heartbeat"]
        await csc.transport.write(topic, topic.make_data(salIndex=1))
        while "unreachable" not in caplog.text:
            await asyncio.sleep(0.05)
        assert "Kafka broker 127.0.0.1" in caplog.text
    finally:
        await csc.transport.close()
        broker.stop()


async def test_close_deletes_the_consumer_group(
    make_endpoint: EndpointFactory,
    kafka_env: KafkaEnv,
    caplog: pytest.LogCaptureFixture,
) -> None:
    csc = await make_csc(make_endpoint)
    group_id = csc.transport.group_id
    assert group_id.startswith("OCPS:1-") and len(group_id) == len("OCPS:1-") + 16
    remote = await make_remote(make_endpoint)
    assert remote.transport.group_id.startswith("user@host-OCPS:1-")

    admin = AdminClient({"bootstrap.servers": kafka_env.broker_addr})

    def state() -> ConsumerGroupState:
        (future,) = admin.describe_consumer_groups([group_id]).values()
        return future.result(timeout=10).state

    assert state() == ConsumerGroupState.STABLE
    caplog.set_level(logging.DEBUG, "ocps.sal.kafka")
    await csc.transport.close()
    await csc.transport.close()
    # tansu lists no groups and describes deleted ones as EMPTY, so the
    # deletion is checked through the admin call's successful result.
    assert state() in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)
    assert f"deleted consumer group {group_id}" in caplog.text
    with pytest.raises(RuntimeError, match="not running"):
        await csc.write("logevent_heartbeat", salIndex=1)


async def test_bad_writes_raise_clear_errors(make_endpoint: EndpointFactory) -> None:
    csc = await make_csc(make_endpoint)
    topic = INFO.topics["logevent_summaryState"]
    data = topic.make_data(salIndex=1)
    data["summaryState"] = "five"
    with pytest.raises(ValueError, match="does not fit schema"):
        await csc.transport.write(topic, data)
    del data["summaryState"]
    with pytest.raises(ValueError, match="does not fit schema"):
        await csc.transport.write(topic, data)
    with pytest.raises(RuntimeError, match="not a write topic"):
        await csc.transport.write(
            INFO.topics["command_start"], INFO.topics["command_start"].make_data()
        )


async def test_make_transport_picks_kafka(kafka_env: KafkaEnv) -> None:
    assert isinstance(make_transport(), KafkaTransport)
    config = KafkaConfig.from_env()
    assert config.broker_addr == kafka_env.broker_addr
    assert config.consumer_settings["session.timeout.ms"] == 2000


def test_key_layouts() -> None:
    assert make_key("OCPS", 0, "command_start") == (
        '{ "name": "OCPS", "index": 0, "topic": "command_start" }'
    )
    assert make_key("ATDome", None, "logevent_summaryState") == (
        '{ "name": "ATDome", "topic": "logevent_summaryState" }'
    )
    assert make_key("ATDome", None, "position") == ""


async def test_records_of_other_schema_versions_resolve(
    make_endpoint: EndpointFactory, kafka_env: KafkaEnv
) -> None:
    remote = await make_remote(make_endpoint)
    topic = INFO.topics["logevent_job_result"]
    subject = topic.avro_subject(kafka_env.topic_subname)
    kafka_name = topic.kafka_topic_name(kafka_env.topic_subname)

    # A newer writer with an extra field, and an older one lacking
    # "result": the reader gets exactly its own fields either way.
    newer = topic.avro_schema()
    newer["fields"].append(
        {
            "name": "host",
            "type": "string",
            "default": "",
            "description": "",
            "units": "",
        }
    )
    older = topic.avro_schema()
    older["fields"] = [f for f in older["fields"] if f["name"] != "result"]
    client = SchemaRegistryClient(kafka_env.registry_url)
    values = []
    for schema, extra in ((newer, {"host": "h"}), (older, {})):
        schema_id = client.register(subject, json.dumps(schema))
        assert schema_id != remote.transport.schema_ids["logevent_job_result"]
        data = topic.make_data(salIndex=1, job_id="j", exit_code=3)
        data.update(extra)
        if schema is older:
            del data["result"]
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), data)
        values.append(struct.pack(">bI", 0, schema_id) + buffer.getvalue())
    produce_raw(kafka_env.broker_addr, kafka_name, *values)

    for _ in values:
        sal_name, data, _ = await remote.next()
        assert sal_name == "logevent_job_result"
        assert data == topic.make_data(salIndex=1, job_id="j", exit_code=3)


async def test_registry_down_at_start(
    kafka_broker: TansuBroker,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "ocps.sal.kafka")
    port = free_port()
    set_kafka_env(
        monkeypatch, kafka_broker.bootstrap, f"http://127.0.0.1:{port}", tmp_path
    )
    csc = Endpoint(KafkaTransport(retry_initial=0.05, retry_max=0.2))
    registry = SchemaRegistryStandIn(port=port)
    try:
        start = asyncio.create_task(
            csc.start(write=[INFO.ackcmd], read=[INFO.topics["command_enable"]])
        )
        while "retrying" not in caplog.text:
            assert not start.done(), start
            await asyncio.sleep(0.05)
        assert "Registering the schema of" in caplog.text
        assert f"Schema registry http://127.0.0.1:{port} unreachable" in caplog.text

        registry.start()
        await asyncio.wait_for(start, STD_TIMEOUT)
        subname = os.environ["LSST_TOPIC_SUBNAME"]
        assert len(registry.subject_versions(INFO.ackcmd.avro_subject(subname))) == 1
    finally:
        await csc.transport.close()
        registry.stop()


async def test_refused_schema_fails_start(
    make_endpoint: EndpointFactory, kafka_env: KafkaEnv
) -> None:
    # The stand-in refuses a schema that is not Avro, as a real registry
    # refuses an incompatible one: start fails with the subject named.
    topic = INFO.topics["logevent_heartbeat"]
    broken = BrokenTopic(
        **{f.name: getattr(topic, f.name) for f in dataclasses.fields(topic)}
    )
    with pytest.raises(
        RuntimeError, match="refused the schema of .*logevent_heartbeat"
    ):
        await make_endpoint(write=[broken])


@dataclasses.dataclass(frozen=True)
class BrokenTopic(TopicInfo):
    """A topic whose schema no registry accepts."""

    def avro_schema(self) -> dict[str, Any]:
        return {"type": "record", "name": "x", "fields": [{"name": "a", "type": "no"}]}


async def test_history_after_a_burst(make_endpoint: EndpointFactory) -> None:
    # Records written back to back (no flush in between) may share a
    # produce batch; the late joiner must still get the newest one.
    csc = await make_csc(make_endpoint)
    topic = INFO.topics["logevent_summaryState"]
    for state in range(1, 31):
        await csc.transport.write(
            topic, topic.make_data(salIndex=1, summaryState=state)
        )
    assert await csc.transport.flush() == 0

    remote = await make_remote(make_endpoint)
    assert [(n, d["summaryState"]) for n, d in remote.history] == [
        ("logevent_summaryState", 30)
    ]
