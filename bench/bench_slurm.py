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

"""Benchmark: submit->start and end->finished latency, Slurm vs local.

Runs trivial jobs through `SlurmRunner` on the test cluster (started with
``dev/slurm.sh start`` if need be) and through `LocalRunner` in the same
run, and prints medians, 95th percentiles and Slurm/local ratios.

Usage: ``.venv/bin/python bench/bench_slurm.py [--jobs 50] [--sequential 10]``
"""

import argparse
import asyncio
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

from lsst.ts.ocps.runners.base import LaunchSpec, Runner
from lsst.ts.ocps.runners.local import LocalRunner
from lsst.ts.ocps.runners.slurm import SlurmRunner

REPO_DIR = pathlib.Path(__file__).resolve().parents[1]
SLURM_BASE = pathlib.Path(os.environ.get("OCPS_SLURM_BASE", "/tmp/ocps-slurm"))

# The job notes when it ran (wall clock, shared with this process).
JOB_ARGV = ["/bin/sh", "-c", "date +%s.%N > start; date +%s.%N > end"]


async def one_job(
    runner: Runner, root: pathlib.Path, job_id: str
) -> tuple[float, float]:
    """Run one job; return (submit->start, end->finished) in seconds.

    submit->start: from the launch call to the job's own first action.
    end->finished: from the job's last action to `wait_finished` returning.
    """
    work_dir = root / job_id
    work_dir.mkdir()
    spec = LaunchSpec(
        job_id=job_id,
        argv=JOB_ARGV,
        env={"PATH": "/usr/bin:/bin"},
        work_dir=work_dir,
        stdout_path=work_dir / "stdout",
        stderr_path=work_dir / "stderr",
    )
    submitted = time.time()
    state = await runner.launch(spec)
    await runner.wait_started(job_id, state)
    outcome = await runner.wait_finished(job_id, state)
    finished = time.time()
    if outcome.exit_code != 0:
        raise RuntimeError(f"job_id={job_id} failed: {outcome}")
    started = float((work_dir / "start").read_text())
    ended = float((work_dir / "end").read_text())
    return started - submitted, finished - ended


async def run_batch(
    runner: Runner, root: pathlib.Path, prefix: str, count: int, concurrent: bool
) -> list[tuple[float, float]]:
    """Run ``count`` jobs, all at once or one after another."""
    ids = [f"{prefix}-{i}" for i in range(count)]
    if concurrent:
        return list(await asyncio.gather(*(one_job(runner, root, i) for i in ids)))
    return [await one_job(runner, root, i) for i in ids]


def summary(values: list[float]) -> tuple[float, float]:
    """Median and 95th percentile."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def report(
    title: str, slurm: list[tuple[float, float]], local: list[tuple[float, float]]
) -> None:
    print(f"\n{title}")
    print(f"{'latency':<16}{'runner':<8}{'median s':>10}{'p95 s':>10}")
    for index, name in enumerate(("submit->start", "end->finished")):
        rows = {}
        for runner_name, results in (("slurm", slurm), ("local", local)):
            rows[runner_name] = summary([r[index] for r in results])
            median, p95 = rows[runner_name]
            print(f"{name:<16}{runner_name:<8}{median:>10.3f}{p95:>10.3f}")
        ratio_median = rows["slurm"][0] / max(rows["local"][0], 1e-6)
        ratio_p95 = rows["slurm"][1] / max(rows["local"][1], 1e-6)
        print(f"{name:<16}{'ratio':<8}{ratio_median:>9.0f}x{ratio_p95:>9.0f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs submitted at once")
    parser.add_argument(
        "--sequential", type=int, default=10, help="jobs run one after another"
    )
    parser.add_argument("--poll-interval", type=float, default=0.5)
    args = parser.parse_args()

    subprocess.run(
        ["bash", str(REPO_DIR / "dev" / "slurm.sh"), "start"],
        check=True,
        env={**os.environ, "OCPS_SLURM_BASE": str(SLURM_BASE)},
    )
    slurm = SlurmRunner(
        slurm_conf=str(SLURM_BASE / "etc" / "slurm.conf"),
        poll_interval=args.poll_interval,
    )
    local = LocalRunner()
    await slurm.start()
    await local.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
            root = pathlib.Path(tmp)
            print(f"Slurm poll interval {args.poll_interval} s")
            t0 = time.monotonic()
            slurm_all = await run_batch(slurm, root, "sa", args.jobs, True)
            t1 = time.monotonic()
            local_all = await run_batch(local, root, "la", args.jobs, True)
            t2 = time.monotonic()
            report(f"{args.jobs} jobs at once", slurm_all, local_all)
            print(f"all done: slurm {t1 - t0:.2f} s, local {t2 - t1:.2f} s")
            if args.sequential:
                slurm_seq = await run_batch(slurm, root, "ss", args.sequential, False)
                local_seq = await run_batch(local, root, "ls", args.sequential, False)
                report(
                    f"{args.sequential} jobs one after another", slurm_seq, local_seq
                )
    finally:
        await slurm.close()
        await local.close()


if __name__ == "__main__":
    asyncio.run(main())
