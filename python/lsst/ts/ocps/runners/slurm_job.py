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


"""What a ts_ocps job is to Slurm: options, batch script, final states."""

__all__ = [
    "JOB_NAME_PREFIX",
    "OPTION_KEYS",
    "RESERVED_OPTIONS",
    "SLURM_STATES",
    "SlurmSpecError",
    "check_extra_options",
    "check_options",
    "is_reserved",
    "make_sbatch_options",
    "make_script",
    "map_outcome",
    "slurm_path",
]

import collections.abc
import math
import pathlib
import re
import shlex
import signal
from typing import Any

from .base import LaunchSpec, RunOutcome, RunStatus

SLURM_STATES: dict[str, str] = {
    "PENDING": "queued",
    "CONFIGURING": "queued",
    "REQUEUED": "queued",
    "REQUEUE_FED": "queued",
    "REQUEUE_HOLD": "queued",
    "RESV_DEL_HOLD": "queued",
    "RUNNING": "running",
    "COMPLETING": "running",
    "SUSPENDED": "running",
    "STOPPED": "running",
    "SIGNALING": "running",
    "STAGE_OUT": "running",
    "RESIZING": "running",
    "COMPLETED": "ended",
    "FAILED": "ended",
    "TIMEOUT": "ended",
    "CANCELLED": "ended",
    "NODE_FAIL": "ended",
    "OUT_OF_MEMORY": "ended",
    "BOOT_FAIL": "ended",
    "DEADLINE": "ended",
    "PREEMPTED": "ended",
    "REVOKED": "ended",
    "SPECIAL_EXIT": "ended",
}
"""Slurm job states (long names) by what they mean to the runner: still
"queued", "running" (started; the job's own process may be ending) or
"ended". A state not listed is taken as "queued"."""

JOB_NAME_PREFIX = "ocps-"
"""Slurm job names are this prefix and the ts_ocps job id."""

RESERVED_OPTIONS = (
    "--chdir",
    "--error",
    "--export",
    "--export-file",
    "--hold",
    "--job-name",
    "--output",
    "--parsable",
    "--wrap",
    "-D",
    "-H",
    "-J",
    "-e",
    "-o",
)
"""sbatch options the runner sets itself; extra options may not."""

OPTION_KEYS = ("account", "cpus", "memory", "partition", "sbatch_options")
"""Keys of a job type's ``runner_options`` that this runner reads."""

_SIGNAL_NUMBERS = frozenset(int(number) for number in signal.Signals)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MEMORY_RE = re.compile(r"[1-9][0-9]*[KMGT]?")


class SlurmSpecError(OSError, ValueError):
    """Raised by `SlurmRunner.launch` if a job cannot be made a Slurm job.

    It is an `OSError`, as `Runner.launch` promises, and a `ValueError`:
    the job's command, environment or runner options are wrong, so
    retrying the same job will not help.
    """

    transient = False


def check_extra_options(options: Any) -> list[str]:
    """Check extra ``sbatch`` options; return them as a list.

    Parameters
    ----------
    options : `typing.Any`
        Should be a list of strings such as ``"--qos=normal"``.

    Returns
    -------
    options : `list` [`str`]
        The options.

    Raises
    ------
    ValueError
        Raised if ``options`` is not a list of strings or sets an
        option the runner sets itself.
    """
    if isinstance(options, str) or not isinstance(options, collections.abc.Sequence):
        raise ValueError(f"sbatch options must be a list of strings: {options!r}")
    checked = []
    for option in options:
        if not isinstance(option, str) or not option.startswith("-"):
            raise ValueError(f"sbatch option {option!r} must start with '-'")
        if is_reserved(option):
            raise ValueError(f"sbatch option {option!r} is set by the runner")
        checked.append(option)
    return checked


def check_options(options: collections.abc.Mapping[str, Any]) -> None:
    """Check a job type's ``runner_options`` for `SlurmRunner`.

    Parameters
    ----------
    options : `collections.abc.Mapping` [`str`, `typing.Any`]
        Keys ``partition``, ``account`` (strings), ``cpus`` (positive
        integer), ``memory`` (megabytes as a positive integer, or a
        string such as ``"2G"``) and ``sbatch_options`` (list of
        strings); all optional.

    Raises
    ------
    ValueError
        Raised if an option is unknown or has a wrong value; the
        message names the option.
    """
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ValueError(
            f"unknown Slurm runner options {unknown}; known: {OPTION_KEYS}"
        )
    for key in ("partition", "account"):
        value = options.get(key)
        if value is not None and (
            not isinstance(value, str) or not re.fullmatch(r"[\w.-]+", value)
        ):
            raise ValueError(f"Slurm runner option {key}={value!r} is not a name")
    cpus = options.get("cpus")
    if cpus is not None and (
        isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1
    ):
        raise ValueError(f"Slurm runner option cpus={cpus!r} is not a positive integer")
    memory = options.get("memory")
    if memory is not None and not (
        (isinstance(memory, int) and not isinstance(memory, bool) and memory > 0)
        or (isinstance(memory, str) and _MEMORY_RE.fullmatch(memory))
    ):
        raise ValueError(
            f"Slurm runner option memory={memory!r} is not megabytes or e.g. '2G'"
        )
    check_extra_options(options.get("sbatch_options", []))


