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

"""A small blocking client for the Confluent schema registry REST API."""

from __future__ import annotations

__all__ = ["RegistryError", "RegistryUnavailableError", "SchemaRegistryClient"]

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(Exception):
    """The registry answered with an error.

    Parameters
    ----------
    status : `int`
        HTTP status.
    error_code : `int`
        Confluent ``error_code`` (the HTTP status if the body had none).
    message : `str`
        The registry's message.
    """

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(f"{status=} {error_code=}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message


class RegistryUnavailableError(ConnectionError):
    """The registry could not be reached (worth retrying)."""


class SchemaRegistryClient:
    """Register and fetch Avro schemas; every call blocks.

    Call it from a worker thread (`asyncio.to_thread` or the consumer
    thread), never from the event loop.

    Parameters
    ----------
    url : `str`
        Base URL of the registry, e.g. ``http://schema-registry:8081``.
    timeout : `float`
        Timeout of each HTTP request (seconds).
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._lock = threading.Lock()
        self._texts: dict[int, str] = {}

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                reply = json.loads(raw)
                error_code = int(reply.get("error_code", e.code))
                message = str(reply.get("message", ""))
            except (ValueError, AttributeError):
                error_code, message = e.code, raw.decode(errors="replace")
            if e.code >= 500:
                raise RegistryUnavailableError(
                    f"Schema registry {self.url} failed: {e.code} {message}"
                ) from e
            raise RegistryError(e.code, error_code, message) from e
        except (urllib.error.URLError, OSError) as e:
            raise RegistryUnavailableError(
                f"Schema registry {self.url} unreachable: {e}"
            ) from e

    @staticmethod
    def _quote(subject: str) -> str:
        return urllib.parse.quote(subject, safe="")

    def _post_schema(self, path: str, schema_text: str) -> int:
        """POST an Avro schema text as given; return the id in the reply."""
        reply = self._request(
            "POST",
            f"{path}?normalize=false",
            {"schema": schema_text, "schemaType": "AVRO", "references": []},
        )
        return int(reply["id"])

    def register(self, subject: str, schema_text: str) -> int:
        """Register a schema under a subject (idempotent).

        Parameters
        ----------
        subject : `str`
            Subject, e.g. ``lsst.sal.OCPS.ackcmd-value``.
        schema_text : `str`
            The Avro schema as JSON text, sent exactly as given.

        Returns
        -------
        schema_id : `int`
            The registry's id of the schema.

        Raises
        ------
        RegistryError
            If the registry refuses the schema (e.g. incompatible).
        RegistryUnavailableError
            If the registry cannot be reached.
        """
        schema_id = self._post_schema(
            f"/subjects/{self._quote(subject)}/versions", schema_text
        )
        with self._lock:
            self._texts.setdefault(schema_id, schema_text)
        return schema_id

    def lookup(self, subject: str, schema_text: str) -> int:
        """Return the id of a schema already registered under a subject.

        Parameters
        ----------
        subject : `str`
            Subject.
        schema_text : `str`
            The Avro schema as JSON text.

        Returns
        -------
        schema_id : `int`
            The registry's id of the schema.

        Raises
        ------
        RegistryError
            If the subject or the schema is unknown (404).
        RegistryUnavailableError
            If the registry cannot be reached.
        """
        return self._post_schema(f"/subjects/{self._quote(subject)}", schema_text)

    def get_schema_text(self, schema_id: int) -> str:
        """Return the text of a schema by id (cached).

        Parameters
        ----------
        schema_id : `int`
            The schema id from a record's framing.

        Returns
        -------
        text : `str`
            The schema JSON text.

        Raises
        ------
        RegistryError
            If the id is unknown (404, ``error_code`` 40403).
        RegistryUnavailableError
            If the registry cannot be reached.
        """
        with self._lock:
            text = self._texts.get(schema_id)
        if text is None:
            reply = self._request("GET", f"/schemas/ids/{int(schema_id)}")
            text = str(reply["schema"])
            with self._lock:
                self._texts[schema_id] = text
        return text

    def get_subjects(self) -> list[str]:
        """Return every subject.

        Returns
        -------
        subjects : `list` [`str`]
            Subject names.
        """
        return list(self._request("GET", "/subjects"))

    def delete_subject(self, subject: str) -> list[int]:
        """Delete a subject (soft delete, as the registry does it).

        Parameters
        ----------
        subject : `str`
            Subject.

        Returns
        -------
        versions : `list` [`int`]
            The versions deleted.
        """
        return list(self._request("DELETE", f"/subjects/{self._quote(subject)}"))
