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

"""Check and assemble the options of a ``pipetask run`` that OCPS starts."""

__all__ = [
    "LOG_LEVELS",
    "OPTION_RULES",
    "OUTPUT_PREFIX",
    "OptionRule",
    "PipetaskConfig",
    "RESERVED_ENV_PREFIXES",
    "START_METHODS",
    "build_pipetask_argv",
    "check_environment",
    "check_pipeline",
    "expand_pipeline",
    "output_collection",
    "output_run",
    "parse_config",
    "preprocess",
    "split_list",
]

import dataclasses
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..exceptions import ParameterError

# This module must not import the Science Pipelines: it runs in the OCPS
# server at submit time as well as inside the job.

OUTPUT_PREFIX = "u/ocps"
"""Parent of every job's output collection, ``u/ocps/<job_id>``."""

LOG_LEVELS = frozenset(
    {"CRITICAL", "ERROR", "WARNING", "INFO", "VERBOSE", "DEBUG", "TRACE"}
)
"""Level names ``pipetask --log-level`` knows."""

RESERVED_ENV_PREFIXES = ("OCPS_", "LD_")
"""Variables the ``environment`` parameter may not set."""

START_METHODS = frozenset({"spawn", "fork", "forkserver"})
"""Values of ``pipetask run --start-method``."""

_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _positive_int(value: str) -> str | None:
    """Return why ``value`` is not an integer >= 1, or None if it is."""
    if not value.isdecimal() or int(value) < 1:
        return "must be an integer >= 1"
    return None


def _non_negative_int(value: str) -> str | None:
    """Return why ``value`` is not an integer >= 0, or None if it is."""
    if not value.isdecimal():
        return "must be an integer >= 0"
    return None


def _config_override(value: str) -> str | None:
    """Check the ``LABEL:NAME=VALUE`` form of ``-c``."""
    label, sep, rest = value.partition(":")
    if not (label and sep and "=" in rest and rest.partition("=")[0]):
        return "must have the form LABEL:NAME=VALUE"
    return None


def _config_file(value: str) -> str | None:
    """Check the ``LABEL:FILE`` form of ``-C``."""
    label, sep, path = value.partition(":")
    if not (label and sep and path):
        return "must have the form LABEL:FILE"
    return None


def _mock_failure(value: str) -> str | None:
    """Check the ``LABEL:EXCEPTION:WHERE`` form of ``--mock-failure``."""
    if value.count(":") < 2:
        return "must have the form LABEL:EXCEPTION:WHERE"
    return None


def _log_level(value: str) -> str | None:
    """Check the ``[COMPONENT=]LEVEL`` form of ``--log-level``."""
    level = value.rpartition("=")[2]
    if level.upper() not in LOG_LEVELS:
        return f"level must be one of {', '.join(sorted(LOG_LEVELS))}"
    return None


def _start_method(value: str) -> str | None:
    """Check the value of ``--start-method``."""
    if value not in START_METHODS:
        return f"must be one of {', '.join(sorted(START_METHODS))}"
    return None


def _collections(value: str) -> str | None:
    """Check a comma-separated list of collection names."""
    if not split_list(value):
        return "must name at least one collection"
    return None


@dataclasses.dataclass(frozen=True)
class OptionRule:
    """What OCPS does with one ``pipetask run`` option found in ``config``.

    Parameters
    ----------
    names : `tuple` [`str`, ...]
        Every spelling of the option; the long one is passed on.
    allowed : `bool`
        Whether callers may give it.
    reason : `str`
        Why it is allowed or refused; refusals quote it.
    takes_value : `bool`
        Whether the option consumes the next argument.
    check : callable or `None`
        Called with the value; returns why it is bad, or None.
    is_global : `bool`
        Whether the option goes before ``run`` (a ``pipetask`` option).
    """

    names: tuple[str, ...]
    allowed: bool
    reason: str
    takes_value: bool = False
    check: Callable[[str], str | None] | None = None
    is_global: bool = False


def _allow(
    *names: str,
    reason: str,
    value: bool = False,
    check: Callable[[str], str | None] | None = None,
    is_global: bool = False,
) -> OptionRule:
    """Make the rule of an allowed option; ``check`` implies a value."""
    return OptionRule(
        names=names,
        allowed=True,
        reason=reason,
        takes_value=value or check is not None,
        check=check,
        is_global=is_global,
    )


