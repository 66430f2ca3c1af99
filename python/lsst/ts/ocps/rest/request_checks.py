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

"""Helpers of the REST handlers: the shared manager and request parsing."""

from __future__ import annotations

__all__ = [
    "MANAGER_KEY",
    "POST_FIELDS",
    "PUT_FIELDS",
    "check_fields",
    "check_job_id",
    "check_version",
    "expect_field",
    "get_manager",
    "merge_env",
    "non_negative",
    "parse_bool",
    "parse_int",
    "parse_phase",
    "parse_phases",
    "read_json_object",
    "read_post_fields",
    "string_list",
    "wait_seconds",
]

import json
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..exceptions import ParameterError
from ..jobs.job_manager import JOB_ID_PATTERN, JobManager
from ..models import ExecutionPhase

MANAGER_KEY = web.AppKey("manager", JobManager)
"""App key of the `JobManager` shared by the handlers."""

PUT_FIELDS = frozenset(
    {
        "type",
        "version",
        "config",
        "env",
        "runId",
        "prereqJobs",
        "prereqSuccess",
        "waitFor",
        "waitTimeout",
        "executionDuration",
    }
)
"""Fields of a ``PUT /job`` body."""

POST_FIELDS = frozenset({"type", "env", "parameters", "log_dir", "version"})
"""Fields of a ``POST /job`` body or form."""

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_JSON_NAMES = {
    str: "a string",
    dict: "an object",
    list: "an array",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def get_manager(request: web.Request) -> JobManager:
    """Return the job manager of the request's application."""
    return request.app[MANAGER_KEY]


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if it is a valid job id.

    A valid id cannot name a path outside the state directory.

    Raises
    ------
    ParameterError
        Raised if ``job_id`` is not a valid job id.
    """
    if not JOB_ID_PATTERN.match(job_id) or ".." in job_id:
        raise ParameterError(f"invalid job id {job_id!r}")
    return job_id


def parse_phase(text: str) -> ExecutionPhase:
    """Parse a phase name in any case; raise `ParameterError` if unknown."""
    try:
        return ExecutionPhase(text.upper())
    except ValueError:
        names = ", ".join(phase.value for phase in ExecutionPhase)
        raise ParameterError(
            f"invalid phase {text!r}; expected one of {names}"
        ) from None


def parse_int(query: Mapping[str, str], name: str, minimum: int) -> int | None:
    """Read an optional integer query parameter of at least ``minimum``."""
    text = query.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ParameterError(f"{name}={text!r} is not an integer") from None
    if value < minimum:
        raise ParameterError(f"{name}={value} is less than the minimum of {minimum}")
    return value


def parse_bool(query: Mapping[str, str], name: str) -> bool:
    """Read an optional boolean query parameter (default false)."""
    text = query.get(name, "false").lower()
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    raise ParameterError(f"{name}={text!r} is not a boolean (true or false)")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """Read a request body that must be a JSON object."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=f"expected Content-Type application/json, not {request.content_type!r}"
        )
    raw = await request.read()
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise ParameterError(f"request body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ParameterError("request body must be a JSON object")
    return data


def _reject_constant(name: str) -> Any:
    """Refuse NaN and Infinity, which `json.loads` accepts by default."""
    raise ValueError(f"{name} is not a JSON number")


def expect_field(
    data: Mapping[str, Any], name: str, kind: type | tuple[type, ...]
) -> Any:
    """Return ``data[name]`` (None if absent) checked against ``kind``."""
    value = data.get(name)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        value_ok = False
    else:
        value_ok = isinstance(value, kinds)
    if not value_ok:
        names = " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
        raise ParameterError(f"field {name!r} must be {names}, not {json.dumps(value)}")
    return value


def string_list(data: Mapping[str, Any], name: str) -> list[str]:
    """Read an array of strings (or a comma-separated string) field."""
    value = expect_field(data, name, (list, str))
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if not all(isinstance(item, str) for item in value):
        raise ParameterError(f"field {name!r} must be an array of strings")
    return list(value)


def non_negative(data: Mapping[str, Any], name: str) -> float | None:
    """Read an optional number field that must not be negative."""
    value = expect_field(data, name, (int, float))
    if value is not None and value < 0:
        raise ParameterError(f"field {name!r} must be >= 0, not {value}")
    return None if value is None else float(value)


def merge_env(
    manager: JobManager,
    type_name: str,
    parameters: dict[str, Any],
    env: Mapping[str, Any],
) -> dict[str, Any]:
    """Merge prototype-style environment values into the parameters.

    A string value of a parameter whose schema type is not string is
    parsed as JSON when it parses (``"2.5"`` -> 2.5), since the prototype
    sent every value as text; otherwise it is kept for the validator to
    report. A name given both in ``config`` and ``env`` with different
    values is an error.
    """
    job_type = manager.job_types.get_type(type_name)
    properties = job_type.parameters_schema.get("properties", {})
    merged = dict(parameters)
    for name, value in env.items():
        schema = properties.get(name, {}) if isinstance(properties, dict) else {}
        declared = schema.get("type") if isinstance(schema, dict) else None
        declared_types = declared if isinstance(declared, list) else [declared]
        if isinstance(value, str) and declared and "string" not in declared_types:
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if name in merged and merged[name] != value:
            raise ParameterError(
                f"parameter {name!r} is given twice with different values "
                f"({json.dumps(merged[name])} and {json.dumps(value)})"
            )
        merged[name] = value
    return merged


def check_fields(data: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Refuse fields of a request body that are not in ``allowed``."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ParameterError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(sorted(allowed))}"
        )


def check_version(manager: JobManager, type_name: str, version: str | None) -> None:
    """Refuse a non-empty ``version`` that differs from the job type's."""
    if not version:
        return
    job_type = manager.job_types.get_type(type_name)
    if version != job_type.version:
        raise ParameterError(
            f"job type {type_name!r} has version {job_type.version!r}, "
            f"not {version!r}"
        )


async def read_post_fields(request: web.Request) -> dict[str, Any]:
    """Read the fields of ``POST /job`` from JSON or a form."""
    if request.content_type == "application/json":
        return await read_json_object(request)
    if request.content_type not in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        raise web.HTTPUnsupportedMediaType(
            text="expected Content-Type application/json, "
            "application/x-www-form-urlencoded or multipart/form-data, "
            f"not {request.content_type!r}"
        )
    form = await request.post()
    data: dict[str, Any] = {}
    for name in form:
        value = form.get(name)
        if not isinstance(value, str):
            raise ParameterError(f"form field {name!r} must be text, not a file")
        if name in ("env", "parameters"):
            try:
                value = json.loads(value)
            except ValueError as e:
                raise ParameterError(
                    f"form field {name!r} is not a JSON object: {e}"
                ) from e
        data[name] = value
    return data


def wait_seconds(request: web.Request, cap: float) -> float | None:
    """Read the UWS ``wait`` query parameter in seconds.

    The value is capped at ``cap``; -1 means the cap. None if absent.
    """
    text = request.query.get("wait")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ParameterError(f"wait={text!r} is not a number of seconds") from None
    if value == -1:
        return cap
    if value < 0 or math.isnan(value):
        raise ParameterError(f"wait={text!r} must be >= 0 or -1 (the server maximum)")
    return min(value, cap)


def parse_phases(request: web.Request) -> list[ExecutionPhase] | None:
    """Read the repeatable, comma-separated ``phase`` query parameter."""
    texts: list[str] = []
    for value in request.query.getall("phase", []):
        texts.extend(item for item in value.split(",") if item)
    return [parse_phase(text) for text in texts] or None
