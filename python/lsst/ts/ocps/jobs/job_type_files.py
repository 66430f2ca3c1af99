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

"""Checking job-type files: YAML, the file schema and what it cannot say."""

from __future__ import annotations

__all__ = [
    "DEFAULTS",
    "JOB_TYPE_SCHEMA_PATH",
    "ParameterValidator",
    "allows_unknown_parameters",
    "check_directory",
    "check_file",
    "json_path",
]

import copy
import difflib
import functools
import math
import pathlib
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import yaml

from ..exceptions import JobTypeProblem, OcpsError
from ..paths import SCHEMA_DIR
from ..runners.registry import check_runner_options
from .templates import parse_template, placeholder_names

DEFAULTS: dict[str, Any] = {
    "environment": {},
    "execution_duration": 0.0,
    "max_concurrent": 0,
    "runner": "local",
    "runner_options": {},
    "output_globs": [],
    "preprocessor": None,
}
"""Values of the optional keys of a job-type file (as in its schema).

``runner`` is the default of `check_file`; a service may configure
another one."""

JOB_TYPE_SCHEMA_PATH = SCHEMA_DIR / "job_type.schema.yaml"
"""The JSON Schema of a job-type file: ``schema/`` next to ``python/``.

The package is used from its source tree (an editable install), so the
schema is found relative to this module.
"""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_SCHEMA_KEYWORDS = frozenset("""
    $schema $id $ref $anchor $dynamicRef $dynamicAnchor $vocabulary $comment
    $defs definitions dependencies
    prefixItems items contains additionalProperties properties
    patternProperties dependentSchemas propertyNames if then else allOf anyOf
    oneOf not unevaluatedItems unevaluatedProperties
    type const enum multipleOf maximum exclusiveMaximum minimum
    exclusiveMinimum maxLength minLength pattern maxItems minItems
    uniqueItems maxContains minContains maxProperties minProperties required
    dependentRequired
    title description default deprecated readOnly writeOnly examples
    format contentEncoding contentMediaType contentSchema
    units
    """.split())
"""Keywords allowed in a parameters schema: those of JSON Schema draft
2020-12 (with ``definitions`` and ``dependencies`` of older drafts) and
the ``units`` annotation; extensions start with ``x-``. Anything else is
taken for a typo."""

# Keywords whose value holds subschemas: a mapping of them, one, a list.
_SUBSCHEMA_MAPS = (
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
)
_SUBSCHEMA_ONE = (
    "items",
    "additionalProperties",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
)
_SUBSCHEMA_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")


def _is_strict_integer(checker: Any, value: Any) -> bool:
    """Is a value an integer, and not a float or a bool?"""
    return isinstance(value, int) and not isinstance(value, bool)


ParameterValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", _is_strict_integer
    ),
)
"""Draft 2020-12 validator that refuses 5.0 where an integer is wanted."""


def json_path(parts: Iterable[str | int]) -> str:
    """Write a path into a document as ``$.a.b[0]['c d']``."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}"
        else:
            text += f"[{part!r}]"
    return text


@functools.cache
def _file_schema_validator() -> Any:
    """Load the schema of job-type files once and make its validator."""
    try:
        with open(JOB_TYPE_SCHEMA_PATH, encoding="utf-8") as stream:
            schema = yaml.safe_load(stream)
    except OSError as e:
        raise OcpsError(
            f"cannot read the job-type schema {str(JOB_TYPE_SCHEMA_PATH)!r}: {e}; "
            "ts_ocps must be used from its source tree (pip install -e)"
        ) from e
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate mapping keys."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


def _yaml_problem(path: str, error: yaml.YAMLError) -> JobTypeProblem:
    """Describe a YAML error with its line and column (1-based)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    if context:
        problem = f"{problem} ({context})"
    if mark is None:
        return JobTypeProblem(path, "$", f"malformed YAML: {problem}")
    return JobTypeProblem(
        path,
        "$",
        f"malformed YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}",
    )