def _refuse(*names: str, reason: str) -> OptionRule:
    """Make the rule of a refused option."""
    return OptionRule(names=names, allowed=False, reason=reason)


OPTION_RULES: tuple[OptionRule, ...] = (
    # Options that tune how the given pipeline runs on the given data.
    _allow(
        "-c",
        "--config",
        check=_config_override,
        reason="overrides one task config field; checked by pipetask itself",
    ),
    _allow(
        "-C",
        "--config-file",
        check=_config_file,
        reason="a config override file on the site file system, trusted "
        "like the pipeline file itself",
    ),
    _allow(
        "-i",
        "--input",
        check=_collections,
        reason="extra input collections, merged with input_collection",
    ),
    _allow(
        "-j",
        "--processes",
        check=_positive_int,
        reason="number of processes; -j 1 is fastest for small quanta",
    ),
    _allow(
        "-n",
        "--cores-per-quantum",
        check=_positive_int,
        reason="a resource hint to the tasks",
    ),
    _allow(
        "--memory-per-quantum",
        value=True,
        reason="a resource hint to the tasks",
    ),
    _allow(
        "--timeout",
        check=_non_negative_int,
        reason="a wall-time limit for multiprocessing; can only stop work",
    ),
    _allow(
        "--start-method",
        check=_start_method,
        reason="how -j > 1 starts its processes",
    ),
    _allow(
        "--register-dataset-types",
        reason="OCPS always passes it; accepted so callers need not care",
    ),
    _allow("--no-versions", reason="skips the packages dataset; writes less"),
    _allow("--fail-fast", reason="stops at the first failed quantum"),
    _allow(
        "--skip-existing",
        reason="skips quanta whose outputs exist; only does less work",
    ),
    _allow(
        "--skip-existing-in",
        check=_collections,
        reason="skips quanta whose outputs exist in the named collections",
    ),
    _allow(
        "--clobber-outputs",
        reason="replaces partial outputs of failed quanta in the job's own run",
    ),
    _allow(
        "--extend-run",
        reason="adds to the job's own output run instead of a new one",
    ),
    _allow(
        "--select-tasks",
        value=True,
        reason="narrows the pipeline to some of its own tasks",
    ),
    _allow(
        "--instrument",
        value=True,
        reason="loads an instrument's config overrides",
    ),
    _allow(
        "--dataset-query-constraint",
        value=True,
        reason="how inputs constrain the data query; narrows only",
    ),
    _allow(
        "--qgraph-datastore-records",
        reason="stores datastore records in the graph; no effect on outputs",
    ),
    _allow(
        "--raise-on-partial-outputs",
        reason="treats partial outputs as failures",
    ),
    _allow(
        "--no-raise-on-partial-outputs",
        reason="accepts partial outputs as success",
    ),
    _allow(
        "--enable-implicit-threading",
        reason="lets numerical libraries use threads",
    ),
    _allow("--skip-init-writes", reason="skips init-outputs already written"),
    _allow(
        "--init-only",
        reason="only registers dataset types and writes init-outputs",
    ),
    _allow("--mock", reason="runs mock tasks instead of the real ones"),
    _allow(
        "--mock-failure",
        check=_mock_failure,
        reason="makes chosen mock quanta fail, for testing",
    ),
    _allow(
        "--unmocked-dataset-types",
        value=True,
        reason="with --mock, reads these inputs for real",
    ),
    _allow(
        "--log-level",
        check=_log_level,
        is_global=True,
        reason="log verbosity (e.g. mytasks=INFO for tasks outside lsst); "
        "moved before 'run'",
    ),
    # Options that would redirect the run; OCPS sets these itself.
    _refuse("-b", "--butler-config", reason="the repo is the 'butler' parameter"),
    _refuse(
        "-o",
        "--output",
        reason=f"outputs always go to {OUTPUT_PREFIX}/<jobId>",
    ),
    _refuse(
        "--output-run",
        reason=f"the output run is always {OUTPUT_PREFIX}/<jobId>/run",
    ),
    _refuse("-p", "--pipeline", reason="the pipeline is the 'pipeline' parameter"),
    _refuse(
        "-d",
        "--data-query",
        reason="the data query is the 'data_query' parameter",
    ),
    _refuse(
        "--data-id-table",
        reason="data selection is the 'data_query' parameter",
    ),
    _refuse(
        "-g",
        "--qgraph",
        "--qgraph-id",
        "--qgraph-node-id",
        reason="would run a saved graph instead of the pipeline",
    ),
    _refuse(
        "-@",
        "--options-file",
        reason="would read further options that OCPS cannot check",
    ),
    _refuse(
        "-t",
        "--task",
        "--delete",
        reason="would change the tasks of the pipeline",
    ),
    _refuse(
        "--summary",
        "--log-file",
        reason="OCPS writes these into the job's work directory",
    ),
    _refuse(
        "-s",
        "--save-pipeline",
        "--pipeline-dot",
        "--pipeline-mermaid",
        "-q",
        "--save-qgraph",
        "--qgraph-dot",
        "--qgraph-mermaid",
        "--profile",
        reason="would write a file outside the job's work directory",
    ),
    _refuse(
        "--replace-run",
        "--prune-replaced",
        "--rebase",
        reason="would change or delete existing collections",
    ),
    _refuse("--pdb", reason="would wait for an interactive debugger"),
    _refuse(
        "--debug",
        "--show",
        "-h",
        "--help",
        reason="for interactive use; may print instead of running",
    ),
    _refuse(
        "--coverage",
        "--cov-report",
        "--no-cov-report",
        "--cov-packages",
        reason="development tooling, not for operations",
    ),
    _refuse("--graph-fixup", reason="would reorder the graph with arbitrary code"),
    _refuse(
        "--long-log",
        "--no-log-tty",
        "--log-tty",
        "--log-label",
        reason="OCPS sets the logging of the job",
    ),
)
"""The options OCPS knows; any other option in ``config`` is refused."""

