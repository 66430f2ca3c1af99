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

"""Crash test: kill -9 a real OCPS server with jobs in every active phase,
start another on the same state dir, and check every job's end."""

import asyncio
import contextlib
import os
import pathlib
import re
import signal
import sys
from collections.abc import AsyncIterator

from lsst.ts.ocps.jobs.job_manager import LOST_MESSAGE
from lsst.ts.ocps.jobs.journal import Journal
from lsst.ts.ocps.rest.client import OcpsClient
from support.jobs import STD_TIMEOUT

_SERVE_CODE = "import sys; from lsst.ts.ocps.cli import main; sys.exit(main())"


class Server:
    """A real ``ocps serve`` process and the lines it logs."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = re.search(r"listening on (http://[\d.]+:\d+)", line)
            if match and not self.url.done():
                self.url.set_result(match.group(1))
        if not self.url.done():
            self.url.set_exception(RuntimeError("\n".join(self.lines[-20:])))


@contextlib.asynccontextmanager
async def run_server(
    state_dir: pathlib.Path, job_types_dir: pathlib.Path
) -> AsyncIterator[Server]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SERVE_CODE,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--job-types",
        str(job_types_dir),
        "--state-dir",
        str(state_dir),
        "--max-concurrent",
        "2",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = Server(process)
    try:
        await asyncio.wait_for(asyncio.shield(server.url), STD_TIMEOUT)
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), STD_TIMEOUT)
        await server.reader


def job_processes(job_id: str) -> list[int]:
    """Pids of live processes of this job (those with its id in their
    environment)."""
    marker = f"OCPS_JOB_ID={job_id}".encode()
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def wait_phase(client: OcpsClient, job_id: str, phase: str) -> dict:
    async with asyncio.timeout(STD_TIMEOUT):
        job = await client.get(job_id)
        while job["phase"] != phase:
            job = await client.get(job_id, wait=STD_TIMEOUT, phase=job["phase"])
        return job


async def test_kill_9_and_recover(
    tmp_path: pathlib.Path, job_types_dir: pathlib.Path
) -> None:
    state_dir = tmp_path / "state"
    data_dir = tmp_path / "data"
    survivor_gate = tmp_path / "survivor-gate"
    victim_gate = tmp_path / "victim-gate"
    blocker_gate = tmp_path / "blocker-gate"
    for gate in (survivor_gate, victim_gate, blocker_gate):
        os.mkfifo(gate)

    # First run: the victim's supervisor, found through the journal, is
    # killed after the server, then the job: that job is lost for good.
    # One supervisor serves all jobs of a server, so the other jobs are
    # started by a second server, on a supervisor of their own.
    async with run_server(state_dir, job_types_dir) as server:
        async with OcpsClient(await server.url) as client:
            victim = await client.submit("gate", {"fifo": str(victim_gate), "code": 0})
            await wait_phase(client, victim["jobId"], "EXECUTING")
        server.process.kill()
        assert await server.process.wait() == -signal.SIGKILL
    journal = Journal(state_dir / "ocps.sqlite3")
    await journal.open()
    try:
        victim_state = (await journal.get(victim["jobId"])).runner_state["state"]
    finally:
        await journal.close()
    os.kill(victim_state["supervisor_pid"], signal.SIGKILL)
    victims = job_processes(victim["jobId"])
    assert victims == [victim_state["pid"]]
    os.kill(victims[0], signal.SIGKILL)

    async with run_server(state_dir, job_types_dir) as server:
        async with OcpsClient(await server.url) as client:
            survivor = await client.submit(
                "gate", {"fifo": str(survivor_gate), "code": 17}
            )
            blocker = await client.submit(
                "gate", {"fifo": str(blocker_gate), "code": 4}
            )
            await wait_phase(client, survivor["jobId"], "EXECUTING")
            await wait_phase(client, blocker["jobId"], "EXECUTING")
            queued = await client.submit("exit_code", {"code": 3})
            held_prereq = await client.submit(
                "exit_code", {"code": 0}, prereq_jobs=[survivor["jobId"]]
            )
            held_data = await client.submit(
                "exit_code", {"code": 5}, wait_for=[str(data_dir / "*.dat")]
            )
            assert (await client.get(queued["jobId"]))["phase"] == "QUEUED"
            assert (await client.get(held_prereq["jobId"]))["phase"] == "HELD"
            assert (await client.get(held_data["jobId"]))["phase"] == "HELD"
        server.process.kill()
        assert await server.process.wait() == -signal.SIGKILL

    # The executing jobs outlive the server.
    assert job_processes(survivor["jobId"])
    assert job_processes(blocker["jobId"])

    async with run_server(state_dir, job_types_dir) as server:
        for job in (survivor, blocker, queued, held_prereq, held_data):
            assert any(
                f"job_id={job['jobId']} recovered" in line for line in server.lines
            )
        async with OcpsClient(await server.url) as client:
            loop = asyncio.get_running_loop()
            # Opening the FIFO completes once the re-adopted job reads it.
            for gate in (survivor_gate, blocker_gate):
                await asyncio.wait_for(
                    loop.run_in_executor(None, gate.write_text, "go"), STD_TIMEOUT
                )
            data_dir.mkdir()
            (data_dir / "frame.dat").write_text("data")
            ended = {}
            for job in (survivor, victim, blocker, queued, held_prereq, held_data):
                ended[job["jobId"]] = await client.wait(
                    job["jobId"], timeout=STD_TIMEOUT
                )

            listed = await client.list()
            assert sorted(job["jobId"] for job in listed) == sorted(ended)

    result = ended[survivor["jobId"]]
    assert (result["phase"], result["exitCode"]) == ("ERROR", 17)
    assert result["errorSummary"]["message"] == "process exited with code 17"
    result = ended[victim["jobId"]]
    assert (result["phase"], result["exitCode"]) == ("ERROR", None)
    assert result["errorSummary"]["message"].startswith(LOST_MESSAGE)
    result = ended[blocker["jobId"]]
    assert (result["phase"], result["exitCode"]) == ("ERROR", 4)
    result = ended[queued["jobId"]]
    assert (result["phase"], result["exitCode"]) == ("ERROR", 3)
    result = ended[held_prereq["jobId"]]
    assert (result["phase"], result["exitCode"]) == ("COMPLETED", 0)
    assert result["startTime"] >= ended[survivor["jobId"]]["endTime"]
    result = ended[held_data["jobId"]]
    assert (result["phase"], result["exitCode"]) == ("ERROR", 5)
    assert job_processes(survivor["jobId"]) == []
    assert job_processes(blocker["jobId"]) == []
