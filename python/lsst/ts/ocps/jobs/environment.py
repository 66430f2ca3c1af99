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

"""What a job is started with: its environment and its launch spec.

A job runs in its own work dir with an environment made of the server's
`BASE_ENV_NAMES`, then the job type's ``environment``, then
``OCPS_JOB_ID``, ``OCPS_WORK_DIR`` and ``OCPS_RESULT_FILE``. Jobs find
the Python that runs OCPS first on ``PATH``: the directory of
`sys.executable` is put in front of the server's ``PATH`` (unless it is
first already), so that a job type running ``python3`` gets the
interpreter, and the packages, of OCPS even when OCPS was started from a
virtual environment that was never activated. A job type that sets
``PATH`` in its own environment replaces all of that.
"""

from __future__ import annotations

__all__ = [
    "BASE_ENV_NAMES",
    "job_environment",
    "make_launch_spec",
    "python_first_on_path",
]

import os
import pathlib
import sys
from typing import TYPE_CHECKING

from ..models import Job
from ..runners.base import LaunchSpec
from .results import RESULT_FILE_NAME

if TYPE_CHECKING:
    from .job_types import JobType

BASE_ENV_NAMES = ("HOME", "LANG", "LC_ALL", "PATH", "TMPDIR", "TZ", "USER", "LOGNAME")
"""Variables of the server's environment that every job inherits (``PATH``
with the directory of the Python that runs OCPS first); the job type's
environment and the ``OCPS_*`` variables are added on top."""


def job_environment(
    job: Job, job_type: JobType, work_dir: pathlib.Path
) -> dict[str, str]:
    """Return the environment the job's process starts with.

    Parameters
    ----------
    job : `Job`
        The job; its parameters fill the job type's ``environment``.
    job_type : `JobType`
        The job's type.
    work_dir : `pathlib.Path`
        The job's work dir.

    Returns
    -------
    env : `dict` [`str`, `str`]
        See the module docstring for what it holds and in which order
        later entries replace earlier ones.
    """
    env = {name: os.environ[name] for name in BASE_ENV_NAMES if name in os.environ}
    env["PATH"] = python_first_on_path(env.get("PATH"))
    env.update(job_type.render_environment(job.parameters))
    env.update(
        OCPS_JOB_ID=job.job_id,
        OCPS_WORK_DIR=str(work_dir),
        OCPS_RESULT_FILE=str(work_dir / RESULT_FILE_NAME),
    )
    return env


def make_launch_spec(
    job: Job,
    job_type: JobType,
    *,
    work_dir: pathlib.Path,
    stdout_path: pathlib.Path,
    stderr_path: pathlib.Path,
    log_limit: int,
) -> LaunchSpec:
    """Create the job's work dir and say how a runner starts the job.

    Parameters
    ----------
    job : `Job`
        The job.
    job_type : `JobType`
        The job's type; gives the argv, environment and runner options.
    work_dir : `pathlib.Path`
        The job's work dir; created if missing (not its parents).
    stdout_path : `pathlib.Path`
        File for the job's standard output.
    stderr_path : `pathlib.Path`
        File for the job's standard error.
    log_limit : `int`
        Bytes kept of each of stdout and stderr; 0 for all.

    Returns
    -------
    spec : `LaunchSpec`
        What the runner needs; the time limit is the job's
        ``execution_duration``.
    """
    work_dir.mkdir(exist_ok=True)
    env = job_environment(job, job_type, work_dir)
    return LaunchSpec(
        job_id=job.job_id,
        argv=job_type.render_argv(job.parameters),
        env=env,
        work_dir=work_dir,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        log_limit=log_limit,
        time_limit=job.execution_duration,
        options=dict(job_type.runner_options),
    )


def python_first_on_path(path: str | None) -> str:
    """Return ``path`` with the directory of the running Python first.

    Parameters
    ----------
    path : `str` or `None`
        The server's ``PATH``; None if it has none (then the default
        search path follows).

    Returns
    -------
    path : `str`
        ``path`` itself if that directory is first already.
    """
    entries = (os.defpath if path is None else path).split(os.pathsep)
    python_dir = os.path.dirname(sys.executable)
    if python_dir and entries[0] != python_dir:
        entries.insert(0, python_dir)
    return os.pathsep.join(entries)
