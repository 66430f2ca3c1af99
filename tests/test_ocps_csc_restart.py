"""Exactly one job_result per job across CSC restarts, also after kill -9."""

import asyncio
import contextlib
import json
import os
import pathlib
import re
import signal
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lsst.ts.ocps import sal
from lsst.ts.ocps.csc.ocps_csc import OcpsCsc
from lsst.ts.ocps.sal.testing import set_summary_state
from support.csc import (
    CONFIGS_DIR,
    STD_TIMEOUT,
    csc_env,
    make_ocps,
    next_job_result,
    run_execute,
    start_execute,
)

__all__ = ["csc_env"]

REPO_DIR = pathlib.Path(__file__).parents[1]
RUN_OCPS = REPO_DIR / ".venv" / "bin" / "run_ocps"


def exit_file(state_dir: pathlib.Path, job_id: str) -> pathlib.Path:
    """The file a job's supervisor writes when the job ends."""
    return state_dir / "jobs" / job_id / ".ocps" / "exit.json"


async def wait_for_file(path: pathlib.Path, timeout: float = STD_TIMEOUT) -> None:
    """Wait for a file written by another process (test-side wait)."""
    async with asyncio.timeout(timeout):
        while not path.is_file():
            await asyncio.sleep(0.05)


async def test_restart_reports_once(csc_env: str, tmp_path: pathlib.Path) -> None:
    state_dir = tmp_path / "state" / "1"
    async with make_ocps(initial_state=sal.State.ENABLED) as harness:
        remote = harness.remote
        done = await run_execute(remote, pipeline="done.yaml")
        pending = await start_execute(remote, pipeline="p.yaml", data_query="sleep=1")
        next_ack = asyncio.create_task(
            remote.cmd_execute.next_ackcmd(pending.first_ack, timeout=STD_TIMEOUT)
        )
        await asyncio.sleep(0)
        await harness.csc.close()
        # Closing the CSC aborted the pending command, not the job.
        with pytest.raises(sal.AckError) as error_info:
            await next_ack
        assert error_info.value.ackcmd.ack == sal.SalRetCode.CMD_ABORTED
    await wait_for_file(exit_file(state_dir, pending.job_id))

    # The job ended while no CSC ran; the next one publishes its result
    # at start-up, in STANDBY.
    async with make_ocps() as harness:
        data = await next_job_result(harness.remote, pending.job_id)
        assert data.exit_code == 0
        assert json.loads(data.result)["phase"] == "completed"
        csc = harness.csc
        assert csc.summary_state == sal.State.STANDBY
        assert csc.manager is not None
        while csc.reporter.tasks:
            await asyncio.sleep(0.01)
        assert await csc.manager.unreported_jobs() == []

    # Nothing is left to publish after that.
    async with make_ocps() as harness:
        csc = harness.csc
        assert isinstance(csc, OcpsCsc)
        assert csc.reporter.tasks == {}
        assert csc.manager is not None
        assert await csc.manager.unreported_jobs() == []
        job = await csc.manager.get_job(done.job_id)
        assert job.phase.value == "COMPLETED"


async def test_result_retried_until_published(csc_env: str) -> None:
    async with make_ocps(initial_state=sal.State.ENABLED) as harness:
        csc = harness.csc
        assert isinstance(csc, OcpsCsc)
        real_set_write = csc.evt_job_result.set_write
        failures = []

        # Stand-in for a broker outage: the first two writes fail.
        async def flaky_set_write(**kwargs: Any) -> Any:
            if len(failures) < 2:
                failures.append(kwargs["job_id"])
                raise ConnectionError("broker unavailable (test stand-in)")
            return await real_set_write(**kwargs)

        csc.evt_job_result.set_write = flaky_set_write  # type: ignore[method-assign]
        flow = await run_execute(harness.remote, pipeline="p.yaml")
        assert failures == [flow.job_id, flow.job_id]
        assert flow.job_result is not None and flow.job_result.exit_code == 0
        assert csc.manager is not None
        assert await csc.manager.unreported_jobs() == []


