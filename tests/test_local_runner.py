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

"""Tests of LocalRunner and its supervisor with real processes."""

import asyncio
import dataclasses
import json
import os
import pathlib
import signal
import sys

import pytest
from lsst.ts.ocps.runners import supervisor
from lsst.ts.ocps.runners.base import LaunchSpec, RunStatus
from lsst.ts.ocps.runners.local import LocalRunner
from support.jobs import STD_TIMEOUT

# Starts a grandchild in the background, tells its pid through a FIFO,
# then sleeps.
FAMILY_CODE = """
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
with open(sys.argv[2], "w") as stream:
    stream.write(str(child.pid))
time.sleep(float(sys.argv[1]))
"""


@pytest.fixture
async def runner() -> LocalRunner:
    """A LocalRunner that is closed after the test."""
    started = LocalRunner(kill_grace=1)
    yield started
    await started.close()


def make_spec(
    tmp_path: pathlib.Path,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    log_limit: int = 0,
    time_limit: float = 0,
) -> LaunchSpec:
    work_dir = tmp_path / "work"
    work_dir.mkdir(exist_ok=True)
    return LaunchSpec(
        job_id="job1",
        argv=argv,
        env={"PATH": os.environ["PATH"]} if env is None else env,
        work_dir=work_dir,
        stdout_path=work_dir / "out.log",
        stderr_path=work_dir / "err.log",
        log_limit=log_limit,
        time_limit=time_limit,
    )


def alive(pid: int) -> bool:
    try:
        state = (
            pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        )
    except FileNotFoundError:
        return False
    return state != "Z"


