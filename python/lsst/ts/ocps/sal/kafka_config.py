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

"""Kafka and schema-registry settings read from the environment."""

from __future__ import annotations

__all__ = ["KafkaConfig"]

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import yaml

DEFAULT_BROKER_ADDR = "broker:29092"
"""``LSST_KAFKA_BROKER_ADDR`` when unset (salobj's default)."""

DEFAULT_REGISTRY_URL = "http://schema-registry:8081"
"""``LSST_SCHEMA_REGISTRY_URL`` when unset (salobj's default)."""

DEFAULT_MAX_HISTORY_READ = 500
"""How many records back an indexed component's history reader starts."""


def _read_yaml_mapping(variable: str, path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"Cannot read ${variable} file {path!r}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"${variable} file {path!r} must hold a mapping, not {data!r}")
    return dict(data)


@dataclasses.dataclass(frozen=True)
class KafkaConfig:
    """What the Kafka transport needs to know, as salobj reads it.

    Parameters
    ----------
    topic_subname : `str`
        ``LSST_TOPIC_SUBNAME``: second part of every topic name.
    broker_addr : `str`
        ``LSST_KAFKA_BROKER_ADDR``: librdkafka ``bootstrap.servers``.
    registry_url : `str`
        ``LSST_SCHEMA_REGISTRY_URL``.
    replication_factor : `int`
        ``LSST_KAFKA_REPLICATION_FACTOR``, for topics this process creates.
    producer_wait_acks : `str`
        ``LSST_KAFKA_PRODUCER_WAIT_ACKS``: producer ``acks``.
    security_username, security_password : `str` or `None`
        ``LSST_KAFKA_SECURITY_USERNAME`` / ``_PASSWORD``; SASL is used only
        when both are set.
    security_protocol : `str`
        ``LSST_KAFKA_SECURITY_PROTOCOL``.
    security_mechanism : `str`
        ``LSST_KAFKA_SECURITY_MECHANISM``.
    broker_client_settings : `dict` [`str`, `typing.Any`]
        Contents of ``LSST_KAFKA_BROKER_CLIENT_CONFIGURATION``: applied last
        to admin, producer and consumer.
    consumer_settings : `dict` [`str`, `typing.Any`]
        Contents of ``LSST_KAFKA_CONSUMER_CONFIGURATION``.
    producer_settings : `dict` [`str`, `typing.Any`]
        Contents of ``LSST_KAFKA_PRODUCER_CONFIGURATION``.
    max_history_read : `int`
        ``LSST_MAX_HISTORY_READ``.
    history_read_config : `dict` [`str`, `int`]
        Contents of ``LSST_HISTORY_READ_CONFIG``: per-component overrides
        of ``max_history_read``.
    """

    topic_subname: str
    broker_addr: str = DEFAULT_BROKER_ADDR
    registry_url: str = DEFAULT_REGISTRY_URL
    replication_factor: int = 1
    producer_wait_acks: str = "1"
    security_username: str | None = None
    security_password: str | None = dataclasses.field(default=None, repr=False)
    security_protocol: str = "SASL_PLAINTEXT"
    security_mechanism: str = "SCRAM-SHA-512"
    broker_client_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    consumer_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    producer_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    max_history_read: int = DEFAULT_MAX_HISTORY_READ
    history_read_config: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaConfig:
        """Read the configuration from environment variables.

        Parameters
        ----------
        environ : `~collections.abc.Mapping` [`str`, `str`], optional
            The environment; `os.environ` if omitted.

        Returns
        -------
        config : `KafkaConfig`
            The configuration.

        Raises
        ------
        RuntimeError
            If ``LSST_TOPIC_SUBNAME`` is missing or empty.
        ValueError
            If a number is not a number, or a configuration file named by
            a variable cannot be read or is not a mapping.
        """
        env = os.environ if environ is None else environ
        subname = env.get("LSST_TOPIC_SUBNAME", "")
        if not subname:
            raise RuntimeError(
                "You must define environment variable LSST_TOPIC_SUBNAME"
            )

        def yaml_var(variable: str) -> dict[str, Any]:
            path = env.get(variable, "")
            return _read_yaml_mapping(variable, path) if path else {}

        def int_var(variable: str, default: int) -> int:
            text = env.get(variable, "")
            try:
                return int(text) if text else default
            except ValueError:
                raise ValueError(f"${variable}={text!r} is not an integer") from None

        history_read_config: dict[str, int] = {}
        history_path = env.get("LSST_HISTORY_READ_CONFIG", "")
        if history_path and pathlib.Path(history_path).is_file():
            raw = _read_yaml_mapping("LSST_HISTORY_READ_CONFIG", history_path)
            try:
                history_read_config = {str(k): int(v) for k, v in raw.items()}
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"$LSST_HISTORY_READ_CONFIG file {history_path!r} must map "
                    f"component names to integers: {e}"
                ) from e

        return cls(
            topic_subname=subname,
            broker_addr=env.get("LSST_KAFKA_BROKER_ADDR") or DEFAULT_BROKER_ADDR,
            registry_url=env.get("LSST_SCHEMA_REGISTRY_URL") or DEFAULT_REGISTRY_URL,
            replication_factor=int_var("LSST_KAFKA_REPLICATION_FACTOR", 1),
            producer_wait_acks=env.get("LSST_KAFKA_PRODUCER_WAIT_ACKS") or "1",
            security_username=env.get("LSST_KAFKA_SECURITY_USERNAME") or None,
            security_password=env.get("LSST_KAFKA_SECURITY_PASSWORD") or None,
            security_protocol=env.get("LSST_KAFKA_SECURITY_PROTOCOL")
            or "SASL_PLAINTEXT",
            security_mechanism=env.get("LSST_KAFKA_SECURITY_MECHANISM")
            or "SCRAM-SHA-512",
            broker_client_settings=yaml_var("LSST_KAFKA_BROKER_CLIENT_CONFIGURATION"),
            consumer_settings=yaml_var("LSST_KAFKA_CONSUMER_CONFIGURATION"),
            producer_settings=yaml_var("LSST_KAFKA_PRODUCER_CONFIGURATION"),
            max_history_read=int_var("LSST_MAX_HISTORY_READ", DEFAULT_MAX_HISTORY_READ),
            history_read_config=history_read_config,
        )

    def broker_client_config(self) -> dict[str, Any]:
        """Return the settings every client gets, applied last.

        Returns
        -------
        settings : `dict` [`str`, `typing.Any`]
            ``bootstrap.servers``, SASL settings when both user name and
            password are set, then the broker-client file's settings.
        """
        settings: dict[str, Any] = {"bootstrap.servers": self.broker_addr}
        if self.security_username and self.security_password:
            settings.update(
                {
                    "security.protocol": self.security_protocol,
                    "sasl.mechanism": self.security_mechanism,
                    "sasl.username": self.security_username,
                    "sasl.password": self.security_password,
                }
            )
        settings.update(self.broker_client_settings)
        return settings

    def admin_config(self) -> dict[str, Any]:
        """Return the admin client settings.

        Returns
        -------
        settings : `dict` [`str`, `typing.Any`]
            The broker-client settings.
        """
        return self.broker_client_config()

    def producer_config(self) -> dict[str, Any]:
        """Return the producer settings.

        Returns
        -------
        settings : `dict` [`str`, `typing.Any`]
            ``acks`` and no buffering delay, then the producer file, then
            the broker-client settings.
        """
        settings: dict[str, Any] = {
            "acks": self.producer_wait_acks,
            "queue.buffering.max.ms": 0,
        }
        settings.update(self.producer_settings)
        settings.update(self.broker_client_config())
        return settings

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        """Return the consumer settings.

        Parameters
        ----------
        group_id : `str`
            The consumer group, unique per endpoint.

        Returns
        -------
        settings : `dict` [`str`, `typing.Any`]
            Group, no topic auto-creation, ``earliest`` reset, then the
            consumer file, then the broker-client settings.
        """
        settings: dict[str, Any] = {
            "group.id": group_id,
            "allow.auto.create.topics": False,
            "auto.offset.reset": "earliest",
        }
        settings.update(self.consumer_settings)
        settings.update(self.broker_client_config())
        return settings

    def max_history_for(self, component: str) -> int:
        """Return how far back an indexed component's history reads start.

        Parameters
        ----------
        component : `str`
            Component name.

        Returns
        -------
        count : `int`
            The ``LSST_HISTORY_READ_CONFIG`` entry for the component if
            there is one, else ``LSST_MAX_HISTORY_READ``.
        """
        return self.history_read_config.get(component, self.max_history_read)