@contextlib.asynccontextmanager
async def run_ocps_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``run_ocps 1 ...`` on the good config; kill it at the end."""
    process = await asyncio.create_subprocess_exec(
        str(RUN_OCPS),
        "1",
        "--configdir",
        str(CONFIGS_DIR / "good"),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        env=dict(os.environ),
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def next_state(remote: sal.Remote) -> sal.State:
    data = await remote.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)
    return sal.State(data.summaryState)


async def test_kill_9_and_restart(
    kafka_env: object, csc_env: str, tmp_path: pathlib.Path
) -> None:
    state_dir = tmp_path / "state" / "1"
    async with sal.Remote(None, "OCPS", 1) as remote:
        async with run_ocps_process("--state", "enabled") as process:
            assert [await next_state(remote) for _ in range(3)] == [
                sal.State.STANDBY,
                sal.State.DISABLED,
                sal.State.ENABLED,
            ]
            # Reported before the kill.
            before = await run_execute(
                remote, pipeline="before.yaml", data_query="exit=4"
            )
            # Running at the kill, ends while no CSC runs.
            ends_down = await start_execute(
                remote, pipeline="down.yaml", data_query="sleep=2"
            )
            # Running at the kill, ends after the restart.
            ends_up = await start_execute(
                remote, pipeline="up.yaml", data_query="sleep=10"
            )
            # Held at the kill, runs after the restart.
            held = await start_execute(
                remote, pipeline="held.yaml", prereq_jobs=ends_up.job_id
            )
            for flow in (ends_down, ends_up):
                # The second in-progress ack says the job is executing.
                ack = await remote.cmd_execute.next_ackcmd(
                    flow.first_ack, wait_done=False, timeout=STD_TIMEOUT
                )
                assert ack.ack == sal.SalRetCode.CMD_INPROGRESS
                assert ack.result == flow.first_ack.result
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL

        await wait_for_file(exit_file(state_dir, ends_down.job_id))
        assert not exit_file(state_dir, ends_up.job_id).is_file()

        # Restart in STANDBY: results are published all the same.
        async with run_ocps_process() as process:
            results: dict[str, list[int]] = {}
            while held.job_id not in results:
                data = await remote.evt_job_result.next(
                    flush=False, timeout=STD_TIMEOUT
                )
                job_id = json.loads(data.result)["jobId"]
                results.setdefault(job_id, []).append(data.exit_code)
            assert results == {
                ends_down.job_id: [0],
                ends_up.job_id: [0],
                held.job_id: [0],
            }
            assert before.job_result is not None
            assert before.job_result.exit_code == 4
            state = await remote.evt_summaryState.aget(timeout=STD_TIMEOUT)
            assert state.summaryState == sal.State.STANDBY

            await remote.cmd_exitControl.set_start(timeout=STD_TIMEOUT)
            assert await asyncio.wait_for(process.wait(), STD_TIMEOUT) == 0


def test_run_ocps_is_installed() -> None:
    assert RUN_OCPS.is_file(), "run dev/setup.sh (pip install -e .)"
    assert os.access(RUN_OCPS, os.X_OK)


class OcpsProcess:
    """``run_ocps`` on the in-process transport, its log read as it goes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace").rstrip())
            self._new_line.set()

    async def wait_for_line(self, pattern: str) -> re.Match[str]:
        """Wait for a log line matching a regular expression."""
        regex = re.compile(pattern)
        checked = 0
        async with asyncio.timeout(STD_TIMEOUT):
            while True:
                for line in self.lines[checked:]:
                    match = regex.search(line)
                    if match:
                        return match
                checked = len(self.lines)
                self._new_line.clear()
                await self._new_line.wait()

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._reader


