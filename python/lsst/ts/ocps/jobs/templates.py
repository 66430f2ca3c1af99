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

"""Templates of job commands and environments: ``{name}`` placeholders."""

from __future__ import annotations

__all__ = [
    "Placeholder",
    "format_value",
    "has_value",
    "parse_template",
    "placeholder_names",
    "render_command",
    "render_environment",
]

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..exceptions import ParameterError

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|\{([^{}]*)\}|[{}]")
"""One token of a template: ``{{``, ``}}``, a placeholder, or a stray
brace (groups: 1 a valid name, 2 an invalid name)."""


@dataclasses.dataclass(frozen=True)
class Placeholder:
    """A ``{name}`` in a template.

    Parameters
    ----------
    name : `str`
        Name of the parameter whose value replaces it.
    """

    name: str


def parse_template(text: str) -> list[str | Placeholder]:
    """Split a template into literal text and placeholders.

    Parameters
    ----------
    text : `str`
        The template, e.g. ``--limit={limit}``.

    Returns
    -------
    tokens : `list` [`str` or `Placeholder`]
        Literal text (with ``{{``/``}}`` turned into braces) and
        placeholders, in order; adjacent literals are merged.

    Raises
    ------
    ValueError
        Raised if a brace is unmatched or a placeholder name is invalid.
    """
    tokens: list[str | Placeholder] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif match.group(1) is not None:
            if any(literal):
                tokens.append("".join(literal))
            literal = []
            tokens.append(Placeholder(match.group(1)))
        elif match.group(2) is not None:
            raise ValueError(
                f"invalid placeholder {token!r}: a name is a letter or _ "
                "followed by letters, digits or _; write {{ and }} for "
                "literal braces"
            )
        else:
            raise ValueError(
                f"unmatched {token!r} at offset {match.start()}; "
                f"write {token * 2!r} for a literal brace"
            )
    literal.append(text[position:])
    if any(literal):
        tokens.append("".join(literal))
    return tokens


def placeholder_names(tokens: Iterable[str | Placeholder]) -> list[str]:
    """Return the placeholder names among template tokens, in order."""
    return [token.name for token in tokens if isinstance(token, Placeholder)]


def has_value(value: Any) -> bool:
    """Return True if a parameter value fills a placeholder.

    Every value does but null and an empty list.
    """
    return value is not None and not (isinstance(value, list) and not value)


def _all_filled(names: Iterable[str], values: Mapping[str, Any]) -> bool:
    """Return True if every named parameter has a value (`has_value`)."""
    return all(has_value(values.get(name)) for name in names)


def format_value(value: Any) -> str:
    """Write one parameter value as an argv element or environment value.

    Parameters
    ----------
    value : `typing.Any`
        A JSON value.

    Returns
    -------
    text : `str`
        Strings as they are; booleans as ``true``/``false``; integers, and
        floats with an integral value, without a fraction; other floats as
        Python's repr; lists and objects as compact JSON with sorted keys.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _substitute(tokens: Sequence[str | Placeholder], values: Mapping[str, Any]) -> str:
    """Join template tokens, formatting each placeholder's value."""
    return "".join(
        format_value(values[token.name]) if isinstance(token, Placeholder) else token
        for token in tokens
    )


def _render_element(template: str, values: Mapping[str, Any]) -> list[str]:
    """Render a top-level command element to zero or more argv elements."""
    tokens = parse_template(template)
    names = placeholder_names(tokens)
    if not _all_filled(names, values):
        return []
    if len(tokens) == 1 and names:
        value = values[names[0]]
        if isinstance(value, list):
            return [format_value(item) for item in value]
    for name in names:
        if isinstance(values[name], list):
            raise ParameterError(
                f"parameter {name!r}: a list can only fill a whole argv "
                f"element or a group, not part of {template!r}"
            )
    return [_substitute(tokens, values)]


def _render_group(group: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """Render an optional group: all or nothing, repeated per list item."""
    parsed = [parse_template(template) for template in group]
    names = [name for tokens in parsed for name in placeholder_names(tokens)]
    if not _all_filled(names, values):
        return []

    list_names = sorted({name for name in names if isinstance(values[name], list)})
    if len(list_names) > 1:
        raise ParameterError(
            f"parameters {', '.join(map(repr, list_names))} are all lists; "
            f"the group {list(group)!r} may refer to one list only"
        )
    if not list_names:
        return [_substitute(tokens, values) for tokens in parsed]

    argv: list[str] = []
    for item in values[list_names[0]]:
        item_values = {**values, list_names[0]: item}
        argv += [_substitute(tokens, item_values) for tokens in parsed]
    return argv


def render_command(
    command: Sequence[str | Sequence[str]], values: Mapping[str, Any]
) -> list[str]:
    """Fill an argv template.

    Parameters
    ----------
    command : `collections.abc.Sequence` [`str` or `list` [`str`]]
        The template: strings, and groups (lists of strings) that are kept
        or dropped as a whole.
    values : `collections.abc.Mapping` [`str`, `typing.Any`]
        Parameter values.

    Returns
    -------
    argv : `list` [`str`]
        An element or group is dropped unless every placeholder in it has
        a value (not absent, null or an empty list). An element that is
        exactly ``{name}`` with a list value gives one element per item; a
        group that refers to a list is repeated once per item.

    Raises
    ------
    ParameterError
        Raised if a list value would be embedded in a longer element, or a
        group refers to more than one list.
    """
    argv: list[str] = []
    for element in command:
        if isinstance(element, str):
            argv += _render_element(element, values)
        else:
            argv += _render_group(element, values)
    return argv


def render_environment(
    templates: Mapping[str, str], values: Mapping[str, Any]
) -> dict[str, str]:
    """Fill environment variable templates.

    Parameters
    ----------
    templates : `collections.abc.Mapping` [`str`, `str`]
        Variable name to template.
    values : `collections.abc.Mapping` [`str`, `typing.Any`]
        Parameter values.

    Returns
    -------
    environment : `dict` [`str`, `str`]
        The variables whose placeholders all have values; lists and
        objects are written as compact JSON.
    """
    environment: dict[str, str] = {}
    for name, template in templates.items():
        tokens = parse_template(template)
        if _all_filled(placeholder_names(tokens), values):
            environment[name] = _substitute(tokens, values)
    return environment
