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

"""Tests of dev/slurm.sh: start, idempotent start, status and stop by PID."""

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile

from support.slurm import SLURM_SCRIPT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pids(base: pathlib.Path) -> dict[str, int]:
    """The daemons' PIDs from their pid files."""
    files = {
        "munged": base / "munge" / "munged.pid",
        "slurmctld": base / "run" / "slurmctld.pid",
        "slurmd": base / "run" / "slurmd.pid",
    }
    return {
        name: int(path.read_text()) for name, path in files.items() if path.exists()
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_second_cluster_lifecycle() -> None:
    # A cluster of its own (base dir and ports), next to the shared one.
    # munged runs as user munge: the base may not be under a 0700 dir.
    base = pathlib.Path(tempfile.mkdtemp(prefix="ocps-slurm-test-", dir="/tmp"))
    base.chmod(0o755)
    env = {
        **os.environ,
        "OCPS_SLURM_BASE": str(base),
        "OCPS_SLURMCTLD_PORT": str(free_port()),
        "OCPS_SLURMD_PORT": str(free_port()),
        "OCPS_SLURM_SLOTS": "2",
    }

    def script(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SLURM_SCRIPT), command],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )

    try:
        assert script("status").returncode == 1
        started = script("start")
        assert started.returncode == 0, started.stderr
        first = pids(base)
        assert sorted(first) == ["munged", "slurmctld", "slurmd"]
        assert all(alive(pid) for pid in first.values())
        status = script("status")
        assert status.returncode == 0
        assert "node: idle" in status.stdout

        again = script("start")
        assert again.returncode == 0, again.stderr
        assert pids(base) == first

        conf_line = script("env").stdout.strip()
        assert conf_line == f"export SLURM_CONF={base}/etc/slurm.conf"
    finally:
        stopped = script("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert pids(base) == {}
    assert not any(alive(pid) for pid in first.values())
    assert script("status").returncode == 1
    shutil.rmtree(base)
