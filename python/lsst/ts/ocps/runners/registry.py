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

"""Which runners a service has, and the one place they are built."""

from __future__ import annotations

__all__ = [
    "RUNNER_NAMES",
    "RunnerSettings",
    "SlurmSettings",
    "check_runner_options",
    "make_runners",
]

import collections.abc
import dataclasses
import logging
from typing import Any

from .base import Runner
from .local import LocalRunner
from .slurm import SlurmRunner
from .slurm_job import check_extra_options

RUNNER_NAMES = ("local", "slurm")
"""Names of the runners ts_ocps can build from configuration."""


@dataclasses.dataclass(frozen=True)
class SlurmSettings:
    """How to build the Slurm runner; see `SlurmRunner` for each value.

    Parameters
    ----------
    partition : `str` or `None`
        Default partition of the jobs.
    account : `str` or `None`
        Default account of the jobs.
    sbatch_options : `tuple` [`str`, ...]
        Extra ``sbatch`` options for every job.
    poll_interval : `float`
        Seconds between two ``squeue`` calls.
    cli_timeout : `float`
        Seconds any one Slurm command may take.
    slurm_conf : `str` or `None`
        ``SLURM_CONF`` of the Slurm commands; None to inherit it.

    Raises
    ------
    ValueError
        Raised if a value is invalid; the message names it.
    """

    partition: str | None = None
    account: str | None = None
    sbatch_options: tuple[str, ...] = ()
    poll_interval: float = 0.5
    cli_timeout: float = 30.0
    slurm_conf: str | None = None

    def __post_init__(self) -> None:
        # The runner's own check of default options, so that a bad value
        # is refused when the configuration is read, not at the first job.
        options = {
            key: value
            for key, value in (
                ("partition", self.partition),
                ("account", self.account),
            )
            if value is not None
        }
        SlurmRunner.check_options(options)
        object.__setattr__(
            self, "sbatch_options", tuple(check_extra_options(self.sbatch_options))
        )
        for name in ("poll_interval", "cli_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"Slurm {name}={value!r} is not a number")
            if not value > 0:
                raise ValueError(f"Slurm {name}={value!r} must be positive")


@dataclasses.dataclass(frozen=True)
class RunnerSettings:
    """The runners of a service and the one job types get by default.

    Parameters
    ----------
    default_runner : `str`
        Runner of the job types that name none.
    slurm : `SlurmSettings` or `None`
        Settings of the Slurm runner; None if it is disabled.

    Raises
    ------
    ValueError
        Raised if ``default_runner`` is not an available runner.

    Notes
    -----
    Known shortcoming: a service restarted with the Slurm runner disabled
    ends the journaled Slurm jobs that were still active in ERROR (their
    runner is missing) while Slurm goes on running them. Remove this note
    once the job manager refuses to start with active jobs of a runner it
    lacks, or keeps them waiting for that runner.
    """

    default_runner: str = "local"
    slurm: SlurmSettings | None = None

    def __post_init__(self) -> None:
        if self.default_runner not in self.available:
            if self.default_runner == "slurm":
                raise ValueError(
                    "default runner 'slurm' needs the Slurm runner enabled"
                )
            raise ValueError(
                f"unknown default runner {self.default_runner!r}; "
                f"available: {', '.join(self.available)}"
            )

    @property
    def available(self) -> tuple[str, ...]:
        """Names of the runners built by `make_runners`, sorted."""
        return RUNNER_NAMES if self.slurm is not None else ("local",)


def check_runner_options(
    runner: str, options: collections.abc.Mapping[str, Any]
) -> None:
    """Check the ``runner_options`` of a job type for its runner.

    Parameters
    ----------
    runner : `str`
        Name of the job type's runner.
    options : `collections.abc.Mapping` [`str`, `typing.Any`]
        Its ``runner_options``.

    Raises
    ------
    ValueError
        Raised if the runner is ``slurm`` and an option is unknown or has
        a wrong value.

    Notes
    -----
    The local runner takes no options and ignores any it is given;
    runners not in `RUNNER_NAMES` (e.g. those a test hands the job
    manager) are not checked here.
    """
    if runner == "slurm":
        SlurmRunner.check_options(options)


def make_runners(
    settings: RunnerSettings,
    *,
    kill_grace: float = 5.0,
    log: logging.Logger | None = None,
) -> dict[str, Runner]:
    """Build the runners of a service.

    Parameters
    ----------
    settings : `RunnerSettings`
        Which runners, and how.
    kill_grace : `float`
        Seconds between SIGTERM and SIGKILL of the local runner.
    log : `logging.Logger` or `None`
        Parent logger; the runners log to its children ``local_runner``
        and ``slurm_runner``. The default parent is the ``ocps`` logger.

    Returns
    -------
    runners : `dict` [`str`, `Runner`]
        Runners by name, one per name of ``settings.available``; not
        started (the job manager starts and closes them).
    """
    parent = log if log is not None else logging.getLogger("ocps")
    runners: dict[str, Runner] = {
        "local": LocalRunner(kill_grace=kill_grace, log=parent),
    }
    slurm = settings.slurm
    if slurm is not None:
        runners["slurm"] = SlurmRunner(
            partition=slurm.partition,
            account=slurm.account,
            sbatch_options=slurm.sbatch_options,
            poll_interval=slurm.poll_interval,
            cli_timeout=slurm.cli_timeout,
            slurm_conf=slurm.slurm_conf,
            log=parent.getChild("slurm_runner"),
        )
    return runners
