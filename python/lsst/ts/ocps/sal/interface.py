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

"""The SAL interface of a component (OCPS), built from its data file."""

from __future__ import annotations

__all__ = [
    "ACKCMD_SAL_NAME",
    "ComponentInfo",
    "FieldInfo",
    "TopicInfo",
    "get_component_info",
    "read_component_info",
]

import dataclasses
import functools
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import yaml

from . import avro_schema

ACKCMD_SAL_NAME = "ackcmd"
"""The ``sal_name`` of the one command acknowledgement topic."""

DATA_DIR = pathlib.Path(__file__).parent / "data"
"""Where ``<component>.yaml`` interface files live."""

_ATTR_PREFIXES = {
    "command_": "cmd_",
    "logevent_": "evt_",
}
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One field of a SAL topic.

    Parameters
    ----------
    name : `str`
        Field name.
    avro_type : `str` or `dict`
        Avro type: a primitive name or an array type.
    default : `typing.Any`
        Default value (a list for an array).
    description : `str`
        Description, verbatim from the interface definition.
    units : `str`
        Units, ``unitless`` when there are none.
    count : `int`
        Number of elements (1 for a scalar).
    idl_type : `str`
        SAL IDL type the Avro type was derived from.
    """

    name: str
    avro_type: str | dict
    default: Any
    description: str
    units: str
    count: int
    idl_type: str = ""

    def avro_field(self) -> dict[str, Any]:
        """Return the Avro field dict, keys in salobj's order.

        Returns
        -------
        field : `dict` [`str`, `typing.Any`]
            Keys ``name, type, default, description, units``.
        """
        return avro_schema.make_field_schema(
            name=self.name,
            idl_type=self.idl_type,
            description=self.description,
            units=self.units,
            count=self.count,
        )

    def make_default(self) -> Any:
        """Return a fresh default value (a new list for an array).

        Returns
        -------
        default : `typing.Any`
            The default value.
        """
        return list(self.default) if isinstance(self.default, list) else self.default


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    """One SAL topic: its names, description and fields.

    Parameters
    ----------
    component : `str`
        SAL component name, e.g. ``OCPS``.
    sal_name : `str`
        Topic name without component: ``command_execute``,
        ``logevent_job_result``, ``ackcmd``.
    attr_name : `str`
        salobj attribute name: ``cmd_execute``, ``evt_job_result``,
        ``ack_ackcmd``.
    description : `str`
        Topic description, verbatim.
    fields : `tuple` [`FieldInfo`, ...]
        The topic's own fields in wire order (no salIndex or private
        fields).
    indexed : `bool`
        Whether the component is indexed (records carry ``salIndex``).
    standard_fields : `tuple` [`FieldInfo`, ...]
        The fields every record starts with, in wire order: ``salIndex``
        (indexed components only) and the 8 private fields.
    cmdtype : `int` or `None`
        For a command, the ``cmdtype`` its acks carry: its index in the
        sorted list of all topic names of the component. `None` otherwise.
    """

    component: str
    sal_name: str
    attr_name: str
    description: str
    fields: tuple[FieldInfo, ...]
    indexed: bool
    standard_fields: tuple[FieldInfo, ...] = ()
    cmdtype: int | None = None

    @property
    def category(self) -> str:
        """Topic kind: ``command``, ``event``, ``ackcmd`` or ``telemetry``."""
        if self.sal_name == ACKCMD_SAL_NAME:
            return "ackcmd"
        if self.sal_name.startswith("command_"):
            return "command"
        if self.sal_name.startswith("logevent_"):
            return "event"
        return "telemetry"

    @property
    def all_fields(self) -> tuple[FieldInfo, ...]:
        """Every field of a record, in wire order."""
        return self.standard_fields + self.fields

    @property
    def field_names(self) -> tuple[str, ...]:
        """Names of every field of a record, in wire order."""
        return tuple(field.name for field in self.all_fields)

    def avro_schema(self) -> dict[str, Any]:
        """Return the Avro schema salobj registers for this topic.

        Returns
        -------
        schema : `dict` [`str`, `typing.Any`]
            A new dict each call; key order matches salobj's, so
            ``json.dumps`` of it is the registered text.
        """
        return avro_schema.make_topic_schema(
            component=self.component,
            sal_name=self.sal_name,
            description=self.description,
            fields=[field.avro_field() for field in self.all_fields],
        )

    def rev_code(self) -> str:
        """Return the ``private_revCode`` salobj stamps on this topic.

        Returns
        -------
        rev_code : `str`
            8 hex digits.
        """
        return avro_schema.rev_code(self.avro_schema())

    def kafka_topic_name(self, subname: str) -> str:
        """Return the Kafka topic name.

        Parameters
        ----------
        subname : `str`
            The ``LSST_TOPIC_SUBNAME`` value, e.g. ``sal``.

        Returns
        -------
        name : `str`
            ``lsst.<subname>.<component>.<sal_name>``.
        """
        return f"lsst.{subname}.{self.component}.{self.sal_name}"

    def avro_subject(self, subname: str) -> str:
        """Return the schema registry subject of the record values.

        Parameters
        ----------
        subname : `str`
            The ``LSST_TOPIC_SUBNAME`` value.

        Returns
        -------
        subject : `str`
            ``<kafka topic name>-value``.
        """
        return f"{self.kafka_topic_name(subname)}-value"

    def make_data(self, **fields: Any) -> dict[str, Any]:
        """Return a complete record: every field at its default, updated.

        Parameters
        ----------
        **fields : `typing.Any`
            Values of any field, standard fields included.

        Returns
        -------
        data : `dict` [`str`, `typing.Any`]
            One key per field, in wire order.

        Raises
        ------
        ValueError
            If a keyword is not a field of this topic.
        """
        data = {field.name: field.make_default() for field in self.all_fields}
        unknown = sorted(set(fields) - set(data))
        if unknown:
            raise ValueError(f"{self.attr_name} has no field(s) {unknown}")
        data.update(fields)
        return data


@dataclasses.dataclass(frozen=True)
class ComponentInfo:
    """The SAL interface of one component.

    Parameters
    ----------
    name : `str`
        Component name, e.g. ``OCPS``.
    indexed : `bool`
        Whether the component is indexed.
    topics : `dict` [`str`, `TopicInfo`]
        Every topic, by ``sal_name``, in sorted order.
    description : `str`
        Component description.
    xml_version : `str`
        Version of ts_xml the interface was taken from.
    sal_index_enum : `dict` [`str`, `int`]
        Named SAL indices (documentation; any positive index is allowed).
    config_package : `str`
        Name of the configuration package.
    """

    name: str
    indexed: bool
    topics: dict[str, TopicInfo]
    description: str = ""
    xml_version: str = ""
    sal_index_enum: dict[str, int] = dataclasses.field(default_factory=dict)
    config_package: str = ""

    @property
    def commands(self) -> dict[str, TopicInfo]:
        """Command topics by ``sal_name``, sorted."""
        return self._of_category("command")

    @property
    def events(self) -> dict[str, TopicInfo]:
        """Event topics by ``sal_name``, sorted."""
        return self._of_category("event")

    @property
    def telemetry(self) -> dict[str, TopicInfo]:
        """Telemetry topics by ``sal_name``, sorted (none for OCPS)."""
        return self._of_category("telemetry")

    @property
    def ackcmd(self) -> TopicInfo:
        """The command acknowledgement topic."""
        return self.topics[ACKCMD_SAL_NAME]

    @property
    def topics_by_attr_name(self) -> dict[str, TopicInfo]:
        """Every topic by salobj attribute name (``cmd_execute``, ...)."""
        return {topic.attr_name: topic for topic in self.topics.values()}

    def _of_category(self, category: str) -> dict[str, TopicInfo]:
        return {
            sal_name: topic
            for sal_name, topic in self.topics.items()
            if topic.category == category
        }


def _attr_name(sal_name: str) -> str:
    if sal_name == ACKCMD_SAL_NAME:
        return "ack_ackcmd"
    for prefix, attr_prefix in _ATTR_PREFIXES.items():
        if sal_name.startswith(prefix):
            return attr_prefix + sal_name[len(prefix) :]
    return "tel_" + sal_name


def _parse_field(path: pathlib.Path, where: str, raw: Any) -> FieldInfo:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: {where}: a field must be a mapping, not {raw!r}")
    try:
        name = str(raw["name"])
        idl_type = str(raw["type"])
        description = str(raw["description"])
        units = str(raw.get("units", "unitless"))
        count = int(raw.get("count", 1))
        return FieldInfo(
            name=name,
            avro_type=avro_schema.avro_type(idl_type, count),
            default=avro_schema.avro_default(idl_type, count),
            description=description,
            units=units,
            count=count,
            idl_type=idl_type,
        )
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: {where}: bad field {raw!r}: {e!r}") from e


def read_component_info(path: pathlib.Path | str) -> ComponentInfo:
    """Read an interface data file.

    Parameters
    ----------
    path : `pathlib.Path` or `str`
        The YAML file (see ``data/OCPS.yaml`` for the layout).

    Returns
    -------
    info : `ComponentInfo`
        The interface.

    Raises
    ------
    ValueError
        If the file is not a valid interface description.
    """
    path = pathlib.Path(path)
    with path.open() as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level")
    for key in ("name", "indexed", "standard_fields", "topics"):
        if key not in raw:
            raise ValueError(f"{path}: missing key {key!r}")
    name = str(raw["name"])
    indexed = bool(raw["indexed"])

    standard_fields: list[FieldInfo] = []
    for i, raw_field in enumerate(raw["standard_fields"]):
        if raw_field.get("indexed_only", False) and not indexed:
            continue
        standard_fields.append(_parse_field(path, f"standard_fields[{i}]", raw_field))

    # cmdtype is the position in the sorted list of ALL topic names
    sal_names = sorted(raw["topics"])
    topics: dict[str, TopicInfo] = {}
    for position, sal_name in enumerate(sal_names):
        raw_topic = raw["topics"][sal_name] or {}
        fields = tuple(
            _parse_field(path, f"{sal_name}.fields[{i}]", raw_field)
            for i, raw_field in enumerate(raw_topic.get("fields") or [])
        )
        topics[sal_name] = TopicInfo(
            component=name,
            sal_name=sal_name,
            attr_name=_attr_name(sal_name),
            description=str(raw_topic.get("description", "")),
            fields=fields,
            indexed=indexed,
            standard_fields=tuple(standard_fields),
            cmdtype=position if sal_name.startswith("command_") else None,
        )
    return ComponentInfo(
        name=name,
        indexed=indexed,
        topics=topics,
        description=str(raw.get("description", "")),
        xml_version=str(raw.get("xml_version", "")),
        sal_index_enum=dict(raw.get("sal_index_enum") or {}),
        config_package=str(raw.get("config_package", "")),
    )


@functools.cache
def get_component_info(name: str = "OCPS") -> ComponentInfo:
    """Return the interface of a component shipped with this package.

    Parameters
    ----------
    name : `str`
        Component name; ``data/<name>.yaml`` must exist.

    Returns
    -------
    info : `ComponentInfo`
        The interface (cached; treat it as read-only).

    Raises
    ------
    ValueError
        If there is no interface file for ``name`` or it is invalid.
    """
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"Invalid component {name=}")
    path = DATA_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"No interface data for component {name=}")
    return read_component_info(path)