_RULES_BY_NAME: dict[str, OptionRule] = {
    name: rule for rule in OPTION_RULES for name in rule.names
}


def split_list(text: str) -> list[str]:
    """Split a comma-separated list, dropping blanks and duplicates.

    Parameters
    ----------
    text : `str`
        E.g. ``"LATISS/raw/all, LATISS/calib"``.

    Returns
    -------
    items : `list` [`str`]
        Stripped, non-empty items in their first-seen order.
    """
    items: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if item and item not in items:
            items.append(item)
    return items


def output_collection(job_id: str) -> str:
    """Return the CHAINED output collection of a job."""
    return f"{OUTPUT_PREFIX}/{job_id}"


def output_run(job_id: str) -> str:
    """Return the output RUN collection of a job."""
    return f"{OUTPUT_PREFIX}/{job_id}/run"


@dataclasses.dataclass
class PipetaskConfig:
    """The ``config`` parameter, checked and sorted.

    Parameters
    ----------
    inputs : `list` [`str`]
        Collections from ``-i`` options, in order.
    global_args : `list` [`str`]
        Arguments that go before ``run`` (``--log-level``).
    run_args : `list` [`str`]
        Other ``run`` arguments, with canonical option names, in order.
    """

    inputs: list[str] = dataclasses.field(default_factory=list)
    global_args: list[str] = dataclasses.field(default_factory=list)
    run_args: list[str] = dataclasses.field(default_factory=list)


