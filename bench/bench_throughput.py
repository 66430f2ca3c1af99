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

"""Benchmark: trivial-job throughput of JobManager against raw spawning.

Runs N jobs of ``true`` through a real `JobManager` (journal, supervisor,
listeners: submit -> COMPLETED) and, in the same run, the same command N
times through a bare asyncio spawn loop with the same concurrency. Prints
both rates and their ratio, and the CPU time per job of each (this
server process, and of its descendants: the supervisor and the jobs;
less sensitive than the rates to other load on the machine).

Usage: ``python bench/bench_throughput.py [--jobs N] [--concurrency C]``
"""

import argparse
import asyncio
import json
import pathlib
import resource
import shutil
import statistics
import tempfile
import time

from lsst.ts.ocps.jobs.job_manager import JobManager, ManagerConfig
from lsst.ts.ocps.jobs.job_types import JobTypeRegistry
from lsst.ts.ocps.models import ExecutionPhase, Job

TRUE_TYPE = {
    "name": "true",
    "description": "Do nothing, successfully.",
    "version": "1.0",
    "command": ["true"],
    "parameters": {"type": "object", "properties": {}},
}


def cpu_seconds(who: int) -> float:
    """Return CPU time used by this process (RUSAGE_SELF) or its
    waited-for descendants (RUSAGE_CHILDREN)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def cpu_pair() -> tuple[float, float]:
    """Return CPU seconds of this process and of its descendants."""
    return cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)


async def run_manager(root: pathlib.Path, jobs: int, concurrency: int) -> float:
    """Return jobs per second through a JobManager."""
    types_dir = root / "types"
    types_dir.mkdir()
    (types_dir / "true.yaml").write_text(json.dumps(TRUE_TYPE))
    registry = JobTypeRegistry.from_directory(types_dir)
    config = ManagerConfig(state_dir=root / "state", max_concurrent=concurrency)
    manager = JobManager(config, registry)
    await manager.start()
    ended = 0
    all_ended = asyncio.Event()

    def count(job: Job) -> None:
        nonlocal ended
        if job.phase is ExecutionPhase.COMPLETED:
            ended += 1
            if ended == jobs:
                all_ended.set()

    manager.add_listener(count)
    try:
        start = time.perf_counter()
        for _ in range(jobs):
            await manager.submit("true", {})
        await all_ended.wait()
        elapsed = time.perf_counter() - start
    finally:
        await manager.close()
    return jobs / elapsed


async def run_raw(jobs: int, concurrency: int) -> float:
    """Return runs per second of a bare asyncio spawn loop."""
    path = shutil.which("true")
    assert path is not None
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            process = await asyncio.create_subprocess_exec(path)
            await process.wait()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    return jobs / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"jobs={args.jobs} concurrency={args.concurrency} rounds={args.rounds}")
    # Alternate the two so that load from other processes hits both alike.
    ratios = []
    for round_number in range(args.rounds):
        with tempfile.TemporaryDirectory() as temp_dir:
            self_start, children_start = cpu_pair()
            raw = await run_raw(args.jobs, args.concurrency)
            self_end, children_end = cpu_pair()
            cpu_raw = self_end - self_start + children_end - children_start
            # The supervisor (and through it every job) is waited for when
            # the manager closes.
            managed = await run_manager(
                pathlib.Path(temp_dir), args.jobs, args.concurrency
            )
            server_end, descendants_end = cpu_pair()
            cpu_server = server_end - self_end
            cpu_descendants = descendants_end - children_end
        ratios.append(managed / raw)
        per_job = 1000 / args.jobs
        print(
            f"round {round_number}: raw asyncio spawn loop {raw:7.1f} runs/s "
            f"({cpu_raw * per_job:.2f} ms CPU/run), JobManager (journal on) "
            f"{managed:7.1f} jobs/s ({cpu_server * per_job:.2f} ms CPU/job in "
            f"the server + {cpu_descendants * per_job:.2f} in the supervisor "
            f"and job), ratio {managed / raw:.2f}"
        )
    print(f"median ratio manager/raw: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