def _non_json_problems(
    path: str, value: Any, parts: list[str | int]
) -> Iterator[JobTypeProblem]:
    """Find values YAML can hold but JSON cannot (dates, sets, ...)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield JobTypeProblem(
                    path,
                    json_path(parts),
                    f"key {key!r} is a {type(key).__name__}; keys must be strings "
                    "(quote it)",
                )
            else:
                yield from _non_json_problems(path, item, parts + [key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_json_problems(path, item, parts + [index])
    elif isinstance(value, float) and not math.isfinite(value):
        yield JobTypeProblem(path, json_path(parts), f"{value!r} is not a JSON number")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        yield JobTypeProblem(
            path,
            json_path(parts),
            f"{value!r} is a YAML {type(value).__name__}, not JSON data "
            "(quote it to make it a string)",
        )


def _schema_problems(path: str, document: Any) -> list[JobTypeProblem]:
    """Check a job-type document against the schema of job-type files."""
    problems = []
    validator = _file_schema_validator()
    errors = sorted(
        validator.iter_errors(document),
        key=lambda error: [str(part) for part in error.absolute_path],
    )
    for error in errors:
        if error.context:
            error = jsonschema.exceptions.best_match(error.context)
        parts = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(
            error.instance, dict
        ):
            allowed = list(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in allowed:
                    reason = f"unknown key {key!r}"
                    close = difflib.get_close_matches(str(key), allowed, n=1)
                    if close:
                        reason += f" (did you mean {close[0]!r}?)"
                    problems.append(
                        JobTypeProblem(path, json_path(parts + [key]), reason)
                    )
        elif error.validator == "required" and isinstance(error.instance, dict):
            for key in error.validator_value:
                if key not in error.instance:
                    problems.append(
                        JobTypeProblem(
                            path, json_path(parts + [key]), "required key missing"
                        )
                    )
        else:
            reason = error.message
            if "propertyNames" in error.absolute_schema_path:
                parts.append(error.instance)
            if error.validator == "pattern" and "$comment" in error.schema:
                reason = f"{error.instance!r} is invalid: {error.schema['$comment']}"
            problems.append(JobTypeProblem(path, json_path(parts), reason))
    return list(dict.fromkeys(problems))


def _walk_subschemas(
    schema: Any, parts: list[str | int]
) -> Iterator[tuple[dict[str, Any], list[str | int]]]:
    """Yield every (sub)schema of a JSON Schema with its path."""
    if not isinstance(schema, dict):
        return
    yield schema, parts
    for keyword in _SUBSCHEMA_MAPS:
        value = schema.get(keyword)
        if isinstance(value, dict):
            for key, subschema in value.items():
                yield from _walk_subschemas(subschema, parts + [keyword, key])
    for keyword in _SUBSCHEMA_ONE:
        yield from _walk_subschemas(schema.get(keyword), parts + [keyword])
    for keyword in _SUBSCHEMA_LISTS:
        value = schema.get(keyword)
        if isinstance(value, list):
            for index, subschema in enumerate(value):
                yield from _walk_subschemas(subschema, parts + [keyword, index])


def _parameters_problems(path: str, parameters: dict[str, Any]) -> list[JobTypeProblem]:
    """Check that ``parameters`` is a sound JSON Schema of an object."""
    problems = []
    base: list[str | int] = ["parameters"]
    meta = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    for error in meta.iter_errors(parameters):
        problems.append(
            JobTypeProblem(
                path,
                json_path(base + list(error.absolute_path)),
                f"not a valid JSON Schema: {error.message}",
            )
        )
    if problems:
        return problems

    # Typos such as "minimun" are legal JSON Schema (unknown keywords are
    # ignored), so they would silently drop a limit.
    root = ParameterValidator(parameters)
    for subschema, parts in _walk_subschemas(parameters, base):
        for keyword in subschema:
            if keyword not in _SCHEMA_KEYWORDS and not keyword.startswith("x-"):
                reason = f"unknown JSON Schema keyword {keyword!r}"
                close = difflib.get_close_matches(keyword, _SCHEMA_KEYWORDS, n=1)
                if close:
                    reason += f" (did you mean {close[0]!r}?)"
                problems.append(
                    JobTypeProblem(path, json_path(parts + [keyword]), reason)
                )
        if "default" in subschema:
            for error in root.evolve(schema=subschema).iter_errors(
                subschema["default"]
            ):
                problems.append(
                    JobTypeProblem(
                        path,
                        json_path(parts + ["default"] + list(error.absolute_path)),
                        f"default {subschema['default']!r} is invalid: {error.message}",
                    )
                )

    properties = parameters.get("properties", {})
    if not allows_unknown_parameters(parameters):
        for index, name in enumerate(parameters.get("required", [])):
            if name not in properties:
                problems.append(
                    JobTypeProblem(
                        path,
                        json_path(base + ["required", index]),
                        f"required parameter {name!r} is not declared in properties",
                    )
                )
    return problems


def allows_unknown_parameters(parameters: Mapping[str, Any]) -> bool:
    """Does a parameters schema say anything about undeclared keys?"""
    return any(
        keyword in parameters
        for keyword in (
            "additionalProperties",
            "patternProperties",
            "unevaluatedProperties",
        )
    )


def _is_list_parameter(schema: Any) -> bool:
    """May a parameter's value be a list, judging by its ``type``?"""
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    return kind == "array" or (isinstance(kind, list) and "array" in kind)


