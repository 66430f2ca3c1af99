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

"""Benchmark: OCPS's added wall time on top of a plain ``pipetask run``.

Runs the same two-task pipeline on the same tiny Butler repo, alternately
as ``pipetask run`` started directly (subprocess) and as a pipetask job of
a real `JobManager` (submit -> COMPLETED, wrapper, summary and output
listing included), several times each, and prints both medians and their
ratio, and the manager's own latency from acceptance to the start of the
job's process. Target: less than 5 % added wall time.

The OCPS side does more (journal, wrapper, output listing: about 0.1 s)
but also saves: the wrapper runs pipetask in its own interpreter and skips
interpreter teardown (about 0.3 s), so the ratio can fall below 1.

Usage::

    .venv/bin/python bench/bench_pipetask.py [--repeat 5] [--detectors 4]
"""

import argparse
import asyncio
import logging
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from lsst.ts.ocps.jobs.job_manager import JobManager, ManagerConfig
from lsst.ts.ocps.jobs.job_types import JobTypeRegistry
from lsst.ts.ocps.models import ExecutionPhase
from lsst.ts.ocps.pipetask import build_pipetask_argv, parse_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "tests" / "data"
BIN_DIR = pathlib.Path(sys.executable).parent
CONFIG = "-j 1"
QUERY = "instrument='INSTRU'"


def make_repo(directory: pathlib.Path, detectors: int) -> str:
    """Create and fill a test repo; return its path."""
    repo = directory / "repo"
    subprocess.run([str(BIN_DIR / "butler"), "create", str(repo)], check=True)
    subprocess.run(
        [
            sys.executable,
            str(DATA_DIR / "pipelines" / "make_repo.py"),
            str(repo),
            "--detectors",
            str(detectors),
        ],
        check=True,
    )
    return str(repo)


def run_direct(repo: str, work_dir: pathlib.Path, run_name: str) -> float:
    """Run pipetask directly; return the wall time in seconds."""
    work_dir.mkdir(parents=True)
    argv = build_pipetask_argv(
        job_id=run_name,
        work_dir=work_dir,
        butler=repo,
        pipeline=str(DATA_DIR / "pipelines" / "pipeline.yaml"),
        data_query=QUERY,
        input_collections=["inputs"],
        config=parse_config(CONFIG),
        program=str(BIN_DIR / "pipetask"),
    )
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


async def run_ocps(manager: JobManager, repo: str) -> tuple[float, float]:
    """Run the same pipeline as an OCPS job.

    Returns the wall time and the time from acceptance to the start of the
    job's process (the manager's own latency), both in seconds.
    """
    parameters = {
        "pipeline": "${CP_PIPE_DIR}/pipelines/pipeline.yaml",
        "butler": repo,
        "input_collection": "inputs",
        "data_query": QUERY,
        "config": CONFIG,
        "environment": {"CP_PIPE_DIR": str(DATA_DIR)},
    }
    start = time.monotonic()
    job = await manager.submit("pipetask", parameters)
    job = await manager.wait_terminal(job.job_id)
    elapsed = time.monotonic() - start
    if job.phase is not ExecutionPhase.COMPLETED or job.start_time is None:
        raise RuntimeError(f"job_id={job.job_id} failed: {job.job_info}")
    return elapsed, (job.start_time - job.creation_time).total_seconds()


async def amain(repeat: int, detectors: int) -> None:
    os.environ["PATH"] = f"{BIN_DIR}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory(prefix="bench_pipetask_") as temp:
        directory = pathlib.Path(temp)
        repo = make_repo(directory, detectors)
        registry = JobTypeRegistry.from_directory(ROOT / "config" / "job_types")
        manager = JobManager(
            ManagerConfig(state_dir=directory / "state"),
            registry,
            log=logging.getLogger("ocps.bench"),
        )
        await manager.start()
        try:
            # One warm-up of each, not counted (page cache, .pyc files).
            run_direct(repo, directory / "direct-warmup", "direct-warmup")
            await run_ocps(manager, repo)
            direct, ocps, latency = [], [], []
            for i in range(repeat):
                direct.append(run_direct(repo, directory / f"direct{i}", f"direct{i}"))
                elapsed, started = await run_ocps(manager, repo)
                ocps.append(elapsed)
                latency.append(started)
        finally:
            await manager.close()

    direct_median = statistics.median(direct)
    ocps_median = statistics.median(ocps)
    ratio = ocps_median / direct_median
    quanta = 2 * detectors
    print(f"pipetask run, {quanta} quanta, -j 1, {repeat} repetitions each")
    print(f"direct pipetask run: median {direct_median:.2f} s  {_spread(direct)}")
    print(f"through OCPS:        median {ocps_median:.2f} s  {_spread(ocps)}")
    print(f"ratio OCPS/direct:   {ratio:.3f} ({100 * (ratio - 1):+.1f} % wall time)")
    print(f"accepted -> started: median {1000 * statistics.median(latency):.0f} ms")


def _spread(values: list[float]) -> str:
    return "(" + ", ".join(f"{value:.2f}" for value in values) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each kind")
    parser.add_argument("--detectors", type=int, default=4, help="repo size")
    args = parser.parse_args()
    asyncio.run(amain(args.repeat, args.detectors))


if __name__ == "__main__":
    main()