async def ends(pid: int) -> bool:
    """Wait (without polling) for a process to end; True once it has."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    loop.add_reader(pidfd, ended.set_result, True)
    try:
        return await asyncio.wait_for(ended, STD_TIMEOUT)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def make_fifo(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


async def read_fifo(path: pathlib.Path) -> str:
    """Read what a job writes into a FIFO (blocks until it does)."""
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(
        loop.run_in_executor(None, path.read_text), STD_TIMEOUT
    )


async def test_exit_code_env_cwd_and_logs(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    code = (
        "import json, os, sys; print('out'); print('err', file=sys.stderr); "
        "json.dump({'env': dict(os.environ), 'cwd': os.getcwd()}, open('seen.json', 'w')); "
        "sys.exit(5)"
    )
    env = {"PATH": os.environ["PATH"], "ONLY_THIS": "yes; $(not run)"}
    spec = make_spec(tmp_path, [sys.executable, "-c", code], env=env)
    state = await runner.launch(spec)
    await runner.wait_started("job1", state)
    outcome = await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert outcome.status == RunStatus.EXITED
    assert outcome.exit_code == 5
    seen = json.loads((spec.work_dir / "seen.json").read_text())
    assert seen["cwd"] == str(spec.work_dir)
    # Exactly the given environment (Python itself may add LC_CTYPE).
    assert set(seen["env"]) - {"LC_CTYPE"} == {"PATH", "ONLY_THIS"}
    assert seen["env"]["ONLY_THIS"] == "yes; $(not run)"
    assert spec.stdout_path.read_text() == "out\n"
    assert spec.stderr_path.read_text() == "err\n"
    assert not alive(state["pid"])


async def test_log_limit_keeps_head(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    code = "import sys; sys.stdout.write('a' * 100000); sys.stderr.write('short')"
    spec = make_spec(tmp_path, [sys.executable, "-c", code], log_limit=64)
    state = await runner.launch(spec)
    outcome = await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert outcome.exit_code == 0
    out = spec.stdout_path.read_bytes()
    assert out.startswith(b"a" * 64 + b"\n[ocps:")
    assert out.endswith(b"99936 more bytes dropped]\n")
    assert spec.stderr_path.read_bytes() == b"short"


async def test_terminate_stops_the_whole_group(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    fifo = make_fifo(tmp_path, "pid")
    spec = make_spec(tmp_path, [sys.executable, "-c", FAMILY_CODE, "300", str(fifo)])
    state = await runner.launch(spec)
    grandchild = int(await read_fifo(fifo))
    assert alive(grandchild)
    await runner.terminate("job1", state)
    outcome = await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert outcome.status == RunStatus.CANCELLED
    assert outcome.exit_code == -signal.SIGTERM
    assert await ends(grandchild)


async def test_leftover_background_process_is_killed(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    fifo = make_fifo(tmp_path, "pid")
    spec = make_spec(tmp_path, [sys.executable, "-c", FAMILY_CODE, "0", str(fifo)])
    state = await runner.launch(spec)
    grandchild = int(await read_fifo(fifo))
    outcome = await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert outcome.status == RunStatus.EXITED and outcome.exit_code == 0
    assert await ends(grandchild)


async def test_time_limit(tmp_path: pathlib.Path, runner: LocalRunner) -> None:
    spec = make_spec(tmp_path, ["sleep", "300"], time_limit=0.2)
    state = await runner.launch(spec)
    outcome = await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert outcome.status == RunStatus.TIMEOUT
    assert outcome.exit_code == -signal.SIGTERM


async def test_reattach_from_a_new_runner(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    # The job says it runs, then waits on a FIFO so the test decides when
    # it ends.
    ready = make_fifo(tmp_path, "ready")
    go = make_fifo(tmp_path, "go")
    code = (
        f"import sys; open({str(ready)!r}, 'w').write('ready'); "
        f"open({str(go)!r}).read(); sys.exit(7)"
    )
    spec = make_spec(tmp_path, [sys.executable, "-c", code])
    state = json.loads(json.dumps(await runner.launch(spec)))
    assert await read_fifo(ready) == "ready"
    # The supervisor and the job outlive the runner.
    await runner.close()

    # A runner that knows only the journaled state re-adopts the job.
    second = LocalRunner()
    assert await second.reattach("job1", state)
    waiter = asyncio.create_task(second.wait_finished("job1", state))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    go.write_text("go")
    outcome = await asyncio.wait_for(waiter, STD_TIMEOUT)
    assert outcome.status == RunStatus.EXITED
    assert outcome.exit_code == 7
    # Once ended, the exit file still answers.
    assert await LocalRunner().reattach("job1", state)


async def test_terminate_from_a_new_runner(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    fifo = make_fifo(tmp_path, "pid")
    spec = make_spec(tmp_path, [sys.executable, "-c", FAMILY_CODE, "300", str(fifo)])
    state = json.loads(json.dumps(await runner.launch(spec)))
    grandchild = int(await read_fifo(fifo))
    await runner.close()

    # The supervisor of the first runner stops the job for the second.
    second = LocalRunner(kill_grace=1)
    try:
        assert await second.reattach("job1", state)
        await second.terminate("job1", state)
        outcome = await asyncio.wait_for(
            second.wait_finished("job1", state), STD_TIMEOUT
        )
    finally:
        await second.close()
    assert outcome.status == RunStatus.CANCELLED
    assert outcome.exit_code == -signal.SIGTERM
    assert await ends(grandchild)
    assert await ends(state["supervisor_pid"])


async def test_one_supervisor_for_concurrent_jobs(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    (tmp_path / "slow").mkdir()
    (tmp_path / "quick").mkdir()
    specs = [
        make_spec(tmp_path / "slow", ["sleep", "300"], time_limit=0.5),
        make_spec(tmp_path / "quick", [sys.executable, "-c", "print('done')"]),
    ]
    states = [await runner.launch(spec) for spec in specs]
    assert states[0]["supervisor_pid"] == states[1]["supervisor_pid"]
    slow, quick = await asyncio.wait_for(
        asyncio.gather(*(runner.wait_finished("job1", state) for state in states)),
        STD_TIMEOUT,
    )
    assert (quick.status, quick.exit_code) == (RunStatus.EXITED, 0)
    assert specs[1].stdout_path.read_text() == "done\n"
    assert (slow.status, slow.exit_code) == (RunStatus.TIMEOUT, -signal.SIGTERM)


# Stand-in for a per-job supervisor of an earlier ts_ocps (its state has
# no supervisor_pid): it stops on SIGTERM and records a cancelled job.
OLD_SUPERVISOR_CODE = """
import signal, sys, time
def stop(signum, frame):
    with open(sys.argv[1], "w") as stream:
        stream.write('{"status": "cancelled", "exit_code": -15}')
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(300)
"""


async def test_state_of_a_per_job_supervisor(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    exit_file = tmp_path / "exit.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        OLD_SUPERVISOR_CODE,
        str(exit_file),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert await process.stdout.readline() == b"ready\n"
    state = {
        "pid": process.pid,
        "start_ticks": supervisor.read_start_ticks(process.pid),
        "exit_file": str(exit_file),
    }
    assert await runner.reattach("job1", state)
    await runner.terminate("job1", state)
    outcome = await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert (outcome.status, outcome.exit_code) == (RunStatus.CANCELLED, -15)
    assert await process.wait() == 0


async def test_lost_job(tmp_path: pathlib.Path, runner: LocalRunner) -> None:
    spec = make_spec(tmp_path, ["true"])
    state = await runner.launch(spec)
    await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    # As after a restart: the supervisor has ended, and the file is gone.
    await runner.close()
    pathlib.Path(state["exit_file"]).unlink()
    assert not await runner.reattach("job1", state)
    outcome = await runner.wait_finished("job1", state)
    assert outcome.status == RunStatus.LOST
    assert "lost during a restart" in outcome.message

    # A file that does not parse (written by hand: the supervisor renames a
    # complete file into place).
    pathlib.Path(state["exit_file"]).write_text('{"status": "exi')
    outcome = await runner.wait_finished("job1", state)
    assert outcome.status == RunStatus.LOST
    assert "unreadable" in outcome.message

    pathlib.Path(state["exit_file"]).unlink()

    # A live process that is not our job (start time differs).
    impostor = dict(state, pid=os.getpid())
    assert not await runner.reattach("job1", impostor)


async def test_missing_work_dir_is_refused(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    spec = make_spec(tmp_path, ["true"])
    spec.work_dir.rmdir()
    with pytest.raises(FileNotFoundError, match="cannot start 'true'.*/work"):
        await runner.launch(spec)
    # Nothing was created for it, and the supervisor serves on.
    assert not spec.work_dir.exists()
    spec.work_dir.mkdir()
    state = await runner.launch(spec)
    outcome = await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert (outcome.status, outcome.exit_code) == (RunStatus.EXITED, 0)


async def test_silent_job_leaves_no_log_files(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    spec = make_spec(tmp_path, ["true"])
    state = await runner.launch(spec)
    outcome = await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert (outcome.status, outcome.exit_code) == (RunStatus.EXITED, 0)
    assert not spec.stdout_path.exists() and not spec.stderr_path.exists()
    assert pathlib.Path(state["exit_file"]).is_file()


async def test_relative_command_runs_from_the_work_dir(
    tmp_path: pathlib.Path, runner: LocalRunner
) -> None:
    spec = make_spec(tmp_path, ["./tool", "x"], env={"PATH": ""})
    tool = spec.work_dir / "tool"
    tool.write_text('#!/bin/sh\necho "tool $1 in $(pwd)"\n')
    tool.chmod(0o755)
    state = await runner.launch(spec)
    outcome = await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert (outcome.status, outcome.exit_code) == (RunStatus.EXITED, 0)
    assert spec.stdout_path.read_text() == f"tool x in {spec.work_dir}\n"
    # An empty PATH entry is the work dir too.
    spec = dataclasses.replace(spec, argv=["tool", "y"], env={"PATH": "/nowhere:"})
    state = await runner.launch(spec)
    await asyncio.wait_for(runner.wait_finished("job1", state), STD_TIMEOUT)
    assert spec.stdout_path.read_text().endswith(f"tool y in {spec.work_dir}\n")


async def test_command_not_found(tmp_path: pathlib.Path, runner: LocalRunner) -> None:
    with pytest.raises(OSError, match="command not found"):
        await runner.launch(make_spec(tmp_path, ["no-such-command-ocps"]))
    with pytest.raises(OSError, match="command not found"):
        await runner.launch(make_spec(tmp_path, ["/nonexistent/cmd"]))
    with pytest.raises(OSError, match="empty command"):
        await runner.launch(make_spec(tmp_path, []))