def _template_problems(
    path: str,
    template: str,
    parts: list[str | int],
    properties: Mapping[str, Any],
    whole_list_ok: bool,
) -> list[JobTypeProblem]:
    """Check one template: syntax, declared names, list placement."""
    field = json_path(parts)
    try:
        tokens = parse_template(template)
    except ValueError as e:
        return [JobTypeProblem(path, field, str(e))]

    problems = []
    names = placeholder_names(tokens)
    for name in dict.fromkeys(names):
        if name not in properties:
            declared = ", ".join(properties) if properties else "none"
            problems.append(
                JobTypeProblem(
                    path,
                    field,
                    f"placeholder {{{name}}} names no declared parameter "
                    f"(declared: {declared})",
                )
            )
        elif _is_list_parameter(properties[name]) and not (
            whole_list_ok and len(tokens) == 1
        ):
            problems.append(
                JobTypeProblem(
                    path,
                    field,
                    f"parameter {name!r} may be a list, which can only fill a "
                    "whole command element or a group",
                )
            )
    return problems


def _semantic_problems(
    path: str, file_path: pathlib.Path, document: dict[str, Any]
) -> list[JobTypeProblem]:
    """Check what the schema of job-type files cannot express."""
    problems = []
    name = document.get("name")
    if isinstance(name, str) and name != file_path.stem:
        problems.append(
            JobTypeProblem(
                path,
                "$.name",
                f"name {name!r} does not match the file name {file_path.name!r}",
            )
        )

    parameters = document.get("parameters")
    properties: Mapping[str, Any] = {}
    if isinstance(parameters, dict):
        problems += _parameters_problems(path, parameters)
        if isinstance(parameters.get("properties"), dict):
            properties = parameters["properties"]

    command = document.get("command")
    if isinstance(command, list):
        for index, element in enumerate(command):
            if isinstance(element, str):
                problems += _template_problems(
                    path, element, ["command", index], properties, True
                )
                if index == 0 and "{" in element.replace("{{", ""):
                    problems.append(
                        JobTypeProblem(
                            path,
                            "$.command[0]",
                            "the program must be a plain string, without "
                            "placeholders",
                        )
                    )
            elif isinstance(element, list):
                for inner, template in enumerate(element):
                    if isinstance(template, str):
                        problems += _template_problems(
                            path,
                            template,
                            ["command", index, inner],
                            properties,
                            True,
                        )

    environment = document.get("environment")
    if isinstance(environment, dict):
        for key, template in environment.items():
            if isinstance(key, str) and key.startswith("OCPS_"):
                problems.append(
                    JobTypeProblem(
                        path,
                        json_path(["environment", key]),
                        "names starting with OCPS_ are reserved for the job manager",
                    )
                )
            if isinstance(template, str):
                problems += _template_problems(
                    path, template, ["environment", key], properties, True
                )

    globs = document.get("output_globs")
    if isinstance(globs, list):
        for index, pattern in enumerate(globs):
            if not isinstance(pattern, str):
                continue
            if pattern.startswith("/") or ".." in pattern.split("/"):
                problems.append(
                    JobTypeProblem(
                        path,
                        json_path(["output_globs", index]),
                        f"{pattern!r} must be relative to the work directory, "
                        "without '..'",
                    )
                )
    return problems


def _runner_problems(
    path: str,
    document: Mapping[str, Any],
    explicit: bool,
    runners: Collection[str] | None,
) -> list[JobTypeProblem]:
    """Check a job type's runner name and its ``runner_options``."""
    runner = document["runner"]
    origin = "" if explicit else f" (runner {runner!r} is the configured default)"
    if runners is not None and runner not in runners:
        available = ", ".join(sorted(runners)) or "none"
        return [
            JobTypeProblem(
                path,
                "$.runner" if explicit else "$",
                f"runner {runner!r} is not configured{origin}; available: "
                f"{available}",
            )
        ]
    try:
        check_runner_options(runner, document["runner_options"])
    except ValueError as e:
        return [JobTypeProblem(path, "$.runner_options", f"{e}{origin}")]
    return []


