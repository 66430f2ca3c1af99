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

"""Benchmark: job-type loading, parameter validation, and trigger latency.

Prints how long loading the shipped job types takes, how many submissions
per second validation plus rendering sustains, and how long after a file
appears `wait_for_paths` returns (median and 95th percentile), next to the
watcher's own reporting delay (``WATCH_STEP``).

Usage::

    .venv/bin/python bench/bench_job_types.py [--repeat 50]
"""

import argparse
import asyncio
import pathlib
import statistics
import tempfile
import time

from lsst.ts.ocps.jobs.job_types import JobTypeRegistry
from lsst.ts.ocps.jobs.triggers import WATCH_STEP, wait_for_paths

REPO_DIR = pathlib.Path(__file__).resolve().parents[1]


def bench_loading(repeat: int) -> None:
    """Time loading and checking every shipped job-type file."""
    directory = REPO_DIR / "config" / "job_types"
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        registry = JobTypeRegistry.from_directory(directory)
        times.append(time.perf_counter() - start)
    print(
        f"load {len(registry)} job types: median "
        f"{statistics.median(times) * 1e3:.1f} ms"
    )


def bench_submit_checks(count: int) -> None:
    """Time validate_parameters + render_argv + render_environment."""
    registry = JobTypeRegistry.from_directory(REPO_DIR / "config" / "job_types")
    job_type = registry.get_type("prototype_ap")
    submitted = {"AP_VISIT_ID": 2026120300042, "AP_CCD_NUM": 94, "AP_REPO": "/r"}
    start = time.perf_counter()
    for _ in range(count):
        parameters = job_type.validate_parameters(submitted)
        job_type.render_argv(parameters)
        job_type.render_environment(parameters)
    elapsed = time.perf_counter() - start
    print(
        f"validate + render prototype_ap: {count / elapsed:,.0f} per second "
        f"({elapsed / count * 1e6:.0f} us each)"
    )


async def bench_trigger(repeat: int) -> None:
    """Time from a file's creation to the return of wait_for_paths."""
    latencies = []
    with tempfile.TemporaryDirectory() as name:
        directory = pathlib.Path(name)
        for index in range(repeat):
            target = directory / f"{index}.fits"
            waiter = asyncio.create_task(wait_for_paths([str(target)], 30))
            # Let the waiter arm its watcher, so the event path is timed.
            await asyncio.sleep(0.05)
            created = time.perf_counter()
            target.write_text("x")
            await waiter
            latencies.append(time.perf_counter() - created)
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"trigger latency over {repeat}: median "
        f"{statistics.median(latencies) * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms "
        f"(watcher step {WATCH_STEP} ms; ratio median/step "
        f"{statistics.median(latencies) * 1e3 / WATCH_STEP:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    bench_loading(max(1, args.repeat // 5))
    bench_submit_checks(args.repeat * 100)
    asyncio.run(bench_trigger(args.repeat))


if __name__ == "__main__":
    main()
