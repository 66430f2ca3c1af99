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

"""Tests of the Slurm runner against a real single-node Slurm cluster."""

import asyncio
import json
import logging
import os
import pathlib
import socket
import sys
from typing import Any

import pytest
from lsst.ts.ocps.runners.base import LaunchSpec, RunOutcome, RunStatus
from lsst.ts.ocps.runners.slurm import SlurmRunner, SlurmSpecError
from lsst.ts.ocps.runners.slurm_cli import (
    SlurmCommandError,
    SlurmUnavailableError,
    parse_exit_code,
    parse_show_job,
    parse_squeue,
)
from lsst.ts.ocps.runners.slurm_job import map_outcome
from support.slurm import SlurmCluster

STD_TIMEOUT = 60  # seconds; a generous bound for any one Slurm job
TIME_LIMIT_TIMEOUT = 240  # seconds; Slurm enforces limits in minutes

PROBE = (
    "import json, os, sys; json.dump({'argv': sys.argv[1:], "
    "'env': dict(os.environ), 'cwd': os.getcwd()}, open('probe.json', 'w'))"
)
"""Python code that records its argv, environment and cwd as JSON."""


def make_spec(
    tmp_path: pathlib.Path,
    job_id: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    time_limit: float = 0.0,
    options: dict[str, Any] | None = None,
    dir_name: str | None = None,
) -> LaunchSpec:
    """Make a LaunchSpec with a fresh work dir under ``tmp_path``."""
    work_dir = tmp_path / (dir_name or job_id)
    work_dir.mkdir(parents=True)
    return LaunchSpec(
        job_id=job_id,
        argv=argv,
        env=env if env is not None else {"PATH": "/usr/bin:/bin"},
        work_dir=work_dir,
        stdout_path=work_dir / "stdout.txt",
        stderr_path=work_dir / "stderr.txt",
        time_limit=time_limit,
        options=options or {},
    )


async def run_job(
    runner: SlurmRunner, spec: LaunchSpec
) -> tuple[dict[str, Any], RunOutcome]:
    """Launch a job and wait for its end; return its state and outcome."""
    state = await runner.launch(spec)
    await asyncio.wait_for(runner.wait_started(spec.job_id, state), STD_TIMEOUT)
    outcome = await asyncio.wait_for(
        runner.wait_finished(spec.job_id, state), STD_TIMEOUT
    )
    return state, outcome


async def wait_for_file(path: pathlib.Path) -> None:
    """Wait until a job has written a file."""
    async with asyncio.timeout(STD_TIMEOUT):
        while not path.exists() or path.stat().st_size == 0:
            await asyncio.sleep(0.1)


def record_calls(runner: SlurmRunner) -> list[str]:
    """Make the runner note the name of every Slurm command it runs."""
    calls: list[str] = []
    original_run = runner.cli.run

    async def recording_run(tool, args, stdin=None):  # type: ignore[no-untyped-def]
        calls.append(tool)
        return await original_run(tool, args, stdin)

    runner.cli.run = recording_run  # type: ignore[method-assign]
    return calls


