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

"""Job types: loading and checking their YAML files, parameters, argv."""

from __future__ import annotations

__all__ = [
    "JOB_TYPE_SCHEMA_PATH",
    "JobType",
    "JobTypeRegistry",
    "format_value",
    "load_job_type",
    "validate_directory",
]

import collections.abc
import copy
import dataclasses
import difflib
import functools
import importlib
import json
import logging
import math
import pathlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import yaml

from .exceptions import (
    JobTypeError,
    JobTypeProblem,
    OcpsError,
    ParameterError,
    UnknownJobTypeError,
)

JOB_TYPE_SCHEMA_PATH = (
    pathlib.Path(__file__).resolve().parents[4] / "schema" / "job_type.schema.yaml"
)
"""The JSON Schema of a job-type file: ``schema/`` next to ``python/``.

The package is used from its source tree (an editable install), so the
schema is found relative to this module.
"""

_log = logging.getLogger("ocps.job_types")

_TEMPLATE_TOKEN = re.compile(
    r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|\{([^{}]*)\}|[{}]"
)
"""One token of a template: ``{{``, ``}}``, a placeholder, or a stray
brace (groups: 1 a valid name, 2 an invalid name)."""

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
the ``units`` annotation. Anything else is taken for a typo."""

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


_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", _is_strict_integer
    ),
)
"""Draft 2020-12 validator that refuses 5.0 where an integer is wanted."""


@dataclasses.dataclass(frozen=True)
class _Placeholder:
    """A ``{name}`` in a template."""

    name: str


_Token = str | _Placeholder


def _parse_template(text: str) -> list[_Token]:
    """Split a template into literal text and placeholders.

    Parameters
    ----------
    text : `str`
        The template, e.g. ``--limit={limit}``.

    Returns
    -------
    tokens : `list` [`str` or `_Placeholder`]
        Literal text (with ``{{``/``}}`` turned into braces) and
        placeholders, in order; adjacent literals are merged.

    Raises
    ------
    ValueError
        Raised if a brace is unmatched or a placeholder name is invalid.
    """
    tokens: list[_Token] = []
    literal: list[str] = []
    position = 0
    for match in _TEMPLATE_TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif match.group(1) is not None:
            if any(literal):
                tokens.append("".join(literal))
            literal = []
            tokens.append(_Placeholder(match.group(1)))
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


def _placeholder_names(tokens: Iterable[_Token]) -> list[str]:
    """Names of the placeholders among template tokens, in order."""
    return [token.name for token in tokens if isinstance(token, _Placeholder)]


def _has_value(value: Any) -> bool:
    """Does a parameter value fill a placeholder (not null, not [])?"""
    return value is not None and not (isinstance(value, list) and not value)


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
        Python's repr; lists and objects as compact JSON.
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


def _substitute(tokens: Sequence[_Token], values: Mapping[str, Any]) -> str:
    """Join template tokens, formatting each placeholder's value."""
    return "".join(
        format_value(values[token.name]) if isinstance(token, _Placeholder) else token
        for token in tokens
    )


def _json_path(parts: Iterable[str | int]) -> str:
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


def _parameter_path(parts: Sequence[str | int]) -> str:
    """Write a path into the parameters as ``a.b[0]``."""
    return _json_path(parts).removeprefix("$").removeprefix(".")


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


