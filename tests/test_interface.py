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

"""The OCPS interface and its Avro schemas against the ts_xml reference."""

import json
import pathlib
from typing import Any

import fastavro
import pytest
import yaml
from lsst.ts.ocps.sal import avro_schema
from lsst.ts.ocps.sal.interface import (
    DATA_DIR,
    get_component_info,
    read_component_info,
)

REFERENCE_DIR = pathlib.Path(__file__).parents[2] / "shared" / "reference"
AVRO_DIR = REFERENCE_DIR / "sal" / "avro"

PRIVATE_FIELD_NAMES = (
    "private_sndStamp",
    "private_rcvStamp",
    "private_efdStamp",
    "private_kafkaStamp",
    "private_seqNum",
    "private_revCode",
    "private_identity",
    "private_origin",
)


def load_reference(name: str) -> Any:
    path = AVRO_DIR / name
    assert (
        path.is_file()
    ), f"reference file {path} missing: shared/ must sit next to the repo"
    with path.open() as f:
        return json.load(f)


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    return load_reference("OCPS_topic_summary.json")


def reference_sal_names() -> list[str]:
    return sorted(
        path.stem.removeprefix("OCPS_")
        for path in AVRO_DIR.glob("OCPS_*.json")
        if path.name != "OCPS_topic_summary.json"
    )


def test_topic_list_matches_reference(summary: dict[str, Any]) -> None:
    info = get_component_info()
    assert info.name == "OCPS"
    assert info.indexed
    assert list(info.topics) == sorted(summary)
    assert list(info.topics) == reference_sal_names()
    assert len(info.topics) == 21
    assert list(info.commands) == [
        f"command_{name}"
        for name in (
            "abort_job",
            "disable",
            "enable",
            "execute",
            "exitControl",
            "setLogLevel",
            "standby",
            "start",
        )
    ]
    assert len(info.events) == 12
    assert info.telemetry == {}
    assert info.ackcmd.sal_name == "ackcmd"
    assert "setAuthList" not in "".join(info.topics)
    assert "authList" not in "".join(info.topics)


@pytest.mark.parametrize("sal_name", reference_sal_names())
def test_schema_equals_reference(sal_name: str) -> None:
    expected = load_reference(f"OCPS_{sal_name}.json")
    topic = get_component_info().topics[sal_name]
    schema = topic.avro_schema()

    # Whole dict, then every key order, then the exact registered text.
    assert schema == expected
    assert list(schema) == list(expected)
    for field, expected_field in zip(schema["fields"], expected["fields"], strict=True):
        assert list(field) == list(expected_field)
    assert json.dumps(schema) == json.dumps(expected)
    assert avro_schema.schema_text(schema) == json.dumps(expected)

    # Every schema is one fastavro accepts.
    fastavro.parse_schema(schema)


@pytest.mark.parametrize("sal_name", reference_sal_names())
def test_topic_facts_match_summary(sal_name: str, summary: dict[str, Any]) -> None:
    expected = summary[sal_name]
    topic = get_component_info().topics[sal_name]
    assert topic.attr_name == expected["attr_name"]
    assert topic.kafka_topic_name("sal") == expected["kafka_name"]
    assert topic.avro_subject("sal") == expected["avro_subject"]
    assert topic.rev_code() == expected["revcode"]
    assert topic.cmdtype == expected["cmdtype"]
    assert expected["partitions"] == 1
    fields = [
        [field.name, field.avro_type, field.default] for field in topic.all_fields
    ]
    assert fields == expected["fields"]


def test_field_order_and_types() -> None:
    info = get_component_info()
    for topic in info.topics.values():
        names = topic.field_names
        assert names[0] == "salIndex"
        assert names[1:9] == PRIVATE_FIELD_NAMES
        assert topic.fields == topic.all_fields[9:]
    # SAL "long" is an Avro int: a long here breaks registry compatibility.
    execute = info.topics["command_execute"]
    assert execute.standard_fields[0].avro_type == "int"
    types = {f.name: f.avro_type for f in info.topics["logevent_logMessage"].all_fields}
    assert types["lineNumber"] == "int"
    assert types["process"] == "int"
    assert types["private_origin"] == "int"
    assert types["timestamp"] == "double"


def test_kafka_names_use_the_subname() -> None:
    topic = get_component_info().topics["logevent_job_result"]
    assert (
        topic.kafka_topic_name("test_abc") == "lsst.test_abc.OCPS.logevent_job_result"
    )
    assert topic.avro_subject("x") == "lsst.x.OCPS.logevent_job_result-value"
    # The schema namespace does not depend on the subname.
    assert topic.avro_schema()["namespace"] == "lsst.sal.OCPS"