def make_script(spec: LaunchSpec) -> str:
    """Write the batch script of a job.

    Parameters
    ----------
    spec : `LaunchSpec`
        The job.

    Returns
    -------
    script : `str`
        A bash script that clears the environment Slurm gave it (but
        the ``SLURM*`` variables), exports ``spec.env`` and ``exec`` s
        ``spec.argv``.

    Raises
    ------
    ValueError
        Raised if the argv is empty or an environment variable name is
        not a shell identifier.
    """
    if not spec.argv:
        raise ValueError(f"job_id={spec.job_id} has an empty command")
    for name in spec.env:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"environment variable name {name!r} cannot be passed to a Slurm job"
            )
    lines = [
        "#!/bin/bash",
        f"# Batch script of ts_ocps job {spec.job_id}; generated, do not edit.",
        "for _ocps_name in $(compgen -e); do",
        '    case "$_ocps_name" in',
        "        SLURM*) ;;",
        '        *) unset "$_ocps_name" 2>/dev/null ;;',
        "    esac",
        "done",
        "unset _ocps_name",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in spec.env.items()]
    lines.append("exec -- " + " ".join(shlex.quote(word) for word in spec.argv))
    return "\n".join(lines) + "\n"


def make_sbatch_options(
    spec: LaunchSpec,
    *,
    partition: str | None = None,
    account: str | None = None,
    extra_options: collections.abc.Sequence[str] = (),
) -> list[str]:
    """Build the ``sbatch`` options of a job.

    Parameters
    ----------
    spec : `LaunchSpec`
        The job; ``spec.options`` are checked with `check_options`.
    partition : `str` or `None`
        Partition unless ``spec.options`` names one.
    account : `str` or `None`
        Account unless ``spec.options`` names one.
    extra_options : `collections.abc.Sequence` [`str`]
        Options for every job, before those of ``spec.options``.

    Returns
    -------
    options : `list` [`str`]
        Options, ``--parsable`` excepted.

    Raises
    ------
    ValueError
        Raised if ``spec.options`` are invalid.
    """
    check_options(spec.options)
    options = [
        f"--job-name={JOB_NAME_PREFIX}{spec.job_id}",
        f"--chdir={spec.work_dir.absolute()}",
        f"--output={slurm_path(spec.stdout_path)}",
        f"--error={slurm_path(spec.stderr_path)}",
        "--export=NONE",
        "--nodes=1",
        "--ntasks=1",
    ]
    if spec.time_limit > 0:
        options.append(f"--time={max(1, math.ceil(spec.time_limit / 60))}")
    if spec.options.get("cpus") is not None:
        options.append(f"--cpus-per-task={spec.options['cpus']}")
    if spec.options.get("memory") is not None:
        options.append(f"--mem={spec.options['memory']}")
    partition = spec.options.get("partition") or partition
    if partition:
        options.append(f"--partition={partition}")
    account = spec.options.get("account") or account
    if account:
        options.append(f"--account={account}")
    options += list(extra_options)
    options += list(spec.options.get("sbatch_options", []))
    return options


def is_reserved(option: str) -> bool:
    """Is an ``sbatch`` option (or an abbreviation) one the runner sets?

    Parameters
    ----------
    option : `str`
        E.g. ``--out=x`` or ``-ox``.

    Returns
    -------
    reserved : `bool`
        True if `RESERVED_OPTIONS` holds it.
    """
    name = option.split("=", 1)[0]
    if name.startswith("--"):
        # sbatch accepts unambiguous abbreviations of long options.
        return len(name) > 2 and any(
            reserved.startswith(name)
            for reserved in RESERVED_OPTIONS
            if reserved.startswith("--")
        )
    return name[:2] in RESERVED_OPTIONS


def slurm_path(path: pathlib.Path) -> str:
    """Make an absolute path safe from Slurm's ``%`` file-name patterns.

    Parameters
    ----------
    path : `pathlib.Path`
        A file path.

    Returns
    -------
    text : `str`
        The absolute path, with ``%`` doubled unless it has a backslash.
    """
    text = str(path.absolute())
    if "\\" in text:
        # Slurm does not expand patterns at all in a name with a backslash.
        return text
    return text.replace("%", "%%")


def map_outcome(state: str, exit_code: int | None, reason: str) -> RunOutcome:
    """Map a final Slurm state and exit code to a `RunOutcome`.

    Parameters
    ----------
    state : `str`
        Final job state, e.g. ``FAILED``.
    exit_code : `int` or `None`
        Exit code; negative for the number of a killing signal.
    reason : `str`
        Slurm's reason, e.g. ``NonZeroExitCode`` or ``None``.

    Returns
    -------
    outcome : `RunOutcome`
        TIMEOUT, CANCELLED, or EXITED (with a message for states other
        than COMPLETED and FAILED).
    """
    detail = "" if reason in ("", "None") else f" ({reason})"
    if state in ("TIMEOUT", "CANCELLED") and exit_code == 0:
        # Slurm writes 0:0 for a job cancelled before it ran.
        exit_code = None
    if state == "COMPLETED":
        return RunOutcome(status=RunStatus.EXITED, exit_code=exit_code or 0)
    if state == "TIMEOUT":
        return RunOutcome(
            status=RunStatus.TIMEOUT, exit_code=exit_code, message="time limit exceeded"
        )
    if state == "CANCELLED":
        return RunOutcome(
            status=RunStatus.CANCELLED,
            exit_code=exit_code,
            message=f"Slurm job cancelled{detail}",
        )
    if exit_code == 0 or (
        reason == "JobLaunchFailure"
        and exit_code is not None
        and -exit_code not in _SIGNAL_NUMBERS
    ):
        # No usable exit code: Slurm failed the job, not the job itself.
        # (Slurm calls any batch job killed by a signal JobLaunchFailure;
        # a real launch failure shows its internal "signal" 53.)
        exit_code = None
    if state == "FAILED" and exit_code is not None:
        # The job's own failure; its exit code says it all.
        return RunOutcome(status=RunStatus.EXITED, exit_code=exit_code)
    return RunOutcome(
        status=RunStatus.EXITED,
        exit_code=exit_code,
        message=f"Slurm job state {state}{detail}",
    )