@functools.cache
def _import_hook(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function`` (remembered once found)."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    hook = getattr(module, attribute)
    if not callable(hook):
        raise TypeError(f"{spec} is not callable")
    return hook


@dataclasses.dataclass(frozen=True)
class JobType:
    """One kind of job: its command template and parameter schema.

    Parameters
    ----------
    name : `str`
        Name, ``[a-z][a-z0-9_-]*``; also the stem of its file.
    description : `str`
        What a job of this type does.
    version : `str`
        Version of the type, recorded with each job.
    command : `list` [`str` or `list` [`str`]]
        argv template; a nested list is an optional group (see
        ``schema/job_type.schema.yaml``).
    parameters_schema : `dict` [`str`, `typing.Any`]
        JSON Schema of the parameters object; ``additionalProperties`` is
        false unless the file says otherwise.
    environment : `dict` [`str`, `str`]
        Environment variable templates.
    execution_duration : `float`
        Wall-clock limit in seconds; 0 means unlimited.
    max_concurrent : `int`
        Limit of executing jobs of this type; 0 means unlimited.
    runner : `str`
        Name of the runner, e.g. "local" or "slurm".
    runner_options : `dict` [`str`, `typing.Any`]
        Options for the runner.
    output_globs : `list` [`str`]
        Globs relative to the job's work dir whose matches become results.
    preprocessor : `str` or `None`
        Optional "package.module:function" run by `validate_parameters`.
    source_path : `pathlib.Path`
        The file the type came from.
    """

    name: str
    description: str
    version: str
    command: list[str | list[str]]
    parameters_schema: dict
    environment: dict[str, str]
    execution_duration: float
    max_concurrent: int
    runner: str
    runner_options: dict
    output_globs: list[str]
    preprocessor: str | None
    source_path: pathlib.Path

    @functools.cached_property
    def _validator(self) -> Any:
        return _StrictValidator(
            self.parameters_schema,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """Check job parameters, fill in defaults, run the preprocessor.

        Parameters
        ----------
        parameters : `collections.abc.Mapping` [`str`, `typing.Any`]
            Parameters as submitted; not modified.

        Returns
        -------
        parameters : `dict` [`str`, `typing.Any`]
            A new dict: the parameters with every default filled in
            (nested objects too), as returned by the preprocessor if any.

        Raises
        ------
        ParameterError
            Raised if the parameters do not match the schema (the message
            lists every problem, each naming its parameter) or if the
            preprocessor refuses them.
        OcpsError
            Raised if the preprocessor cannot be imported, fails in an
            unexpected way or returns something other than a mapping.
        """
        if not isinstance(parameters, Mapping):
            raise ParameterError(
                f"parameters must be a JSON object, not {type(parameters).__name__}"
            )
        filled = copy.deepcopy(dict(parameters))
        _fill_defaults(self.parameters_schema, filled)

        errors = sorted(
            self._validator.iter_errors(filled),
            key=lambda error: [str(part) for part in error.absolute_path],
        )
        if errors:
            messages: list[str] = []
            for error in errors:
                messages += _describe_parameter_error(error)
            raise ParameterError("; ".join(sorted(messages)))

        if self.preprocessor is None:
            return filled
        return self._run_preprocessor(filled)

    def _run_preprocessor(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Call the preprocessor hook on valid parameters."""
        assert self.preprocessor is not None
        try:
            hook = _import_hook(self.preprocessor)
        except Exception as e:
            raise OcpsError(
                f"job type {self.name!r}: cannot import preprocessor "
                f"{self.preprocessor!r}: {e!r}"
            ) from e
        try:
            result = hook(self, parameters)
        except OcpsError:
            raise
        except Exception as e:
            raise OcpsError(
                f"job type {self.name!r}: preprocessor {self.preprocessor!r} "
                f"failed: {e!r}"
            ) from e
        if not isinstance(result, Mapping):
            raise OcpsError(
                f"job type {self.name!r}: preprocessor {self.preprocessor!r} "
                f"returned {type(result).__name__}, not a mapping"
            )
        return dict(result)

    def render_argv(self, parameters: Mapping[str, Any]) -> list[str]:
        """Fill the command template with validated parameters.

        Parameters
        ----------
        parameters : `collections.abc.Mapping` [`str`, `typing.Any`]
            Parameters as returned by `validate_parameters`.

        Returns
        -------
        argv : `list` [`str`]
            The command; values are single argv elements, never parsed by
            a shell.

        Raises
        ------
        ParameterError
            Raised if a list value would have to be embedded in a longer
            string, or a group refers to two list-valued parameters.
        """
        argv: list[str] = []
        for element in self.command:
            if isinstance(element, str):
                argv += _render_element(element, parameters)
            else:
                argv += _render_group(element, parameters)
        return argv

    def render_environment(self, parameters: Mapping[str, Any]) -> dict[str, str]:
        """Fill the environment templates with validated parameters.

        Parameters
        ----------
        parameters : `collections.abc.Mapping` [`str`, `typing.Any`]
            Parameters as returned by `validate_parameters`.

        Returns
        -------
        environment : `dict` [`str`, `str`]
            The variables whose placeholders all have values; lists and
            objects are written as compact JSON.
        """
        environment: dict[str, str] = {}
        for name, template in self.environment.items():
            tokens = _parse_template(template)
            names = _placeholder_names(tokens)
            if all(_has_value(parameters.get(key)) for key in names):
                environment[name] = _substitute(tokens, parameters)
        return environment

    def to_schema_dict(self) -> dict[str, Any]:
        """Describe the type for ``GET /schema/{job_type}``.

        Returns
        -------
        schema : `dict` [`str`, `typing.Any`]
            JSON-ready: ``name``, ``description``, ``version``,
            ``parameters`` (the JSON Schema), ``env`` (one entry per
            parameter in the prototype's form: ``name``, ``type``,
            ``units``, ``default``, ``min``, ``max``, ``description``, plus
            ``required`` and ``enum``; absent items are null),
            ``executionDuration``, ``maxConcurrent``, ``runner`` and
            ``outputGlobs``.
        """
        properties = self.parameters_schema.get("properties", {})
        required = set(self.parameters_schema.get("required", ()))
        env = []
        for name, prop in properties.items():
            env.append(
                {
                    "name": name,
                    "type": prop.get("type"),
                    "units": prop.get("units"),
                    "default": prop.get("default"),
                    "min": prop.get("minimum", prop.get("exclusiveMinimum")),
                    "max": prop.get("maximum", prop.get("exclusiveMaximum")),
                    "description": prop.get("description"),
                    "required": name in required,
                    "enum": prop.get("enum"),
                }
            )
        return {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "parameters": copy.deepcopy(self.parameters_schema),
            "env": env,
            "executionDuration": self.execution_duration,
            "maxConcurrent": self.max_concurrent,
            "runner": self.runner,
            "outputGlobs": list(self.output_globs),
        }


def _fill_defaults(schema: Mapping[str, Any], instance: dict[str, Any]) -> None:
    """Fill in the defaults of absent properties, recursively, in place.

    Only ``properties`` are followed; defaults under ``$ref``, ``allOf``
    and the like are not applied.
    """
    properties = schema.get("properties", {})
    for name, subschema in properties.items():
        if not isinstance(subschema, Mapping):
            continue
        if name not in instance and "default" in subschema:
            instance[name] = copy.deepcopy(subschema["default"])
        if isinstance(instance.get(name), dict):
            _fill_defaults(subschema, instance[name])


def _describe_parameter_error(
    error: jsonschema.exceptions.ValidationError,
) -> list[str]:
    """Write one validation error of job parameters as messages."""
    path = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required":
        for name in error.validator_value:
            if error.message == f"{name!r} is a required property":
                return [f"parameter {_parameter_path(path + [name])!r}: required"]
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        if isinstance(instance, dict):
            known = list(error.schema.get("properties", {}))
            patterns = list(error.schema.get("patternProperties", {}))
            unknown = [
                key
                for key in instance
                if key not in known and not any(re.search(p, key) for p in patterns)
            ]
            if unknown:
                known_text = ", ".join(known) if known else "none"
                return [
                    f"parameter {_parameter_path(path + [key])!r}: unknown "
                    f"parameter (known: {known_text})"
                    for key in unknown
                ]
    if not path:
        return [f"parameters: {error.message}"]
    return [f"parameter {_parameter_path(path)!r}: {error.message}"]


def _render_element(template: str, values: Mapping[str, Any]) -> list[str]:
    """Render a top-level command element to zero or more argv elements."""
    tokens = _parse_template(template)
    names = _placeholder_names(tokens)
    if not all(_has_value(values.get(name)) for name in names):
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
    parsed = [_parse_template(template) for template in group]
    names = [name for tokens in parsed for name in _placeholder_names(tokens)]
    if not all(_has_value(values.get(name)) for name in names):
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
                    _json_path(parts),
                    f"key {key!r} is a {type(key).__name__}; keys must be strings "
                    "(quote it)",
                )
            else:
                yield from _non_json_problems(path, item, parts + [key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_json_problems(path, item, parts + [index])
    elif isinstance(value, float) and not math.isfinite(value):
        yield JobTypeProblem(path, _json_path(parts), f"{value!r} is not a JSON number")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        yield JobTypeProblem(
            path,
            _json_path(parts),
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
                        JobTypeProblem(path, _json_path(parts + [key]), reason)
                    )
        elif error.validator == "required" and isinstance(error.instance, dict):
            for key in error.validator_value:
                if key not in error.instance:
                    problems.append(
                        JobTypeProblem(
                            path, _json_path(parts + [key]), "required key missing"
                        )
                    )
        else:
            reason = error.message
            if "propertyNames" in error.absolute_schema_path:
                parts.append(error.instance)
            if error.validator == "pattern" and "$comment" in error.schema:
                reason = f"{error.instance!r} is invalid: {error.schema['$comment']}"
            problems.append(JobTypeProblem(path, _json_path(parts), reason))
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
                _json_path(base + list(error.absolute_path)),
                f"not a valid JSON Schema: {error.message}",
            )
        )
    if problems:
        return problems

    # Typos such as "minimun" are legal JSON Schema (unknown keywords are
    # ignored), so they would silently drop a limit.
    root = _StrictValidator(parameters)
    for subschema, parts in _walk_subschemas(parameters, base):
        for keyword in subschema:
            if keyword not in _SCHEMA_KEYWORDS:
                reason = f"unknown JSON Schema keyword {keyword!r}"
                close = difflib.get_close_matches(keyword, _SCHEMA_KEYWORDS, n=1)
                if close:
                    reason += f" (did you mean {close[0]!r}?)"
                problems.append(
                    JobTypeProblem(path, _json_path(parts + [keyword]), reason)
                )
        if "default" in subschema:
            for error in root.evolve(schema=subschema).iter_errors(
                subschema["default"]
            ):
                problems.append(
                    JobTypeProblem(
                        path,
                        _json_path(parts + ["default"] + list(error.absolute_path)),
                        f"default {subschema['default']!r} is invalid: {error.message}",
                    )
                )

    properties = parameters.get("properties", {})
    if not _allows_unknown(parameters):
        for index, name in enumerate(parameters.get("required", [])):
            if name not in properties:
                problems.append(
                    JobTypeProblem(
                        path,
                        _json_path(base + ["required", index]),
                        f"required parameter {name!r} is not declared in properties",
                    )
                )
    return problems


def _allows_unknown(parameters: Mapping[str, Any]) -> bool:
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
    field = _json_path(parts)
    try:
        tokens = _parse_template(template)
    except ValueError as e:
        return [JobTypeProblem(path, field, str(e))]

    problems = []
    names = _placeholder_names(tokens)
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
                        _json_path(["environment", key]),
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
                        _json_path(["output_globs", index]),
                        f"{pattern!r} must be relative to the work directory, "
                        "without '..'",
                    )
                )
    return problems


def _load_file(
    file_path: pathlib.Path,
) -> tuple[JobType | None, list[JobTypeProblem]]:
    """Load and check one job-type file; never raises for bad content."""
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

    parameters = copy.deepcopy(document["parameters"])
    if not _allows_unknown(parameters):
        parameters["additionalProperties"] = False
    job_type = JobType(
        name=document["name"],
        description=document["description"],
        version=document["version"],
        command=document["command"],
        parameters_schema=parameters,
        environment=document.get("environment", {}),
        execution_duration=float(document.get("execution_duration", 0)),
        max_concurrent=document.get("max_concurrent", 0),
        runner=document.get("runner", "local"),
        runner_options=document.get("runner_options", {}),
        output_globs=document.get("output_globs", []),
        preprocessor=document.get("preprocessor"),
        source_path=file_path,
    )
    return job_type, []


def _load_directory(
    directory: str | pathlib.Path,
) -> tuple[list[JobType], list[JobTypeProblem]]:
    """Load every job-type file of a directory, collecting all problems."""
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

    job_types: list[JobType] = []
    problems: list[JobTypeProblem] = []
    first_seen: dict[str, pathlib.Path] = {}
    for file_path in files:
        job_type, file_problems = _load_file(file_path)
        problems += file_problems
        if job_type is None:
            continue
        if job_type.name in first_seen:
            problems.append(
                JobTypeProblem(
                    str(file_path),
                    "$.name",
                    f"duplicate job type {job_type.name!r}, also defined in "
                    f"{str(first_seen[job_type.name])!r}",
                )
            )
            continue
        first_seen[job_type.name] = file_path
        job_types.append(job_type)
    return job_types, problems


def load_job_type(path: str | pathlib.Path) -> JobType:
    """Load one job-type file.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        The YAML file.

    Returns
    -------
    job_type : `JobType`
        The checked job type.

    Raises
    ------
    JobTypeError
        Raised with every problem of the file if it is invalid.
    """
    job_type, problems = _load_file(pathlib.Path(path))
    if problems or job_type is None:
        raise JobTypeError(problems)
    return job_type


def validate_directory(path: str | pathlib.Path) -> list[JobTypeProblem]:
    """Check a directory of job-type files without raising.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        The directory.

    Returns
    -------
    problems : `list` [`JobTypeProblem`]
        Every problem of every file, in file order; empty if all is well.
        A missing or empty directory is a problem too.
    """
    return _load_directory(path)[1]


class JobTypeRegistry(collections.abc.Mapping[str, JobType]):
    """The loaded job types, by name (iterated in name order).

    Parameters
    ----------
    job_types : `collections.abc.Iterable` [`JobType`]
        The types; names must be unique.

    Raises
    ------
    ValueError
        Raised if two types have the same name.
    """

    def __init__(self, job_types: Iterable[JobType] = ()) -> None:
        types: dict[str, JobType] = {}
        for job_type in job_types:
            if job_type.name in types:
                raise ValueError(f"duplicate job type {job_type.name!r}")
            types[job_type.name] = job_type
        self._types = dict(sorted(types.items()))

    @classmethod
    def from_directory(cls, directory: str | pathlib.Path) -> JobTypeRegistry:
        """Load every ``*.yaml``/``*.yml`` file of a directory.

        Parameters
        ----------
        directory : `str` or `pathlib.Path`
            The directory of job-type files.

        Returns
        -------
        registry : `JobTypeRegistry`
            All the types.

        Raises
        ------
        JobTypeError
            Raised with every problem of every file (file, JSON path and
            reason) if any file is invalid, or the directory is missing or
            holds no job-type file.
        """
        job_types, problems = _load_directory(directory)
        if problems:
            raise JobTypeError(problems)
        _log.info(
            "loaded %d job types from %s: %s",
            len(job_types),
            directory,
            ", ".join(job_type.name for job_type in job_types),
        )
        return cls(job_types)

    def get_type(self, name: str) -> JobType:
        """Get a job type by name.

        Parameters
        ----------
        name : `str`
            The type's name.

        Returns
        -------
        job_type : `JobType`
            The type.

        Raises
        ------
        UnknownJobTypeError
            Raised if no type has that name.
        """
        try:
            return self._types[name]
        except (KeyError, TypeError):
            known = ", ".join(self._types) or "none"
            raise UnknownJobTypeError(
                f"unknown job type {name!r} (known: {known})"
            ) from None

    def to_schema_list(self) -> list[dict[str, Any]]:
        """Describe every type, for ``GET /schema/all``.

        Returns
        -------
        schemas : `list` [`dict` [`str`, `typing.Any`]]
            `JobType.to_schema_dict` of each type, in name order.
        """
        return [job_type.to_schema_dict() for job_type in self._types.values()]

    def __getitem__(self, name: str) -> JobType:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)
