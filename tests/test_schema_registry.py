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

"""The schema-registry test stand-in speaks the Confluent REST dialect."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from lsst.ts.ocps.sal.interface import get_component_info
from lsst.ts.ocps.sal.schema_registry import (
    RegistryError,
    RegistryUnavailableError,
    SchemaRegistryClient,
)
from support.schema_registry_standin import SchemaRegistryStandIn

SUBJECT = "lsst.test_x.OCPS.logevent_heartbeat-value"


@pytest.fixture
def registry() -> Iterator[SchemaRegistryStandIn]:
    registry = SchemaRegistryStandIn()
    registry.start()
    yield registry
    registry.stop()


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def heartbeat_text(description: str | None = None) -> str:
    schema = get_component_info().topics["logevent_heartbeat"].avro_schema()
    if description is not None:
        schema["description"] = description
    return json.dumps(schema)


def test_register_lookup_fetch(registry: SchemaRegistryStandIn) -> None:
    client = SchemaRegistryClient(registry.url)
    text = heartbeat_text()
    schema_id = client.register(SUBJECT, text)
    assert client.register(SUBJECT, text) == schema_id
    assert client.lookup(SUBJECT, text) == schema_id
    assert SchemaRegistryClient(registry.url).get_schema_text(schema_id) == text
    assert client.get_subjects() == [SUBJECT]

    # The same schema under another subject keeps its id.
    assert client.register("other-value", text) == schema_id

    # A new text is a new version with a new id.
    text2 = heartbeat_text("changed")
    schema_id2 = client.register(SUBJECT, text2)
    assert schema_id2 != schema_id
    assert registry.subject_versions(SUBJECT) == [schema_id, schema_id2]

    base = f"{registry.url}/subjects/{SUBJECT}"
    assert call(f"{base}/versions") == (200, [1, 2])
    status, latest = call(f"{base}/versions/latest")
    assert status == 200
    assert (latest["version"], latest["id"], latest["schema"]) == (2, schema_id2, text2)
    status, first = call(f"{base}/versions/1")
    assert (status, first["id"], first["subject"]) == (200, schema_id, SUBJECT)

    assert client.delete_subject(SUBJECT) == [1, 2]
    assert client.get_subjects() == ["other-value"]


def test_confluent_errors(registry: SchemaRegistryStandIn) -> None:
    client = SchemaRegistryClient(registry.url)
    with pytest.raises(RegistryError) as caught:
        client.get_schema_text(42)
    assert (caught.value.status, caught.value.error_code) == (404, 40403)

    with pytest.raises(RegistryError) as caught:
        client.lookup("nobody-value", heartbeat_text())
    assert caught.value.error_code == 40401

    client.register(SUBJECT, heartbeat_text())
    with pytest.raises(RegistryError) as caught:
        client.lookup(SUBJECT, heartbeat_text("never registered"))
    assert caught.value.error_code == 40403

    base = f"{registry.url}/subjects/{SUBJECT}"
    status, reply = call(f"{base}/versions/7")
    assert (status, reply["error_code"]) == (404, 40402)
    status, reply = call(f"{base}/versions/x")
    assert (status, reply["error_code"]) == (422, 42202)
    status, reply = call(f"{base}/versions/0")
    assert (status, reply["error_code"]) == (422, 42202)
    status, reply = call(f"{registry.url}/subjects/nobody/versions")
    assert (status, reply["error_code"]) == (404, 40401)
    assert isinstance(reply["message"], str)

    for body in ({"schema": "{not json"}, {"schema": '{"type": "nonsense"}'}, {"x": 1}):
        status, reply = call(f"{base}/versions", "POST", body)
        assert (status, reply["error_code"]) == (422, 42201), body
    # Nothing bad was stored.
    assert call(f"{base}/versions") == (200, [1])


def test_unreachable_registry() -> None:
    registry = SchemaRegistryStandIn()
    url = registry.url
    registry.stop()
    with pytest.raises(RegistryUnavailableError, match="unreachable"):
        SchemaRegistryClient(url, timeout=2).register(SUBJECT, heartbeat_text())
