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

"""Job types: what a job runs, its parameters and their validation."""

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
import functools
import importlib
import logging
import pathlib
import re
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any

import jsonschema
import jsonschema.exceptions

from ..exceptions import (
    JobTypeError,
    JobTypeProblem,
    OcpsError,
    ParameterError,
    UnknownJobTypeError,
)
from . import templates
from .job_type_files import (
    JOB_TYPE_SCHEMA_PATH,
    ParameterValidator,
    check_directory,
    check_file,
    json_path,
)
from .templates import format_value

_log = logging.getLogger("ocps.job_types")


def _parameter_path(parts: Sequence[str | int]) -> str:
    """Write a path into the parameters as ``a.b[0]``."""
    return json_path(parts).removeprefix("$").removeprefix(".")


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

    @classmethod
    def from_document(
        cls, document: Mapping[str, Any], source_path: pathlib.Path
    ) -> JobType:
        """Make a job type from a checked job-type file.

        Parameters
        ----------
        document : `collections.abc.Mapping` [`str`, `typing.Any`]
            The document as `job_type_files.check_file` returns it: valid,
            with every optional key filled in.
        source_path : `pathlib.Path`
            The file it came from.

        Returns
        -------
        job_type : `JobType`
            The job type.
        """
        fields = {field.name for field in dataclasses.fields(cls)}
        values = {
            key: value
            for key, value in document.items()
            if key in fields and key != "parameters"
        }
        return cls(
            parameters_schema=document["parameters"],
            source_path=source_path,
            **values,
        )

    @functools.cached_property
    def _validator(self) -> Any:
        return ParameterValidator(
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
            The command (see `templates.render_command`); values are whole
            argv elements, never parsed by a shell.

        Raises
        ------
        ParameterError
            Raised if a list value would have to be embedded in a longer
            string, or a group refers to two list-valued parameters.
        """
        return templates.render_command(self.command, parameters)

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
        return templates.render_environment(self.environment, parameters)

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
            ``outputGlobs``. ``min`` and ``max`` are ``minimum`` and
            ``maximum``, or the exclusive bounds if only those are set;
            values keep their JSON types (the 2020 design had strings).
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


def load_job_type(
    path: str | pathlib.Path,
    *,
    default_runner: str = "local",
    runners: Collection[str] | None = None,
) -> JobType:
    """Load one job-type file.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        The YAML file.
    default_runner : `str`
        Runner of a job type that names none.
    runners : `collections.abc.Collection` [`str`] or `None`
        Names of the runners available; a type naming another runner is
        invalid. None: any runner name is accepted.

    Returns
    -------
    job_type : `JobType`
        The checked job type.

    Raises
    ------
    JobTypeError
        Raised with every problem of the file if it is invalid.
    """
    path = pathlib.Path(path)
    document, problems = check_file(
        path, default_runner=default_runner, runners=runners
    )
    if problems or document is None:
        raise JobTypeError(problems)
    return JobType.from_document(document, path)


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
    return check_directory(path)[1]


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
    def from_directory(
        cls,
        directory: str | pathlib.Path,
        *,
        default_runner: str = "local",
        runners: Collection[str] | None = None,
    ) -> JobTypeRegistry:
        """Load every ``*.yaml``/``*.yml`` file of a directory.

        Parameters
        ----------
        directory : `str` or `pathlib.Path`
            The directory of job-type files.
        default_runner : `str`
            Runner of the job types that name none.
        runners : `collections.abc.Collection` [`str`] or `None`
            Names of the runners available; a type naming another runner
            is invalid. None: any runner name is accepted (the job manager
            refuses a job whose runner it lacks at submit).

        Returns
        -------
        registry : `JobTypeRegistry`
            All the types.

        Raises
        ------
        JobTypeError
            Raised with every problem of every file (file, JSON path and
            reason) if any file is invalid (``runner_options`` that its
            runner refuses and a runner not in ``runners`` included), or
            the directory is missing or holds no job-type file.
        """
        documents, problems = check_directory(
            directory, default_runner=default_runner, runners=runners
        )
        if problems:
            raise JobTypeError(problems)
        job_types = [JobType.from_document(doc, path) for path, doc in documents]
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
