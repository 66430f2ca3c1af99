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

"""Benchmark: the REST API of ``ocps serve`` over a large journal.

Fills a journal with finished jobs (through `Journal` directly), starts a
real ``ocps serve`` subprocess on it, and prints over loopback HTTP:
``GET /job/{id}`` p50/p99 (random ids), ``GET /job?limit=100`` p50 (first
page and a deep page), ``GET /health`` p50, ``GET /job/list/all`` time,
and the server's resident memory before and after the requests.

Usage::

    .venv/bin/python bench/bench_rest.py [--jobs 100000] [--gets 2000]
"""

import argparse
import asyncio
import datetime
import pathlib
import random
import re
import statistics
import sys
import tempfile
import time
import uuid

import aiohttp
from lsst.ts.ocps.jobs.journal import JOURNAL_FILE_NAME, Journal
from lsst.ts.ocps.models import ExecutionPhase, Job, JobResult

REPO_DIR = pathlib.Path(__file__).resolve().parents[1]
OCPS_SCRIPT = pathlib.Path(sys.executable).parent / "ocps"
BATCH = 10_000


def make_job(index: int, start: datetime.datetime) -> Job:
    """Return a plausible finished echo job."""
    created = start + datetime.timedelta(seconds=index)
    job_id = uuid.uuid4().hex
    return Job(
        job_id=job_id,
        type="echo",
        version="1.0",
        parameters={"message": f"message {index}"},
        run_id=str(index),
        phase=ExecutionPhase.COMPLETED if index % 10 else ExecutionPhase.ERROR,
        creation_time=created,
        start_time=created + datetime.timedelta(milliseconds=20),
        end_time=created + datetime.timedelta(milliseconds=80),
        destruction=created + datetime.timedelta(days=365),
        exit_code=0 if index % 10 else 1,
        results=[
            JobResult(
                id="out/message.txt",
                uri=f"file:///var/ocps/jobs/{job_id}/out/message.txt",
                size=12,
                mime_type="text/plain",
            )
        ],
        job_info={"result": {"message": f"message {index}"}},
    )


async def fill(state_dir: pathlib.Path, count: int) -> list[str]:
    """Write ``count`` finished jobs; return their ids."""
    journal = Journal(state_dir / JOURNAL_FILE_NAME)
    await journal.open()
    ids: list[str] = []
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=count)
    try:
        for first in range(0, count, BATCH):
            jobs = [make_job(i, start) for i in range(first, min(count, first + BATCH))]
            await journal.insert_many(jobs)
            ids += [job.job_id for job in jobs]
    finally:
        await journal.close()
    return ids


def rss_mib(pid: int) -> float:
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    assert match is not None
    return int(match.group(1)) / 1024


async def timed(session: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status}")
    return time.perf_counter() - start


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(jobs: int, gets: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = pathlib.Path(tmp) / "state"
        t0 = time.perf_counter()
        ids = await fill(state_dir, jobs)
        print(
            f"filled journal with {jobs} finished jobs in {time.perf_counter() - t0:.1f} s"
        )

        process = await asyncio.create_subprocess_exec(
            str(OCPS_SCRIPT),
            "serve",
            "--port",
            "0",
            "--job-types",
            str(REPO_DIR / "config" / "job_types"),
            "--state-dir",
            str(state_dir),
            "--log-level",
            "INFO",
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        drain: asyncio.Task | None = None
        try:
            url = await read_address(process.stderr)
            drain = asyncio.create_task(process.stderr.read())
            await run_requests(url, ids, gets, process.pid)
        finally:
            process.terminate()
            await process.wait()
            if drain is not None:
                await drain


async def read_address(stream: asyncio.StreamReader) -> str:
    while True:
        line = (await asyncio.wait_for(stream.readline(), 120)).decode()
        if not line:
            raise RuntimeError("ocps serve ended before listening")
        match = re.search(r"listening on (http://\S+?:\d+)", line)
        if match:
            return match.group(1) + "/api/v1"


async def run_requests(url: str, ids: list[str], gets: int, pid: int) -> None:
    print(f"server RSS after start: {rss_mib(pid):.1f} MiB")
    async with aiohttp.ClientSession() as session:
        await timed(session, f"{url}/health")
        get_times = [
            await timed(session, f"{url}/job/{random.choice(ids)}") for _ in range(gets)
        ]
        print(
            f"GET /job/{{id}} x{gets}: p50 {statistics.median(get_times) * 1e3:.2f} ms"
            f", p99 {percentile(get_times, 0.99) * 1e3:.2f} ms"
        )
        pages = max(20, gets // 20)
        first = [await timed(session, f"{url}/job?limit=100") for _ in range(pages)]
        deep_offset = len(ids) // 2
        deep = [
            await timed(session, f"{url}/job?limit=100&offset={deep_offset}")
            for _ in range(pages)
        ]
        errors = [
            await timed(session, f"{url}/job?limit=100&phase=ERROR")
            for _ in range(pages)
        ]
        print(
            f"GET /job?limit=100 (first page) p50 {statistics.median(first) * 1e3:.2f} ms"
        )
        print(
            f"GET /job?limit=100&offset={deep_offset} p50 "
            f"{statistics.median(deep) * 1e3:.2f} ms"
        )
        print(
            f"GET /job?limit=100&phase=ERROR p50 {statistics.median(errors) * 1e3:.2f} ms"
        )
        health = [await timed(session, f"{url}/health") for _ in range(pages)]
        print(f"GET /health p50 {statistics.median(health) * 1e3:.2f} ms")
        all_ids = await timed(session, f"{url}/job/list/all")
        print(f"GET /job/list/all ({len(ids)} ids) {all_ids * 1e3:.0f} ms")
    print(f"server RSS after the requests: {rss_mib(pid):.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--gets", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.gets))