async def start_inprocess_ocps() -> tuple[OcpsProcess, str]:
    """Start ``run_ocps 1 --state enabled``; return it and its REST URL."""
    env = dict(os.environ)
    env.pop("LSST_KAFKA_BROKER_ADDR", None)
    env.pop("LSST_TOPIC_SUBNAME", None)
    process = await asyncio.create_subprocess_exec(
        str(RUN_OCPS),
        "1",
        "--state",
        "enabled",
        "--configdir",
        str(CONFIGS_DIR / "good"),
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    ocps = OcpsProcess(process)
    await ocps.wait_for_line("SAL transport: in-process")
    match = await ocps.wait_for_line(r"REST job API listening on (http://\S+/api/v1)")
    await ocps.wait_for_line("Executing enable command during startup")
    return ocps, match.group(1).removesuffix("/api/v1")


async def ocps_cli(url: str, *args: str) -> tuple[int, str]:
    """Run the ``ocps`` console script; return exit code and stdout."""
    process = await asyncio.create_subprocess_exec(
        str(RUN_OCPS.parent / "ocps"),
        *args,
        "--url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), STD_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, stdout.decode()


def is_reported(state_dir: pathlib.Path, job_id: str) -> bool:
    """Read the journal's reported flag (a second reader is fine in WAL)."""
    with contextlib.closing(sqlite3.connect(state_dir / "ocps.sqlite3")) as db:
        row = db.execute("SELECT reported FROM jobs WHERE job_id = ?", (job_id,))
        return bool(row.fetchone()[0])


async def test_inprocess_run_ocps_rest_and_cli(
    csc_env: str, tmp_path: pathlib.Path
) -> None:
    """No broker: REST and CLI still work, and a kill -9 loses no job."""
    state_dir = tmp_path / "state" / "1"
    ocps, url = await start_inprocess_ocps()
    try:
        code, output = await ocps_cli(
            url, "submit", "fake_pipetask", "-p", "pipeline=quick.yaml", "--wait"
        )
        assert code == 0, output
        code, output = await ocps_cli(
            url,
            "submit",
            "fake_pipetask",
            "-p",
            "pipeline=slow.yaml",
            "-p",
            "data_query=sleep=120",
            "--json",
        )
        assert code == 0, output
        slow_id = json.loads(output)["job_id"]
        await ocps.wait_for_line(f"job_id={slow_id} started")
        await ocps.wait_for_line(r"job_id=\w+ finished phase=completed exit_code=0")
        ocps.process.send_signal(signal.SIGKILL)
        assert await ocps.process.wait() == -signal.SIGKILL
    finally:
        await ocps.close()
    assert not is_reported(state_dir, slow_id)

    ocps, url = await start_inprocess_ocps()
    try:
        await ocps.wait_for_line(f"job_id={slow_id} recovered phase=EXECUTING")
        code, output = await ocps_cli(url, "status", slow_id, "--json")
        assert code == 0 and json.loads(output)["phase"] == "EXECUTING"
        code, output = await ocps_cli(url, "abort", slow_id)
        assert code == 0, output
        await ocps.wait_for_line(
            f"job_id={slow_id} aborted phase=aborted exit_code=255; job_result published"
        )
        assert is_reported(state_dir, slow_id)
        ocps.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(ocps.process.wait(), STD_TIMEOUT) == 0
    finally:
        await ocps.close()


async def test_exit_control_keeps_jobs(csc_env: str, tmp_path: pathlib.Path) -> None:
    """exitControl ends the CSC, not its jobs; the next CSC reports them."""
    state_dir = tmp_path / "state" / "1"
    async with make_ocps(initial_state=sal.State.ENABLED) as harness:
        remote, csc = harness.remote, harness.csc
        running = await start_execute(remote, pipeline="r.yaml", data_query="sleep=2")
        held = await start_execute(
            remote, pipeline="h.yaml", prereq_jobs=running.job_id
        )
        acks = [
            asyncio.create_task(
                remote.cmd_execute.next_ackcmd(flow.first_ack, timeout=STD_TIMEOUT)
            )
            for flow in (running, held)
        ]
        await asyncio.sleep(0)
        await set_summary_state(remote, sal.State.OFFLINE)
        await asyncio.wait_for(csc.done_task, STD_TIMEOUT)
        for ack in acks:
            with pytest.raises(sal.AckError) as error_info:
                await ack
            assert error_info.value.ackcmd.ack == sal.SalRetCode.CMD_ABORTED

    # The running job finishes with no CSC; the held one waits in the
    # journal and runs under the next CSC.
    await wait_for_file(exit_file(state_dir, running.job_id))
    assert not exit_file(state_dir, held.job_id).exists()
    async with make_ocps() as harness:
        results: dict[str, list[int]] = {}
        while held.job_id not in results:
            data = await harness.remote.evt_job_result.next(
                flush=False, timeout=STD_TIMEOUT
            )
            job_id = json.loads(data.result)["jobId"]
            results.setdefault(job_id, []).append(data.exit_code)
        assert results == {running.job_id: [0], held.job_id: [0]}
