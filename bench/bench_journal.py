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

"""Benchmark: the journal with 100,000 finished jobs.

Fills a fresh journal with finished jobs (in batches, one transaction
each), then reports the p50/p99 latency of `Journal.get` of random ids,
of a newest-first list page with and without a phase filter, of the
counts by phase and of the ids-only listing, and the process's RSS.
All calls go through the journal's worker thread, as in the server.

Usage: ``python bench/bench_journal.py [--jobs N] [--page 100]``
"""

import argparse
import asyncio
import datetime
import pathlib
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from lsst.ts.ocps.jobs.journal import Journal
from lsst.ts.ocps.models import (
    ErrorSummary,
    ExecutionPhase,
    Job,
    JobResult,
)

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def make_job(index: int) -> Job:
    """A finished job shaped like a real one (parameters, result, info)."""
    failed = index % 10 == 0
    start = T0 + datetime.timedelta(seconds=index * 2)
    return Job(
        job_id=uuid.uuid4().hex,
        type="pipetask",
        version="1.0",
        parameters={
            "pipeline": "${CP_PIPE_DIR}/pipelines/LSSTCam/cpBias.yaml",
            "data_query": f"instrument='LSSTCam' AND exposure IN ({index}, {index + 1})",
            "config": "-j 4 --register-dataset-types",
        },
        run_id=f"run-{index}",
        phase=ExecutionPhase.ERROR if failed else ExecutionPhase.COMPLETED,
        creation_time=start,
        start_time=start,
        end_time=start + datetime.timedelta(seconds=1),
        destruction=start + datetime.timedelta(days=7),
        exit_code=1 if failed else 0,
        error_summary=ErrorSummary("process exited with code 1") if failed else None,
        results=[
            JobResult("a.txt", f"file:///state/jobs/{index}/a.txt", 10, "text/plain")
        ],
        job_info={"result": {"quanta": index % 97}},
        runner_state={"runner": "local", "state": {"pid": 1000 + index}},
    )


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """Return p50 and p99 latency of ``call`` in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def rss_mib() -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp_dir:
        path = pathlib.Path(temp_dir) / "ocps.sqlite3"
        journal = Journal(path)
        await journal.open()
        try:
            start = time.perf_counter()
            ids = []
            for first in range(0, args.jobs, 5000):
                batch = [
                    make_job(i) for i in range(first, min(args.jobs, first + 5000))
                ]
                ids += [job.job_id for job in batch]
                await journal.insert_many(batch)
            fill = time.perf_counter() - start
            size_mib = path.stat().st_size / 2**20

            def get_random() -> Awaitable[Job]:
                return journal.get(random.choice(ids))

            def page() -> Awaitable[list[Job]]:
                return journal.list_jobs(limit=args.page)

            def deep_page() -> Awaitable[list[Job]]:
                return journal.list_jobs(limit=args.page, offset=args.jobs // 2)

            def error_page() -> Awaitable[list[Job]]:
                return journal.list_jobs(phases=[ExecutionPhase.ERROR], limit=args.page)

            def two_phase_page() -> Awaitable[list[Job]]:
                phases = [ExecutionPhase.ERROR, ExecutionPhase.ABORTED]
                return journal.list_jobs(phases=phases, limit=args.page)

            def count_by_phase() -> Awaitable[dict[ExecutionPhase, int]]:
                return journal.count_by_phase()

            def all_ids() -> Awaitable[list[str]]:
                return journal.list_ids()

            def completed_ids() -> Awaitable[list[str]]:
                return journal.list_ids(phases=[ExecutionPhase.COMPLETED])

            print(
                f"jobs={await journal.count()} fill={fill:.1f}s "
                f"({args.jobs / fill:.0f} jobs/s) db={size_mib:.1f} MiB"
            )
            for name, call, repeat in (
                ("get (random id)", get_random, args.repeat),
                (f"list page of {args.page}, newest", page, args.repeat // 5),
                (
                    f"list page of {args.page}, phase=ERROR",
                    error_page,
                    args.repeat // 5,
                ),
                (
                    f"list page of {args.page}, 2 phases",
                    two_phase_page,
                    args.repeat // 5,
                ),
                (f"list page of {args.page}, offset {args.jobs // 2}", deep_page, 20),
                ("count by phase", count_by_phase, 20),
                (f"ids only, all {args.jobs}", all_ids, 10),
                ("ids only, phase=COMPLETED", completed_ids, 10),
            ):
                p50, p99 = await timed(call, repeat)
                print(f"{name:40s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
            print(f"RSS {rss_mib():.0f} MiB")
        finally:
            await journal.close()


if __name__ == "__main__":
    asyncio.run(main())