def test_categories_and_attr_names() -> None:
    info = get_component_info()
    assert info.topics["ackcmd"].category == "ackcmd"
    assert info.topics["command_execute"].category == "command"
    assert info.topics["logevent_job_id"].category == "event"
    assert info.topics_by_attr_name["evt_job_id"] is info.topics["logevent_job_id"]
    assert info.topics_by_attr_name["ack_ackcmd"] is info.ackcmd


def test_make_data() -> None:
    topic = get_component_info().topics["command_execute"]
    data = topic.make_data(pipeline="p.yaml", salIndex=2)
    assert list(data) == list(topic.field_names)
    assert data["pipeline"] == "p.yaml"
    assert data["salIndex"] == 2
    assert data["version"] == ""
    assert data["private_sndStamp"] == 0.0
    assert data["private_seqNum"] == 0

    with pytest.raises(ValueError, match="no field"):
        topic.make_data(pipline="typo.yaml")


def test_avro_type_mapping() -> None:
    assert avro_schema.avro_type("long") == "int"
    assert avro_schema.avro_type("unsigned short") == "int"
    assert avro_schema.avro_type("long long") == "long"
    assert avro_schema.avro_type("unsigned int") == "long"
    assert avro_schema.avro_type("float") == "float"
    assert avro_schema.avro_type("double", 3) == {"type": "array", "items": "double"}
    # A count on a string is ignored, as SAL does.
    assert avro_schema.avro_type("string", 5) == "string"
    assert avro_schema.avro_default("boolean", 2) == [False, False]
    assert avro_schema.avro_default("float") == 0.0
    with pytest.raises(ValueError, match="Unknown IDL type"):
        avro_schema.avro_type("quad")
    with pytest.raises(ValueError, match="count"):
        avro_schema.avro_type("int", 0)


def copy_interface(tmp_path: pathlib.Path) -> tuple[pathlib.Path, dict[str, Any]]:
    with (DATA_DIR / "OCPS.yaml").open() as f:
        raw = yaml.safe_load(f)
    return tmp_path / "OCPS.yaml", raw


def test_adding_a_field_is_one_edit(tmp_path: pathlib.Path) -> None:
    path, raw = copy_interface(tmp_path)
    raw["topics"]["logevent_job_result"]["fields"].append(
        {
            "name": "durations",
            "type": "double",
            "description": "Step durations.",
            "units": "second",
            "count": 3,
        }
    )
    path.write_text(yaml.safe_dump(raw, sort_keys=False))

    info = read_component_info(path)
    topic = info.topics["logevent_job_result"]
    schema = topic.avro_schema()
    assert schema["fields"][-1] == {
        "name": "durations",
        "type": {"type": "array", "items": "double"},
        "default": [0.0, 0.0, 0.0],
        "description": "Step durations.",
        "units": "second",
    }
    assert topic.rev_code() != get_component_info().topics[topic.sal_name].rev_code()
    data = topic.make_data()
    data["durations"].append(1.0)
    assert topic.make_data()["durations"] == [0.0, 0.0, 0.0]
    # Every other topic is unchanged.
    for sal_name, other in info.topics.items():
        if sal_name != topic.sal_name:
            assert (
                other.avro_schema()
                == get_component_info().topics[sal_name].avro_schema()
            )


def test_non_indexed_component_has_no_sal_index(tmp_path: pathlib.Path) -> None:
    path, raw = copy_interface(tmp_path)
    raw["indexed"] = False
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    topic = read_component_info(path).topics["logevent_summaryState"]
    assert topic.field_names[:8] == PRIVATE_FIELD_NAMES
    assert "salIndex" not in topic.field_names


def test_bad_interface_files(tmp_path: pathlib.Path) -> None:
    path, raw = copy_interface(tmp_path)
    raw["topics"]["command_execute"]["fields"][0]["type"] = "quad"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ValueError, match="command_execute.fields.0.*quad"):
        read_component_info(path)

    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        read_component_info(path)

    path.write_text("name: X\nindexed: true\n")
    with pytest.raises(ValueError, match="standard_fields"):
        read_component_info(path)

    with pytest.raises(ValueError, match="Invalid component"):
        get_component_info("../OCPS")
    with pytest.raises(ValueError, match="No interface data"):
        get_component_info("NoSuchComponent")
