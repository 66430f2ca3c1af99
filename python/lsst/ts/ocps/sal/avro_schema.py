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

"""Build the Avro schema of a SAL topic exactly as salobj registers it."""

from __future__ import annotations

__all__ = [
    "AVRO_NAMESPACE_PREFIX",
    "IDL_TO_AVRO",
    "avro_default",
    "avro_type",
    "make_field_schema",
    "make_topic_schema",
    "rev_code",
    "schema_text",
]

import hashlib
import json
from collections.abc import Iterable
from typing import Any

AVRO_NAMESPACE_PREFIX = "lsst.sal"
"""Schema namespace is ``<prefix>.<component>``, whatever the subname."""

IDL_TO_AVRO: dict[str, str] = {
    "boolean": "boolean",
    "byte": "int",
    "short": "int",
    "int": "int",
    "long": "int",
    "unsigned short": "int",
    "long long": "long",
    "unsigned int": "long",
    "float": "float",
    "double": "double",
    "string": "string",
}
"""SAL IDL type to Avro primitive.

SAL's ``long`` is 32 bits on the wire (Avro ``int``); only ``long long``
and ``unsigned int`` become Avro ``long``.
"""

_SCALAR_DEFAULTS: dict[str, Any] = {
    "boolean": False,
    "int": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "string": "",
}


def avro_type(idl_type: str, count: int = 1) -> str | dict[str, Any]:
    """Return the Avro type of a SAL field.

    Parameters
    ----------
    idl_type : `str`
        SAL IDL type.
    count : `int`
        Number of elements.

    Returns
    -------
    avro_type : `str` or `dict`
        An Avro primitive name, or an array type for a non-string field
        with ``count > 1`` (a count on a string is ignored, as in SAL).

    Raises
    ------
    ValueError
        If ``idl_type`` is unknown or ``count`` is less than 1.
    """
    try:
        scalar = IDL_TO_AVRO[idl_type]
    except KeyError:
        raise ValueError(f"Unknown IDL type {idl_type!r}") from None
    if count < 1:
        raise ValueError(f"{count=} must be at least 1")
    if count > 1 and scalar != "string":
        return {"type": "array", "items": scalar}
    return scalar


def avro_default(idl_type: str, count: int = 1) -> Any:
    """Return the default value of a SAL field.

    Parameters
    ----------
    idl_type : `str`
        SAL IDL type.
    count : `int`
        Number of elements.

    Returns
    -------
    default : `typing.Any`
        ``False``, ``0``, ``0.0`` or ``""``; a list of ``count`` of those
        for an array.
    """
    atype = avro_type(idl_type, count)
    if isinstance(atype, dict):
        return [_SCALAR_DEFAULTS[atype["items"]]] * count
    return _SCALAR_DEFAULTS[atype]


def make_field_schema(
    *, name: str, idl_type: str, description: str, units: str, count: int = 1
) -> dict[str, Any]:
    """Return the Avro field dict of one SAL field, keys in salobj's order.

    Parameters
    ----------
    name : `str`
        Field name.
    idl_type : `str`
        SAL IDL type, a key of `IDL_TO_AVRO`.
    description : `str`
        Description text, verbatim.
    units : `str`
        Units, ``unitless`` when there are none.
    count : `int`
        Number of elements; more than 1 makes an array (not for strings).

    Returns
    -------
    schema : `dict` [`str`, `typing.Any`]
        Keys ``name, type, default, description, units`` in that order.
    """
    return {
        "name": name,
        "type": avro_type(idl_type, count),
        "default": avro_default(idl_type, count),
        "description": description,
        "units": units,
    }


def make_topic_schema(
    component: str,
    sal_name: str,
    description: str,
    fields: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    """Return the Avro record schema of one SAL topic.

    Parameters
    ----------
    component : `str`
        SAL component name, e.g. ``OCPS``.
    sal_name : `str`
        SAL topic name without component, e.g. ``command_execute``.
    description : `str`
        Topic description, verbatim.
    fields : `~collections.abc.Iterable` [`dict`]
        Every field dict (from `make_field_schema`) in wire order: salIndex
        (indexed components only), the private fields, then the topic's
        own fields.

    Returns
    -------
    schema : `dict` [`str`, `typing.Any`]
        Keys ``type, name, namespace, fields, description`` in that order;
        ``json.dumps`` of it is the text salobj registers.
    """
    return {
        "type": "record",
        "name": sal_name,
        "namespace": f"{AVRO_NAMESPACE_PREFIX}.{component}",
        "fields": [dict(field) for field in fields],
        "description": description,
    }


def schema_text(schema: dict[str, Any]) -> str:
    """Return the schema text to register: ``json.dumps`` with defaults.

    Parameters
    ----------
    schema : `dict` [`str`, `typing.Any`]
        A schema from `make_topic_schema`.

    Returns
    -------
    text : `str`
        Compact JSON with Python's default separators.
    """
    return json.dumps(schema)


def rev_code(schema: dict[str, Any]) -> str:
    """Return the ``private_revCode`` of a topic.

    Parameters
    ----------
    schema : `dict` [`str`, `typing.Any`]
        A schema from `make_topic_schema`.

    Returns
    -------
    rev_code : `str`
        First 8 hex digits of the MD5 of the schema as 4-space indented
        JSON. Informational only; no reader checks it.
    """
    text = json.dumps(schema, indent=4)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:8]
