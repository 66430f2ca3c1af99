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

"""Kafka record keys and Confluent-framed Avro values of SAL topics."""

from __future__ import annotations

__all__ = [
    "MAGIC_BYTE",
    "FramingError",
    "decode_value",
    "encode_value",
    "make_key",
    "parse_frame",
]

import io
import struct
from typing import Any

import fastavro

MAGIC_BYTE = 0
"""First byte of every Confluent-framed value."""

_HEADER = struct.Struct(">bI")


class FramingError(ValueError):
    """A record value is not a Confluent-framed Avro value."""


def make_key(component: str, index: int | None, sal_name: str) -> str:
    """Return the record key salobj writes, byte for byte.

    Parameters
    ----------
    component : `str`
        Writer's component name, e.g. ``OCPS``.
    index : `int` or `None`
        Writer's SAL index; `None` for a non-indexed component.
    sal_name : `str`
        Topic name without component; a telemetry topic gets ``""``.

    Returns
    -------
    key : `str`
        E.g. ``{ "name": "OCPS", "index": 1, "topic": "ackcmd" }`` (note the
        spaces inside the braces).
    """
    if not (sal_name == "ackcmd" or sal_name.startswith(("command_", "logevent_"))):
        return ""
    if index is None:
        return f'{{ "name": "{component}", "topic": "{sal_name}" }}'
    return f'{{ "name": "{component}", "index": {index}, "topic": "{sal_name}" }}'


def encode_value(schema_id: int, parsed_schema: Any, data: dict[str, Any]) -> bytes:
    """Encode a record: magic byte, 4-byte schema id, Avro binary.

    Parameters
    ----------
    schema_id : `int`
        The registry's id of ``parsed_schema``.
    parsed_schema : `typing.Any`
        The schema, parsed by `fastavro.parse_schema`.
    data : `dict` [`str`, `typing.Any`]
        The complete record.

    Returns
    -------
    value : `bytes`
        The framed value.

    Raises
    ------
    ValueError
        If ``data`` does not fit the schema.
    """
    buffer = io.BytesIO()
    buffer.write(_HEADER.pack(MAGIC_BYTE, schema_id))
    try:
        fastavro.schemaless_writer(buffer, parsed_schema, data, strict=True)
    except (ValueError, TypeError, KeyError, OverflowError, struct.error) as e:
        raise ValueError(f"Record does not fit schema {schema_id}: {e!r}") from e
    return buffer.getvalue()


def parse_frame(value: bytes | None) -> tuple[int, memoryview]:
    """Split a framed value into its schema id and Avro body.

    Parameters
    ----------
    value : `bytes` or `None`
        The raw record value.

    Returns
    -------
    schema_id : `int`
        The writer's schema id.
    body : `memoryview`
        The Avro binary.

    Raises
    ------
    FramingError
        If the value is null (a tombstone), too short or has another magic
        byte.
    """
    if value is None:
        raise FramingError("null value (tombstone)")
    if len(value) < _HEADER.size:
        raise FramingError(f"value of {len(value)} bytes is too short to be framed")
    magic, schema_id = _HEADER.unpack_from(value)
    if magic != MAGIC_BYTE:
        raise FramingError(f"magic byte {magic} is not {MAGIC_BYTE}")
    return schema_id, memoryview(value)[_HEADER.size :]


def decode_value(
    body: bytes | memoryview, writer_schema: Any, reader_schema: Any | None
) -> dict[str, Any]:
    """Decode an Avro body, resolving the writer's schema to ours.

    Parameters
    ----------
    body : `bytes` or `memoryview`
        Avro binary without framing.
    writer_schema : `typing.Any`
        Parsed schema the record was written with.
    reader_schema : `typing.Any` or `None`
        Parsed schema to resolve to; `None` if it is the writer's.

    Returns
    -------
    data : `dict` [`str`, `typing.Any`]
        The record.

    Raises
    ------
    ValueError
        If the body does not decode, has bytes left over, or the schemas
        do not resolve.
    """
    stream = io.BytesIO(body)
    try:
        data = fastavro.schemaless_reader(stream, writer_schema, reader_schema)
    except Exception as e:
        raise ValueError(f"Avro decoding failed: {e!r}") from e
    if stream.tell() != len(stream.getbuffer()):
        raise ValueError(
            f"{len(stream.getbuffer()) - stream.tell()} bytes left after the record"
        )
    if not isinstance(data, dict):
        raise ValueError(f"Decoded a {type(data).__name__}, not a record")
    return data
