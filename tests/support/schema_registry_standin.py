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

"""TEST STAND-IN for a Confluent schema registry; production uses the site's.

It implements only the REST calls that SAL clients make (confluent-kafka's
``SchemaRegistryClient`` and ts_ocps's own client), keeps everything in
memory, and serves from its own threads so that blocking clients in the
code under test can never deadlock it. Differences from the real registry:
no compatibility checks (every new text under a subject becomes a new
version), no authentication, no schema references or normalisation.
"""

from __future__ import annotations

__all__ = ["SchemaRegistryStandIn"]

import http.server
import json
import logging
import re
import threading
import urllib.parse
from typing import Any

import fastavro

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

log = logging.getLogger("ocps.tests.schema_registry_standin")


class _RegistryError(Exception):
    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


class _Store:
    """Schemas by id and subjects' version lists, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.texts: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.request_log: list[tuple[str, str]] = []

    def id_for(self, text: str) -> int:
        parsed = json.loads(text)
        for schema_id, known in self.texts.items():
            if known == text or json.loads(known) == parsed:
                return schema_id
        schema_id = len(self.texts) + 1
        self.texts[schema_id] = text
        return schema_id

    def find_version(self, subject: str, text: str) -> tuple[int, int] | None:
        parsed = json.loads(text)
        for version, schema_id in enumerate(self.subjects.get(subject, []), 1):
            if json.loads(self.texts[schema_id]) == parsed:
                return version, schema_id
        return None


def _check_schema(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise _RegistryError(
            422, 42201, "Either the input schema or one of its references is invalid"
        )
    schema_type = body.get("schemaType", "AVRO")
    if schema_type != "AVRO":
        raise _RegistryError(
            422, 42201, f"Unsupported schema type {schema_type!r} (stand-in)"
        )
    try:
        fastavro.parse_schema(json.loads(body["schema"]))
    except Exception as e:
        raise _RegistryError(422, 42201, f"Invalid schema: {e}") from e
    return body["schema"]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        store = self.server.store
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise _RegistryError(422, 42201, "Request body is not JSON") from None
            with store.lock:
                store.request_log.append((method, path))
                status, reply = self._route(method, path, body, store)
        except _RegistryError as e:
            status, reply = e.status, {"error_code": e.error_code, "message": e.message}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(
        self, method: str, path: str, body: Any, store: _Store
    ) -> tuple[int, Any]:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if method == "GET" and parts == ["subjects"]:
            return 200, sorted(s for s, versions in store.subjects.items() if versions)
        if method == "GET" and parts[:2] == ["schemas", "ids"] and len(parts) == 3:
            schema_id = _parse_int(parts[2], 40403, "Schema not found")
            if schema_id not in store.texts:
                raise _RegistryError(404, 40403, f"Schema {schema_id} not found")
            return 200, {"schema": store.texts[schema_id]}
        if len(parts) < 2 or parts[0] != "subjects":
            raise _RegistryError(404, 404, f"HTTP 404 Not Found: {method} {path}")

        subject = parts[1]
        rest = parts[2:]
        if method == "POST" and rest == ["versions"]:
            text = _check_schema(body)
            found = store.find_version(subject, text)
            if found is not None:
                return 200, {"id": found[1]}
            schema_id = store.id_for(text)
            store.subjects.setdefault(subject, []).append(schema_id)
            return 200, {"id": schema_id}

        versions = store.subjects.get(subject)
        if not versions:
            raise _RegistryError(404, 40401, f"Subject '{subject}' not found.")
        if method == "POST" and rest == []:
            text = _check_schema(body)
            found = store.find_version(subject, text)
            if found is None:
                raise _RegistryError(404, 40403, "Schema not found")
            version, schema_id = found
            return 200, _version_reply(subject, version, schema_id, store)
        if method == "GET" and rest == ["versions"]:
            return 200, list(range(1, len(versions) + 1))
        if method == "GET" and len(rest) == 2 and rest[0] == "versions":
            if rest[1] == "latest":
                version = len(versions)
            else:
                version = _parse_int(
                    rest[1], 42202, "The specified version is not a valid version id"
                )
                if version < 1:
                    raise _RegistryError(
                        422,
                        42202,
                        f"The specified version '{version}' is not a valid version id",
                    )
                if version > len(versions):
                    raise _RegistryError(404, 40402, f"Version {version} not found.")
            return 200, _version_reply(subject, version, versions[version - 1], store)
        if method == "DELETE" and rest == []:
            deleted = list(range(1, len(versions) + 1))
            del store.subjects[subject]
            return 200, deleted
        raise _RegistryError(405, 405, f"HTTP 405 Method Not Allowed: {method} {path}")


def _parse_int(text: str, error_code: int, message: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", text):
        raise _RegistryError(422 if error_code == 42202 else 404, error_code, message)
    return int(text)


def _version_reply(
    subject: str, version: int, schema_id: int, store: _Store
) -> dict[str, Any]:
    return {
        "subject": subject,
        "id": schema_id,
        "version": version,
        "schema": store.texts[schema_id],
    }


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    store: _Store


class SchemaRegistryStandIn:
    """An in-memory schema registry serving on a loopback port.

    Parameters
    ----------
    host : `str`
        Address to bind.
    port : `int`
        Port to bind; 0 picks a free one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.store = _Store()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    @property
    def request_log(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request served so far."""
        with self._server.store.lock:
            return list(self._server.store.request_log)

    def schema_text(self, schema_id: int) -> str:
        """Return the registered text of a schema id.

        Parameters
        ----------
        schema_id : `int`
            The schema id.

        Returns
        -------
        text : `str`
            The text exactly as it was registered.
        """
        with self._server.store.lock:
            return self._server.store.texts[schema_id]

    def subject_versions(self, subject: str) -> list[int]:
        """Return the schema ids of a subject's versions, oldest first.

        Parameters
        ----------
        subject : `str`
            The subject.

        Returns
        -------
        ids : `list` [`int`]
            Empty if the subject is unknown.
        """
        with self._server.store.lock:
            return list(self._server.store.subjects.get(subject, []))

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="schema-registry-standin",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
