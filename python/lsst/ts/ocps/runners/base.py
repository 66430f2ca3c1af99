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

"""The interface every job runner (local processes, batch systems) offers."""

__all__ = ["LaunchSpec", "Runner", "RunOutcome", "RunStatus"]

import abc
import dataclasses
import enum
import pathlib
from typing import Any


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """Everything a runner needs to start one job.

    Parameters
    ----------
    job_id : `str`
        The job's id.
    argv : `list` [`str`]
        The command; never run through a shell.
    env : `dict` [`str`, `str`]
        The complete environment of the process.
    work_dir : `pathlib.Path`
        Existing working directory of the job.
    stdout_path : `pathlib.Path`
        Where standard output goes.
    stderr_path : `pathlib.Path`
        Where standard error goes.
    log_limit : `int`
        Maximum bytes kept of each of stdout and stderr; 0 for no limit.
    time_limit : `float`
        Wall-clock limit in seconds; 0 for no limit.
    options : `dict` [`str`, `typing.Any`]
        Runner-specific options from the job type (e.g. Slurm partition).
    """

    job_id: str
    argv: list[str]
    env: dict[str, str]
    work_dir: pathlib.Path
    stdout_path: pathlib.Path
    stderr_path: pathlib.Path
    log_limit: int = 0
    time_limit: float = 0.0
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


class RunStatus(enum.StrEnum):
    """How a launched job ended."""

    EXITED = "exited"
    """The process ended on its own; see the exit code."""

    TIMEOUT = "timeout"
    """The time limit was exceeded and the job was stopped."""

    CANCELLED = "cancelled"
    """The job was stopped by `Runner.terminate`."""

    LOST = "lost"
    """The runner can no longer find out what happened to the job."""


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """The end of a launched job.

    Parameters
    ----------
    status : `RunStatus`
        How the job ended.
    exit_code : `int` or `None`
        The process exit code, if known (negative: killed by signal).
    message : `str`
        Extra detail for an operator, e.g. a batch-system reason.
    """

    status: RunStatus
    exit_code: int | None = None
    message: str = ""


class Runner(abc.ABC):
    """Starts, watches and stops job processes on some execution system.

    A runner keeps no durable state of its own: `launch` returns a small
    JSON-ready dict that the job manager journals with the job, and every
    later call gets it back, also after a restart of the manager.
    """

    name: str = ""
    """Name that job types and configuration use to select the runner."""

    async def start(self) -> None:
        """Start background work, if any."""

    async def close(self) -> None:
        """Stop background work; jobs are left as they are."""

    @abc.abstractmethod
    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        """Submit or start a job.

        Parameters
        ----------
        spec : `LaunchSpec`
            What to run.

        Returns
        -------
        runner_state : `dict` [`str`, `typing.Any`]
            JSON-ready data that identifies the job to this runner.

        Raises
        ------
        OSError
            Raised if the job could not be started or submitted.
        """

    @abc.abstractmethod
    async def wait_started(self, job_id: str, runner_state: dict[str, Any]) -> None:
        """Return once the job is executing (at once for local processes).

        Returns also if the job ended without having been seen running;
        `wait_finished` then reports how.
        """

    @abc.abstractmethod
    async def wait_finished(
        self, job_id: str, runner_state: dict[str, Any]
    ) -> RunOutcome:
        """Wait for the job to end and say how it ended."""

    @abc.abstractmethod
    async def terminate(self, job_id: str, runner_state: dict[str, Any]) -> None:
        """Stop the job: its whole process group, or its batch job.

        `wait_finished` then reports `RunStatus.CANCELLED`.
        """

    @abc.abstractmethod
    async def reattach(self, job_id: str, runner_state: dict[str, Any]) -> bool:
        """Find a job again after a restart of the manager.

        Returns
        -------
        found : `bool`
            True if the job is known (running or finished with a known
            outcome) so that `wait_finished` can report it; False if it is
            gone without trace.
        """