def check_file(
    file_path: pathlib.Path,
    *,
    default_runner: str = DEFAULTS["runner"],
    runners: Collection[str] | None = None,
) -> tuple[dict[str, Any] | None, list[JobTypeProblem]]:
    """Load and check one job-type file.

    Parameters
    ----------
    file_path : `pathlib.Path`
        The YAML file.
    default_runner : `str`
        Runner of a job type that names none.
    runners : `collections.abc.Collection` [`str`] or `None`
        Names of the runners available; a job type whose runner is not
        one of them is a problem. None: any name is accepted.

    Returns
    -------
    document : `dict` [`str`, `typing.Any`] or `None`
        The file's content with every optional key filled in (see
        `DEFAULTS`, with ``runner`` set to ``default_runner`` if absent)
        and ``additionalProperties: false`` added to the parameters
        schema unless it says otherwise; None if the file has problems.
    problems : `list` [`JobTypeProblem`]
        Every problem of the file; empty if it is valid.
    """
    path = str(file_path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return None, [JobTypeProblem(path, "$", f"cannot read the file: {e}")]
    try:
        document = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        return None, [_yaml_problem(path, e)]
    if document is None:
        return None, [JobTypeProblem(path, "$", "the file is empty")]
    if not isinstance(document, dict):
        return None, [
            JobTypeProblem(
                path,
                "$",
                f"the file must hold a mapping, not a {type(document).__name__}",
            )
        ]

    problems = list(_non_json_problems(path, document, []))
    if problems:
        return None, problems
    problems = _schema_problems(path, document)
    problems += _semantic_problems(path, file_path, document)
    if problems:
        return None, problems

    explicit = "runner" in document
    document = {**copy.deepcopy(DEFAULTS), "runner": default_runner, **document}
    problems = _runner_problems(path, document, explicit, runners)
    if problems:
        return None, problems
    document["execution_duration"] = float(document["execution_duration"])
    if not allows_unknown_parameters(document["parameters"]):
        document["parameters"]["additionalProperties"] = False
    return document, []


def check_directory(
    directory: str | pathlib.Path,
    *,
    default_runner: str = DEFAULTS["runner"],
    runners: Collection[str] | None = None,
) -> tuple[list[tuple[pathlib.Path, dict[str, Any]]], list[JobTypeProblem]]:
    """Load and check every job-type file of a directory.

    Parameters
    ----------
    directory : `str` or `pathlib.Path`
        The directory; its ``*.yaml`` and ``*.yml`` files are read, other
        files and hidden files are ignored.
    default_runner : `str`
        Runner of a job type that names none.
    runners : `collections.abc.Collection` [`str`] or `None`
        Names of the runners available; None accepts any runner name.

    Returns
    -------
    documents : `list` [`tuple` [`pathlib.Path`, `dict`]]
        Each valid file with its document as `check_file` gives it, in
        file name order.
    problems : `list` [`JobTypeProblem`]
        Every problem of every file, in file order; a missing or empty
        directory and a name defined twice are problems too.
    """
    directory = pathlib.Path(directory)
    if not directory.exists():
        return [], [
            JobTypeProblem(str(directory), "$", "the job-type directory does not exist")
        ]
    if not directory.is_dir():
        return [], [JobTypeProblem(str(directory), "$", "not a directory")]
    files = sorted(
        path
        for path in directory.iterdir()
        if path.suffix in (".yaml", ".yml")
        and not path.name.startswith(".")
        and path.is_file()
    )
    if not files:
        return [], [
            JobTypeProblem(
                str(directory),
                "$",
                "no job-type files (*.yaml, *.yml) in the directory",
            )
        ]

    documents: list[tuple[pathlib.Path, dict[str, Any]]] = []
    problems: list[JobTypeProblem] = []
    first_seen: dict[str, pathlib.Path] = {}
    for file_path in files:
        document, file_problems = check_file(
            file_path, default_runner=default_runner, runners=runners
        )
        problems += file_problems
        if document is None:
            continue
        name = document["name"]
        if name in first_seen:
            problems.append(
                JobTypeProblem(
                    str(file_path),
                    "$.name",
                    f"duplicate job type {name!r}, also defined in "
                    f"{str(first_seen[name])!r}",
                )
            )
            continue
        first_seen[name] = file_path
        documents.append((file_path, document))
    return documents, problems
