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

"""Kafka settings from the environment, as salobj reads them."""

import pathlib

import pytest
from lsst.ts.ocps.sal.kafka_config import KafkaConfig


def test_defaults() -> None:
    config = KafkaConfig.from_env({"LSST_TOPIC_SUBNAME": "sal"})
    assert config.broker_addr == "broker:29092"
    assert config.registry_url == "http://schema-registry:8081"
    assert config.replication_factor == 1
    assert config.max_history_for("OCPS") == 500
    assert config.producer_config() == {
        "acks": "1",
        "queue.buffering.max.ms": 0,
        "bootstrap.servers": "broker:29092",
    }
    assert config.consumer_config("g") == {
        "group.id": "g",
        "allow.auto.create.topics": False,
        "auto.offset.reset": "earliest",
        "bootstrap.servers": "broker:29092",
    }


@pytest.mark.parametrize("environ", [{}, {"LSST_TOPIC_SUBNAME": ""}])
def test_subname_is_required(environ: dict[str, str]) -> None:
    with pytest.raises(RuntimeError, match="LSST_TOPIC_SUBNAME"):
        KafkaConfig.from_env(environ)


def test_security_needs_user_and_password() -> None:
    env = {"LSST_TOPIC_SUBNAME": "sal", "LSST_KAFKA_SECURITY_USERNAME": "u"}
    assert "sasl.username" not in KafkaConfig.from_env(env).broker_client_config()

    env["LSST_KAFKA_SECURITY_PASSWORD"] = "s3cret-pw"
    settings = KafkaConfig.from_env(env).admin_config()
    assert settings["security.protocol"] == "SASL_PLAINTEXT"
    assert settings["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (settings["sasl.username"], settings["sasl.password"]) == ("u", "s3cret-pw")
    assert "s3cret-pw" not in repr(KafkaConfig.from_env(env))

    env["LSST_KAFKA_SECURITY_PROTOCOL"] = "SASL_SSL"
    env["LSST_KAFKA_SECURITY_MECHANISM"] = "PLAIN"
    settings = KafkaConfig.from_env(env).producer_config()
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["sasl.mechanism"] == "PLAIN"


def test_configuration_files_merge_in_order(tmp_path: pathlib.Path) -> None:
    broker = tmp_path / "broker.yaml"
    broker.write_text("client.id: broker-wins\nacks: all\n")
    consumer = tmp_path / "consumer.yaml"
    consumer.write_text("client.id: consumer\nfetch.wait.max.ms: 10\n")
    producer = tmp_path / "producer.yaml"
    producer.write_text("acks: '0'\nlinger.ms: 3\n")
    env = {
        "LSST_TOPIC_SUBNAME": "sal",
        "LSST_KAFKA_BROKER_ADDR": "h:1",
        "LSST_KAFKA_PRODUCER_WAIT_ACKS": "-1",
        "LSST_KAFKA_BROKER_CLIENT_CONFIGURATION": str(broker),
        "LSST_KAFKA_CONSUMER_CONFIGURATION": str(consumer),
        "LSST_KAFKA_PRODUCER_CONFIGURATION": str(producer),
        "LSST_KAFKA_REPLICATION_FACTOR": "3",
    }
    config = KafkaConfig.from_env(env)
    assert config.replication_factor == 3
    consumer_settings = config.consumer_config("g")
    assert consumer_settings["client.id"] == "broker-wins"
    assert consumer_settings["fetch.wait.max.ms"] == 10
    assert consumer_settings["bootstrap.servers"] == "h:1"
    producer_settings = config.producer_config()
    assert producer_settings["acks"] == "all"
    assert producer_settings["linger.ms"] == 3


def test_history_read_settings(tmp_path: pathlib.Path) -> None:
    history = tmp_path / "history.yaml"
    history.write_text("OCPS: 20\nScheduler: 7\n")
    env = {
        "LSST_TOPIC_SUBNAME": "sal",
        "LSST_MAX_HISTORY_READ": "50",
        "LSST_HISTORY_READ_CONFIG": str(history),
    }
    config = KafkaConfig.from_env(env)
    assert config.max_history_for("OCPS") == 20
    assert config.max_history_for("ATDome") == 50

    # A missing file is ignored, as salobj does.
    env["LSST_HISTORY_READ_CONFIG"] = str(tmp_path / "absent.yaml")
    assert KafkaConfig.from_env(env).max_history_for("OCPS") == 50


def test_bad_settings(tmp_path: pathlib.Path) -> None:
    base = {"LSST_TOPIC_SUBNAME": "sal"}
    with pytest.raises(ValueError, match="LSST_MAX_HISTORY_READ='many'"):
        KafkaConfig.from_env({**base, "LSST_MAX_HISTORY_READ": "many"})

    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        KafkaConfig.from_env(
            {**base, "LSST_KAFKA_CONSUMER_CONFIGURATION": str(listing)}
        )

    with pytest.raises(ValueError, match="Cannot read"):
        KafkaConfig.from_env(
            {**base, "LSST_KAFKA_PRODUCER_CONFIGURATION": str(tmp_path / "no.yaml")}
        )

    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    with pytest.raises(ValueError, match="Cannot read"):
        KafkaConfig.from_env(
            {**base, "LSST_KAFKA_BROKER_CLIENT_CONFIGURATION": str(broken)}
        )

    history = tmp_path / "history.yaml"
    history.write_text("OCPS: lots\n")
    with pytest.raises(ValueError, match="component names to integers"):
        KafkaConfig.from_env({**base, "LSST_HISTORY_READ_CONFIG": str(history)})