def unreachable_conf(cluster: SlurmCluster, tmp_path: pathlib.Path) -> pathlib.Path:
    """Write a copy of the cluster's config naming a port nobody serves."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text = pathlib.Path(cluster.conf).read_text()
    lines = [
        f"SlurmctldPort={port}" if line.startswith("SlurmctldPort=") else line
        for line in text.splitlines()
    ]
    conf = tmp_path / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_pid_gone(pid: int) -> bool:
    """Wait (bounded) until a process is gone; return whether it is."""
    for _ in range(100):
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.1)
    return not pid_alive(pid)


def test_parse_helpers() -> None:
    assert parse_exit_code("0:0") == 0
    assert parse_exit_code("7:0") == 7
    assert parse_exit_code("0:15") == -15
    assert parse_exit_code("143:0") == 143
    assert parse_exit_code("n/a") is None
    entries = parse_squeue("12|PENDING|BeginTime\n13|COMPLETED|None\ngarbage\n")
    assert sorted(entries) == ["12", "13"]
    assert entries["12"].state == "PENDING"
    assert entries["12"].reason == "BeginTime"
    fields = parse_show_job(
        "JobId=5 JobName=ocps-a JobState=FAILED Reason=NonZeroExitCode "
        "Dependency=(null) ExitCode=3:0 RunTime=00:00:01"
    )
    assert fields == {
        "JobId": "5",
        "JobName": "ocps-a",
        "JobState": "FAILED",
        "Reason": "NonZeroExitCode",
        "ExitCode": "3:0",
    }


def test_outcome_mapping() -> None:
    cases = [
        (("COMPLETED", 0, "None"), RunStatus.EXITED, 0),
        (("FAILED", 3, "NonZeroExitCode"), RunStatus.EXITED, 3),
        (("FAILED", -9, "JobLaunchFailure"), RunStatus.EXITED, -9),
        (("FAILED", -53, "JobLaunchFailure"), RunStatus.EXITED, None),
        (("NODE_FAIL", 0, "None"), RunStatus.EXITED, None),
        (("OUT_OF_MEMORY", 0, "None"), RunStatus.EXITED, None),
        (("TIMEOUT", -15, "TimeLimit"), RunStatus.TIMEOUT, -15),
        (("CANCELLED", 0, "None"), RunStatus.CANCELLED, None),
        (("CANCELLED", -15, "None"), RunStatus.CANCELLED, -15),
    ]
    for args, status, exit_code in cases:
        outcome = map_outcome(*args)
        assert (outcome.status, outcome.exit_code) == (status, exit_code), args
    assert "OUT_OF_MEMORY" in map_outcome("OUT_OF_MEMORY", 0, "").message
    launch = map_outcome("FAILED", -53, "JobLaunchFailure")
    assert launch.message == "Slurm job state FAILED (JobLaunchFailure)"


def test_options_checked() -> None:
    SlurmRunner.check_options(
        {"partition": "debug", "cpus": 2, "memory": "1G", "sbatch_options": ["--qos=x"]}
    )
    SlurmRunner.check_options({"memory": 512})
    bad: list[tuple[dict[str, Any], str]] = [
        ({"cpu": 1}, "unknown Slurm runner options"),
        ({"cpus": 0}, "cpus=0"),
        ({"cpus": True}, "cpus=True"),
        ({"memory": "lots"}, "memory='lots'"),
        ({"partition": "a b"}, "partition='a b'"),
        ({"sbatch_options": "--qos=x"}, "must be a list"),
        ({"sbatch_options": ["--export=ALL"]}, "set by the runner"),
        ({"sbatch_options": ["--out=/tmp/x"]}, "set by the runner"),
        ({"sbatch_options": ["-o/tmp/x"]}, "set by the runner"),
        ({"sbatch_options": ["--wrap=true"]}, "set by the runner"),
        ({"sbatch_options": ["qos"]}, "must start with"),
    ]
    for options, match in bad:
        with pytest.raises(ValueError, match=match):
            SlurmRunner.check_options(options)
    with pytest.raises(ValueError, match="set by the runner"):
        SlurmRunner(sbatch_options=["--hold"])


def test_script_quoting(tmp_path: pathlib.Path) -> None:
    runner = SlurmRunner()
    spec = make_spec(tmp_path, "q", ["prog", "a b", "it's"], env={"A": "x,y"})
    script = runner.make_script(spec)
    assert "export A=x,y\n" in script
    assert script.endswith("exec -- prog 'a b' 'it'\"'\"'s'\n")
    with pytest.raises(ValueError, match="empty command"):
        runner.make_script(make_spec(tmp_path, "e", []))
    with pytest.raises(ValueError, match="'BAD-NAME'"):
        runner.make_script(make_spec(tmp_path, "n", ["x"], env={"BAD-NAME": "1"}))
    options = runner.make_sbatch_options(
        make_spec(tmp_path, "t", ["x"], time_limit=61, dir_name="w 100%j")
    )
    assert "--time=2" in options
    assert "--export=NONE" in options
    assert f"--output={tmp_path}/w 100%%j/stdout.txt" in options


async def test_success_argv_env_and_output(
    slurm_runner: SlurmRunner, tmp_path: pathlib.Path
) -> None:
    args = ["a b", "it's", "$HOME", "x;y", "--flag", "*", "", "new\nline"]
    env = {
        "PATH": "/usr/bin:/bin",
        "COMMAS": "a,b,c=d",
        "TRICKY": "'\"$(echo no)` \\ \n end",
        "EMPTY": "",
    }
    code = PROBE + "; print('to stdout'); print('to stderr', file=sys.stderr)"
    spec = make_spec(
        tmp_path,
        "success",
        [sys.executable, "-c", code, *args],
        env=env,
        dir_name="work 100%j dir",
    )
    state, outcome = await run_job(slurm_runner, spec)
    assert state["slurm_job_id"].isdigit()
    assert state["job_name"] == "ocps-success"
    assert outcome.status == RunStatus.EXITED
    assert outcome.exit_code == 0

    probe = json.loads((spec.work_dir / "probe.json").read_text())
    assert probe["argv"] == args
    assert probe["cwd"] == str(spec.work_dir)
    job_env = probe["env"]
    for name, value in env.items():
        assert job_env[name] == value
    # bash's exec sets SHLVL and Python coerces a C locale with LC_CTYPE.
    extra = {name for name in job_env if name not in env} - {"SHLVL", "LC_CTYPE"}
    assert extra and all(name.startswith("SLURM") for name in extra), extra
    assert job_env["SLURM_JOB_ID"] == state["slurm_job_id"]
    assert spec.stdout_path.read_text() == "to stdout\n"
    assert spec.stderr_path.read_text() == "to stderr\n"


async def test_nonzero_exit_signal_and_missing_program(
    slurm_runner: SlurmRunner, tmp_path: pathlib.Path
) -> None:
    specs = [
        make_spec(tmp_path, "exit3", ["/bin/sh", "-c", "exit 3"]),
        make_spec(tmp_path, "killed", ["/bin/sh", "-c", "kill -KILL $$"]),
        make_spec(tmp_path, "missing", ["no-such-program-ocps"]),
    ]
    outcomes = await asyncio.gather(*(run_job(slurm_runner, s) for s in specs))
    exit3, killed, missing = (outcome for _, outcome in outcomes)
    assert exit3.status == RunStatus.EXITED
    assert exit3.exit_code == 3
    assert exit3.message == ""
    assert killed.status == RunStatus.EXITED
    assert killed.exit_code == -9
    assert missing.status == RunStatus.EXITED
    assert missing.exit_code == 127
    assert "no-such-program-ocps" in specs[2].stderr_path.read_text()


async def test_time_limit(slurm_runner: SlurmRunner, tmp_path: pathlib.Path) -> None:
    # Slurm's limits are whole minutes, checked about every 30 s: the
    # fastest real TIMEOUT is a 1 minute limit (here 1 s, rounded up).
    spec = make_spec(
        tmp_path,
        "timeout",
        ["/bin/sh", "-c", "echo $$ > pid; exec sleep 600"],
        time_limit=1,
    )
    state = await slurm_runner.launch(spec)
    await asyncio.wait_for(slurm_runner.wait_started(spec.job_id, state), STD_TIMEOUT)
    await wait_for_file(spec.work_dir / "pid")
    pid = int((spec.work_dir / "pid").read_text())
    outcome = await asyncio.wait_for(
        slurm_runner.wait_finished(spec.job_id, state), TIME_LIMIT_TIMEOUT
    )
    assert outcome.status == RunStatus.TIMEOUT
    assert outcome.message == "time limit exceeded"
    assert await wait_pid_gone(pid)


async def test_cancel_pending(
    slurm_runner: SlurmRunner, tmp_path: pathlib.Path
) -> None:
    spec = make_spec(
        tmp_path,
        "pending",
        ["/bin/sh", "-c", "touch ran"],
        options={"sbatch_options": ["--begin=now+1hour"]},
    )
    state = await slurm_runner.launch(spec)
    started = asyncio.create_task(slurm_runner.wait_started(spec.job_id, state))
    try:
        fields = await slurm_runner.cli.show_job(state["slurm_job_id"])
        assert fields is not None
        assert fields["JobState"] == "PENDING"
        await asyncio.sleep(3 * slurm_runner.poll_interval)
        assert not started.done()
        assert slurm_runner.followed_jobs() == {"pending": state["slurm_job_id"]}
        await slurm_runner.terminate(spec.job_id, state)
        await asyncio.wait_for(started, STD_TIMEOUT)
    finally:
        started.cancel()
    outcome = await asyncio.wait_for(
        slurm_runner.wait_finished(spec.job_id, state), STD_TIMEOUT
    )
    assert outcome.status == RunStatus.CANCELLED
    assert outcome.exit_code is None
    assert not (spec.work_dir / "ran").exists()
    assert slurm_runner.followed_jobs() == {}


async def test_cancel_running(
    slurm_runner: SlurmRunner, tmp_path: pathlib.Path
) -> None:
    spec = make_spec(
        tmp_path, "running", ["/bin/sh", "-c", "echo $$ > pid; exec sleep 600"]
    )
    state = await slurm_runner.launch(spec)
    await asyncio.wait_for(slurm_runner.wait_started(spec.job_id, state), STD_TIMEOUT)
    await wait_for_file(spec.work_dir / "pid")
    pid = int((spec.work_dir / "pid").read_text())
    assert pid_alive(pid)
    calls = record_calls(slurm_runner)
    await slurm_runner.terminate(spec.job_id, state)
    outcome = await asyncio.wait_for(
        slurm_runner.wait_finished(spec.job_id, state), STD_TIMEOUT
    )
    assert outcome.status == RunStatus.CANCELLED
    assert outcome.exit_code == -15
    assert await wait_pid_gone(pid)
    assert calls.count("scancel") == 1
    # Terminating an ended job is harmless.
    await slurm_runner.terminate(spec.job_id, state)


async def test_many_jobs_one_squeue_at_a_time(
    slurm_runner: SlurmRunner, tmp_path: pathlib.Path
) -> None:
    calls: list[str] = []
    running = 0
    most_running = 0
    original_run = slurm_runner.cli.run

    async def counting_run(tool, args, stdin=None):  # type: ignore[no-untyped-def]
        nonlocal running, most_running
        calls.append(tool)
        if tool != "squeue":
            return await original_run(tool, args, stdin)
        running += 1
        most_running = max(most_running, running)
        try:
            return await original_run(tool, args, stdin)
        finally:
            running -= 1

    slurm_runner.cli.run = counting_run  # type: ignore[method-assign]
    specs = [
        make_spec(
            tmp_path, f"many{i}", ["/bin/sh", "-c", f"sleep 0.{i % 5}; exit {i % 4}"]
        )
        for i in range(20)
    ]
    results = await asyncio.gather(*(run_job(slurm_runner, s) for s in specs))
    assert [outcome.exit_code for _, outcome in results] == [i % 4 for i in range(20)]
    assert len({state["slurm_job_id"] for state, _ in results}) == 20
    assert most_running == 1
    # One scontrol per ended job for its exit code, never one per poll.
    assert calls.count("scontrol") == 20
    assert calls.count("sbatch") == 20


async def test_restart_reattach(
    slurm_cluster: SlurmCluster, tmp_path: pathlib.Path
) -> None:
    old = slurm_cluster.make_runner()
    quick = make_spec(tmp_path, "quick", ["/bin/sh", "-c", "exit 4"])
    slow = make_spec(tmp_path, "slow", ["/bin/sh", "-c", "sleep 3; exit 5"])
    quick_state, quick_outcome = await run_job(old, quick)
    assert quick_outcome.exit_code == 4
    slow_state = await old.launch(slow)
    await old.close()

    # The journal holds JSON: give the new runner a round-tripped copy.
    quick_state = json.loads(json.dumps(quick_state))
    slow_state = json.loads(json.dumps(slow_state))
    new = slurm_cluster.make_runner()
    try:
        assert await new.reattach("slow", slow_state)
        assert await new.reattach("quick", quick_state)
        assert not await new.reattach("gone", {"slurm_job_id": "987654321"})
        # A known Slurm id under another name is not our job.
        assert not await new.reattach("other", slow_state)
        outcome = await asyncio.wait_for(
            new.wait_finished("slow", slow_state), STD_TIMEOUT
        )
        assert outcome.status == RunStatus.EXITED
        assert outcome.exit_code == 5
        outcome = await asyncio.wait_for(
            new.wait_finished("quick", quick_state), STD_TIMEOUT
        )
        assert outcome.exit_code == 4
    finally:
        await new.close()


async def test_accounting_fallback(
    slurm_runner: SlurmRunner, tmp_path: pathlib.Path
) -> None:
    # No slurmdbd here: sacct reads the jobcomp/filetxt log instead, which
    # is what a job that aged out of slurmctld is read from.
    spec = make_spec(tmp_path, "acct", ["/bin/sh", "-c", "exit 6"])
    state, outcome = await run_job(slurm_runner, spec)
    assert outcome.exit_code == 6
    slurm_id = state["slurm_job_id"]
    found = await slurm_runner.accounting_outcome("acct", slurm_id)
    assert found is not None
    assert found.status == RunStatus.EXITED
    assert found.exit_code == 6
    assert await slurm_runner.accounting_outcome("not-this-job", slurm_id) is None
    assert await slurm_runner.accounting_outcome("acct", "987654321") is None


async def test_controller_down_while_running(
    slurm_cluster: SlurmCluster,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ocps.runner.slurm")
    # Slurm clients retry a lost controller for about 10 s: a short CLI
    # timeout makes the outage visible to the runner.
    slurm_runner = slurm_cluster.make_runner(cli_timeout=1.5)
    spec = make_spec(tmp_path, "ctld", ["/bin/sh", "-c", "sleep 2; exit 2"])
    state = await slurm_runner.launch(spec)
    await asyncio.wait_for(slurm_runner.wait_started(spec.job_id, state), STD_TIMEOUT)
    finished = asyncio.create_task(slurm_runner.wait_finished(spec.job_id, state))
    try:
        await asyncio.to_thread(slurm_cluster.stop_controller)
        # Let the job end and the runner poll several times meanwhile.
        await asyncio.sleep(6)
        assert not finished.done()
        await asyncio.to_thread(slurm_cluster.start_controller)
        outcome = await asyncio.wait_for(finished, STD_TIMEOUT)
    finally:
        finished.cancel()
        await slurm_runner.close()
        if not slurm_cluster.is_running():
            slurm_cluster.start_controller()
    assert outcome.status == RunStatus.EXITED
    assert outcome.exit_code == 2
    messages = [record.getMessage() for record in caplog.records]
    assert sum("Slurm poll failed" in m for m in messages) == 1
    assert sum("Slurm reachable again" in m for m in messages) == 1


async def test_controller_unreachable_at_submit(
    slurm_cluster: SlurmCluster, tmp_path: pathlib.Path
) -> None:
    conf = unreachable_conf(slurm_cluster, tmp_path)
    runner = slurm_cluster.make_runner(slurm_conf=str(conf))
    spec = make_spec(tmp_path, "unreachable", ["/bin/true"])
    try:
        with pytest.raises(
            SlurmUnavailableError, match="^Slurm controller unreachable: "
        ) as info:
            await runner.launch(spec)
        assert isinstance(info.value, OSError)
        assert info.value.transient
    finally:
        await runner.close()


async def test_rejected_submission(
    slurm_runner: SlurmRunner, tmp_path: pathlib.Path
) -> None:
    spec = make_spec(
        tmp_path, "badpart", ["/bin/true"], options={"partition": "nosuchpartition"}
    )
    with pytest.raises(SlurmCommandError, match="Invalid partition") as info:
        await slurm_runner.launch(spec)
    assert not isinstance(info.value, SlurmUnavailableError)
    assert not info.value.transient
    with pytest.raises(SlurmSpecError, match="cpus=-1") as spec_info:
        await slurm_runner.launch(
            make_spec(tmp_path, "badcpus", ["/bin/true"], options={"cpus": -1})
        )
    assert isinstance(spec_info.value, ValueError)
    assert isinstance(spec_info.value, OSError)


async def test_reattach_while_controller_unreachable(
    slurm_cluster: SlurmCluster, tmp_path: pathlib.Path
) -> None:
    conf = unreachable_conf(slurm_cluster, tmp_path)
    runner = slurm_cluster.make_runner(slurm_conf=str(conf), cli_timeout=1)
    calls = record_calls(runner)
    try:
        # Jobs cannot be checked now; they are followed until Slurm answers.
        assert await runner.reattach("first", {"slurm_job_id": "1"})
        assert await runner.reattach("second", {"slurm_job_id": "2"})
        assert calls == ["scontrol"]
        assert runner.followed_jobs() == {"first": "1", "second": "2"}
    finally:
        await runner.close()
