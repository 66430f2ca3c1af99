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

"""Test fixtures: a real single-node Slurm cluster and Slurm runners."""

__all__ = ["SlurmCluster", "slurm_cluster", "slurm_runner"]

import collections.abc
import dataclasses
import os
import pathlib
import subprocess
from typing import Any

import pytest
from lsst.ts.ocps.runners.slurm import SlurmRunner

REPO_DIR = pathlib.Path(__file__).resolve().parents[2]
SLURM_SCRIPT = REPO_DIR / "dev" / "slurm.sh"
SLURM_BASE = pathlib.Path(os.environ.get("OCPS_SLURM_BASE", "/tmp/ocps-slurm"))
POLL_INTERVAL = 0.2  # seconds between squeue calls of test runners


@dataclasses.dataclass
class SlurmCluster:
    """The test cluster that ``dev/slurm.sh`` runs.

    Parameters
    ----------
    base : `pathlib.Path`
        Its base directory (config, logs, state, munge).
    """

    base: pathlib.Path

    @property
    def conf(self) -> str:
        """The ``SLURM_CONF`` path."""
        return str(self.base / "etc" / "slurm.conf")

    def script(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``dev/slurm.sh COMMAND``; fail the test if it fails."""
        result = subprocess.run(
            ["bash", str(SLURM_SCRIPT), command],
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "OCPS_SLURM_BASE": str(self.base)},
        )
        if result.returncode != 0:
            pytest.fail(
                f"dev/slurm.sh {command} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def is_running(self) -> bool:
        """Are munged, slurmctld and slurmd all running?"""
        result = subprocess.run(
            ["bash", str(SLURM_SCRIPT), "status"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "OCPS_SLURM_BASE": str(self.base)},
        )
        return result.returncode == 0

    def stop_controller(self) -> None:
        """Stop slurmctld (by its PID); slurmd and jobs keep running."""
        self.script("stop-controller")

    def start_controller(self) -> None:
        """Start slurmctld again and wait until it answers."""
        self.script("start-controller")

    def make_runner(
        self, *, poll_interval: float = POLL_INTERVAL, **kwargs: Any
    ) -> SlurmRunner:
        """Make a runner for this cluster; ``kwargs`` go to SlurmRunner."""
        kwargs.setdefault("slurm_conf", self.conf)
        return SlurmRunner(poll_interval=poll_interval, **kwargs)


@pytest.fixture(scope="session")
def slurm_cluster() -> collections.abc.Iterator[SlurmCluster]:
    """A running Slurm cluster; started (and then stopped) if need be.

    The fixture fails, never skips, if Slurm cannot be started: the tests
    that use it are meant to run against real Slurm everywhere.
    """
    cluster = SlurmCluster(base=SLURM_BASE)
    started_here = not cluster.is_running()
    cluster.script("start")
    yield cluster
    if started_here:
        cluster.script("stop")
    elif not cluster.is_running():
        # A test stopped part of a cluster it did not start: restore it.
        cluster.script("start")


@pytest.fixture
async def slurm_runner(
    slurm_cluster: SlurmCluster,
) -> collections.abc.AsyncIterator[SlurmRunner]:
    """A started SlurmRunner on the test cluster, closed afterwards."""
    runner = slurm_cluster.make_runner()
    await runner.start()
    yield runner
    # Cancel what a failed test left running, so it holds no job slot.
    for slurm_id in runner.followed_jobs().values():
        await runner.cli.scancel(slurm_id)
    await runner.close()