def parse_config(config: str) -> PipetaskConfig:
    """Split and check the ``config`` parameter (extra pipetask options).

    Parameters
    ----------
    config : `str`
        Options as a caller types them, e.g.
        ``-j 1 -i LATISS/calib --register-dataset-types -c isr:doDark=False``.
        Quoting follows POSIX shell rules; nothing is ever run by a shell.

    Returns
    -------
    parsed : `PipetaskConfig`
        The options sorted by where they go.

    Raises
    ------
    ParameterError
        Raised if the text cannot be split, or names an option that is
        unknown or not allowed (the message names it and says why), or an
        option lacks its value or has a bad one.
    """
    try:
        tokens = shlex.split(config)
    except ValueError as e:
        raise ParameterError(f"parameter 'config': cannot split {config!r}: {e}") from e

    parsed = PipetaskConfig()
    seen_flags: set[str] = set()
    position = 0
    while position < len(tokens):
        token = tokens[position]
        position += 1
        name, value = _split_token(token)
        rule = _RULES_BY_NAME.get(name)
        if rule is None:
            if not token.startswith("-"):
                raise ParameterError(
                    f"parameter 'config': unexpected argument {token!r}; "
                    "only options are allowed"
                )
            raise ParameterError(
                f"parameter 'config': option {name!r} is unknown to OCPS "
                "and therefore not allowed"
            )
        if not rule.allowed:
            raise ParameterError(
                f"parameter 'config': option {name!r} is not allowed: {rule.reason}"
            )

        canonical = next((n for n in rule.names if n.startswith("--")), name)
        if not rule.takes_value:
            if value is not None:
                raise ParameterError(
                    f"parameter 'config': option {name!r} takes no value"
                )
            if canonical not in seen_flags:
                seen_flags.add(canonical)
                parsed.run_args.append(canonical)
            continue

        if value is None:
            if position >= len(tokens):
                raise ParameterError(
                    f"parameter 'config': option {name!r} needs a value"
                )
            value = tokens[position]
            position += 1
        if value.startswith("-"):
            raise ParameterError(
                f"parameter 'config': option {name!r} needs a value, "
                f"not the option-like {value!r}"
            )
        if rule.check is not None:
            problem = rule.check(value)
            if problem is not None:
                raise ParameterError(
                    f"parameter 'config': option {name!r} value {value!r} {problem}"
                )

        if canonical == "--input":
            parsed.inputs.extend(i for i in split_list(value) if i not in parsed.inputs)
        elif rule.is_global:
            parsed.global_args += [canonical, value]
        else:
            parsed.run_args += [canonical, value]
    return parsed


def _split_token(token: str) -> tuple[str, str | None]:
    """Split ``--name=value`` and ``-jVALUE`` forms into name and value.

    A refused short option is split too (``-oX`` is ``-o``), so that the
    refusal names it.
    """
    if token.startswith("--"):
        name, sep, value = token.partition("=")
        return name, (value if sep else None)
    if token.startswith("-") and len(token) > 2:
        name = token[:2]
        rule = _RULES_BY_NAME.get(name)
        if rule is not None and (rule.takes_value or not rule.allowed):
            return name, token[2:]
    return token, None


def check_pipeline(pipeline: str) -> None:
    """Check the syntax of a pipeline location without expanding it.

    Parameters
    ----------
    pipeline : `str`
        E.g. ``${CP_PIPE_DIR}/pipelines/LATISS/cpBias.yaml#isr``.

    Raises
    ------
    ParameterError
        Raised if it is empty or holds a malformed ``${...}`` reference.
    """
    path = pipeline.partition("#")[0]
    if not path.strip():
        raise ParameterError("parameter 'pipeline': must name a pipeline file")
    for match in _VARIABLE.finditer(path):
        braced = match.group("braced")
        if braced is not None and not _NAME.fullmatch(braced):
            raise ParameterError(
                f"parameter 'pipeline': {match.group(0)!r} is not a valid "
                "environment variable reference"
            )
    if "${" in _VARIABLE.sub("", path):
        raise ParameterError(
            f"parameter 'pipeline': unterminated '${{' in {pipeline!r}"
        )


def expand_pipeline(pipeline: str, environ: Mapping[str, str]) -> str:
    """Expand ``${VAR}`` and ``$VAR`` in a pipeline location.

    Parameters
    ----------
    pipeline : `str`
        Location with an optional ``#subset`` suffix, which is kept as is.
    environ : `collections.abc.Mapping` [`str`, `str`]
        The job's environment.

    Returns
    -------
    expanded : `str`
        The location with every variable replaced.

    Raises
    ------
    ParameterError
        Raised if the syntax is bad (see `check_pipeline`) or a variable is
        not defined in ``environ``.
    """
    check_pipeline(pipeline)
    path, sep, subset = pipeline.partition("#")

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name not in environ:
            raise ParameterError(
                f"parameter 'pipeline': environment variable {name!r} used in "
                f"{pipeline!r} is not defined in the job's environment"
            )
        return environ[name]

    return _VARIABLE.sub(replace, path) + sep + subset


