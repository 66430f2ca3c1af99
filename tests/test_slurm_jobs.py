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

"""Jobs of a ``runner: slurm`` job type through the JobManager, on Slurm."""

import asyncio
import json
import pathlib
import socket
import sys
from typing import Any

from lsst.ts.ocps.jobs.job_manager import JobManager, ManagerConfig
from lsst.ts.ocps.models import ExecutionPhase as Phase
from lsst.ts.ocps.models import Job
from lsst.ts.ocps.runners.slurm import SlurmRunner
from support.jobs import make_manager
from support.slurm import SlurmCluster

STD_TIMEOUT = 60  # seconds; a generous bound for any one Slurm job

_EXIT_CODE = """
import json, os, sys, time
time.sleep(float(sys.argv[1]))
with open(os.environ["OCPS_RESULT_FILE"], "w") as stream:
    json.dump({"slurm_job_id": os.environ.get("SLURM_JOB_ID")}, stream)
print("output of", os.environ["OCPS_JOB_ID"])
sys.exit(int(sys.argv[2]))
"""


def write_slurm_types(directory: pathlib.Path) -> pathlib.Path:
    """Write job types that run on Slurm into ``directory``."""
    directory.mkdir(parents=True)
    code = _EXIT_CODE.replace("{", "{{").replace("}", "}}")
    properties = {
        "seconds": {"type": "number", "minimum": 0, "default": 0},
        "code": {"type": "integer", "minimum": 0, "maximum": 255, "default": 0},
    }
    base = {
        "description": "Sleep, write a result, exit with a code.",
        "version": "1.0",
        "command": [sys.executable, "-c", code, "{seconds}", "{code}"],
        "parameters": {"type": "object", "properties": properties},
        "runner": "slurm",
    }
    types = [
        {**base, "name": "slurm_exit", "runner_options": {"cpus": 1, "memory": "100M"}},
        {
            **base,
            "name": "slurm_later",
            "runner_options": {"sbatch_options": ["--begin=now+1hour"]},
        },
    ]
    for job_type in types:
        (directory / f"{job_type['name']}.yaml").write_text(json.dumps(job_type))
    return directory


async def wait_phase(manager: JobManager, job_id: str, phase: Phase) -> Job:
    """Wait until a job reaches ``phase`` (or any terminal phase)."""
    async with asyncio.timeout(STD_TIMEOUT):
        job = await manager.get_job(job_id)
        while job.phase != phase and not job.is_terminal:
            job = await manager.wait_for_change(job_id, job.phase, STD_TIMEOUT)
    return job


async def finish(manager: JobManager, job_id: str) -> Job:
    async with asyncio.timeout(STD_TIMEOUT):
        return await manager.wait_terminal(job_id)


def make_config(tmp_path: pathlib.Path) -> ManagerConfig:
    return ManagerConfig(state_dir=tmp_path / "state", kill_grace=1.0)


def runners(cluster: SlurmCluster, **kwargs: Any) -> dict[str, Any]:
    return {"slurm": cluster.make_runner(**kwargs)}


async def test_phases_exit_codes_and_results(
    slurm_cluster: SlurmCluster, tmp_path: pathlib.Path
) -> None:
    types_dir = write_slurm_types(tmp_path / "types")
    phases: dict[str, list[Phase]] = {}

    def record(job: Job) -> None:
        phases.setdefault(job.job_id, []).append(job.phase)

    config = make_config(tmp_path)
    async with make_manager(
        config, types_dir, runners=runners(slurm_cluster)
    ) as manager:
        manager.add_listener(record)
        good = await manager.submit("slurm_exit", {"seconds": 0.5, "code": 0})
        bad = await manager.submit("slurm_exit", {"code": 3})
        good_done = await finish(manager, good.job_id)
        bad_done = await finish(manager, bad.job_id)

        assert good_done.phase == Phase.COMPLETED
        assert good_done.exit_code == 0
        slurm_id = good_done.runner_state["state"]["slurm_job_id"]
        assert good_done.job_info["result"] == {"slurm_job_id": slurm_id}
        stdout = manager.log_path(good.job_id, "stdout").read_text()
        assert stdout == f"output of {good.job_id}\n"
        assert phases[good.job_id] == [Phase.QUEUED, Phase.EXECUTING, Phase.COMPLETED]

        assert bad_done.phase == Phase.ERROR
        assert bad_done.exit_code == 3
        assert bad_done.error_summary is not None
        assert bad_done.error_summary.message == "process exited with code 3"