def build_pipetask_argv(
    *,
    job_id: str,
    work_dir: str | os.PathLike[str],
    butler: str,
    pipeline: str,
    data_query: str,
    input_collections: Iterable[str],
    config: PipetaskConfig,
    program: str = "pipetask",
) -> list[str]:
    """Assemble the complete ``pipetask run`` command of a job.

    Parameters
    ----------
    job_id : `str`
        The job's id; outputs go to ``u/ocps/<job_id>``.
    work_dir : `str` or `os.PathLike`
        The job's work directory; gets ``pipetask.json`` (the log) and
        ``summary.json``.
    butler : `str`
        Butler repo.
    pipeline : `str`
        Expanded pipeline location (see `expand_pipeline`).
    data_query : `str`
        Butler query expression; "" for none.
    input_collections : `collections.abc.Iterable` [`str`]
        Input collections from the ``input_collection`` parameter; those
        of ``config`` follow them.
    config : `PipetaskConfig`
        Checked extra options (see `parse_config`).
    program : `str`, optional
        argv[0].

    Returns
    -------
    argv : `list` [`str`]
        The command, for `subprocess` or for pipetask's own entry point.
    """
    work = os.fspath(work_dir)
    inputs = list(dict.fromkeys([*input_collections, *config.inputs]))
    argv = [
        program,
        "--log-file",
        os.path.join(work, "pipetask.json"),
        "--long-log",
        "--no-log-tty",
        *config.global_args,
        "run",
        "-b",
        butler,
    ]
    if inputs:
        argv += ["-i", ",".join(inputs)]
    argv += [
        "-o",
        output_collection(job_id),
        "--output-run",
        output_run(job_id),
        "-p",
        pipeline,
    ]
    if data_query:
        argv += ["-d", data_query]
    argv += [
        "--register-dataset-types",
        "--summary",
        os.path.join(work, "summary.json"),
    ]
    argv += [arg for arg in config.run_args if arg != "--register-dataset-types"]
    return argv


def check_environment(variables: Any) -> dict[str, str]:
    """Check the ``environment`` parameter (extra variables of the run).

    Parameters
    ----------
    variables : `typing.Any`
        Should be a mapping of variable names to strings.

    Returns
    -------
    variables : `dict` [`str`, `str`]
        The same variables.

    Raises
    ------
    ParameterError
        Raised if it is not such a mapping or names a variable that a
        request may not set: ``OCPS_*`` (the job manager's) or ``LD_*``
        (the dynamic loader's).
    """
    if not isinstance(variables, Mapping) or not all(
        isinstance(value, str) for value in variables.values()
    ):
        raise ParameterError(
            "parameter 'environment': must be an object of string values"
        )
    for name in variables:
        if not _NAME.fullmatch(name) or name.startswith(RESERVED_ENV_PREFIXES):
            raise ParameterError(
                f"parameter 'environment': variable {name!r} may not be set"
            )
    return dict(variables)


def preprocess(job_type: Any, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Check the parameters of a pipetask job at submit time.

    This is the ``preprocessor`` of ``config/job_types/pipetask.yaml``; the
    job's wrapper checks the same again in the job.

    Parameters
    ----------
    job_type : `lsst.ts.ocps.jobs.job_types.JobType`
        The job type (unused).
    parameters : `collections.abc.Mapping` [`str`, `typing.Any`]
        Parameters already validated against the type's JSON Schema.

    Returns
    -------
    parameters : `dict` [`str`, `typing.Any`]
        The same parameters.

    Raises
    ------
    ParameterError
        Raised if ``config`` holds a refused or unknown option or a bad
        value, ``pipeline`` is malformed or ``environment`` sets a
        reserved variable.
    """
    check_pipeline(str(parameters["pipeline"]))
    parse_config(str(parameters.get("config", "")))
    check_environment(parameters.get("environment", {}))
    if not str(parameters.get("butler", "")).strip():
        raise ParameterError("parameter 'butler': must name a Butler repo")
    return dict(parameters)