async def test_abort_running_and_pending(
    slurm_cluster: SlurmCluster, tmp_path: pathlib.Path
) -> None:
    types_dir = write_slurm_types(tmp_path / "types")
    async with make_manager(
        make_config(tmp_path), types_dir, runners=runners(slurm_cluster)
    ) as manager:
        running = await manager.submit("slurm_exit", {"seconds": 300})
        later = await manager.submit("slurm_later", {})
        await wait_phase(manager, running.job_id, Phase.EXECUTING)
        # The Slurm job of "later" waits for its begin time: still QUEUED.
        async with asyncio.timeout(STD_TIMEOUT):
            while not (await manager.get_job(later.job_id)).runner_state:
                await asyncio.sleep(0.1)
        assert (await manager.get_job(later.job_id)).phase == Phase.QUEUED

        for job in (running, later):
            await manager.abort(job.job_id)
            done = await finish(manager, job.job_id)
            assert done.phase == Phase.ABORTED
            slurm_id = done.runner_state["state"]["slurm_job_id"]
            runner = manager.runners["slurm"]
            assert isinstance(runner, SlurmRunner)
            fields = await runner.cli.show_job(slurm_id)
            assert fields is not None
            assert fields["JobState"] == "CANCELLED"
        # Slurm never ran the pending job: it did not even open its stdout.
        assert not manager.log_path(later.job_id, "stdout").exists()


async def test_manager_restart_with_slurm_jobs(
    slurm_cluster: SlurmCluster, tmp_path: pathlib.Path
) -> None:
    types_dir = write_slurm_types(tmp_path / "types")
    config = make_config(tmp_path)
    async with make_manager(config, types_dir, runners=runners(slurm_cluster)) as old:
        running = await old.submit("slurm_exit", {"seconds": 4, "code": 5})
        waiting = await old.submit("slurm_later", {})
        await wait_phase(old, running.job_id, Phase.EXECUTING)
        async with asyncio.timeout(STD_TIMEOUT):
            while not (await old.get_job(waiting.job_id)).runner_state:
                await asyncio.sleep(0.1)
        await old.close()

    # A new manager and a new runner find both Slurm jobs again.
    async with make_manager(config, types_dir, runners=runners(slurm_cluster)) as new:
        assert (await new.get_job(waiting.job_id)).phase == Phase.QUEUED
        done = await finish(new, running.job_id)
        assert done.phase == Phase.ERROR
        assert done.exit_code == 5
        assert done.job_info["result"]["slurm_job_id"] == (
            done.runner_state["state"]["slurm_job_id"]
        )
        await new.abort(waiting.job_id)
        assert (await finish(new, waiting.job_id)).phase == Phase.ABORTED


async def test_controller_unreachable_at_submit(
    slurm_cluster: SlurmCluster, tmp_path: pathlib.Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text = pathlib.Path(slurm_cluster.conf).read_text()
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "".join(
            f"SlurmctldPort={port}\n" if line.startswith("SlurmctldPort=") else line
            for line in text.splitlines(keepends=True)
        )
    )
    types_dir = write_slurm_types(tmp_path / "types")
    async with make_manager(
        make_config(tmp_path),
        types_dir,
        # A short CLI timeout: the runner tests cover sbatch's own error.
        runners=runners(slurm_cluster, slurm_conf=str(conf), cli_timeout=2),
    ) as manager:
        job = await manager.submit("slurm_exit", {})
        done = await finish(manager, job.job_id)
        assert done.phase == Phase.ERROR
        assert done.start_time is None
        assert done.error_summary is not None
        assert "Slurm controller unreachable: " in done.error_summary.message
