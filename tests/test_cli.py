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

"""Tests of the ``ocps`` console script against a real ``ocps serve``."""

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import signal
from typing import Any

import pytest
from lsst.ts.ocps.cli import parse_param
from lsst.ts.ocps.rest.client import OcpsClient
from support.rest import OCPS_SCRIPT, open_gate, run_ocps

STD_TIMEOUT = 60


@pytest.fixture
async def serve(make_ocps_serve: Any) -> Any:
    return await make_ocps_serve()


async def ocps(server: Any, *args: str, **kwargs: Any) -> tuple[int, str, str]:
    return await run_ocps(*args, "--url", server.url, **kwargs)


def test_parse_param() -> None:
    assert parse_param("seconds=5") == ("seconds", 5)
    assert parse_param("ratio=2.5") == ("ratio", 2.5)
    assert parse_param("flag=true") == ("flag", True)
    assert parse_param("items=[1, 2]") == ("items", [1, 2])
    assert parse_param('message="5"') == ("message", "5")
    assert parse_param("message=hello world") == ("message", "hello world")
    assert parse_param("query=a=b") == ("query", "a=b")
    assert parse_param("empty=") == ("empty", "")
    for bad in ("novalue", "=5"):
        with pytest.raises(argparse.ArgumentTypeError, match="name=value"):
            parse_param(bad)


async def test_serve_logs_address_and_stops(make_ocps_serve: Any) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        server = await make_ocps_serve()
        assert server.url.startswith("http://127.0.0.1:")
        assert not server.url.endswith(":0")
        status, out, err = await ocps(server, "types", "--json")
        assert status == 0, err
        assert await server.stop(signum) == 0
        assert "stopped" in server.log_text
        assert "Traceback" not in server.log_text


async def test_serve_refuses_invalid_job_types(
    tmp_path: pathlib.Path, rest_job_types_dir: pathlib.Path
) -> None:
    bad = tmp_path / "bad_types"
    shutil.copytree(rest_job_types_dir, bad)
    (bad / "sleep.yaml").write_text(
        "name: sleep\ndescription: x\nversion: '1'\ncommand: [/bin/true, '{nope}']\n"
        "parameters: {type: object}\n"
    )
    (bad / "other.yaml").write_text("name: wrong_name\n")
    status, out, err = await run_ocps(
        "serve",
        "--port",
        "0",
        "--job-types",
        str(bad),
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert status == 2
    assert "invalid job types" in err
    assert "sleep.yaml" in err and "nope" in err
    assert "other.yaml" in err
    assert "listening" not in err
    assert not (tmp_path / "s").exists()


async def test_validate(
    tmp_path: pathlib.Path, rest_job_types_dir: pathlib.Path
) -> None:
    status, out, err = await run_ocps("validate", str(rest_job_types_dir))
    assert (status, err) == (0, "")
    assert "valid" in out
    status, out, err = await run_ocps("validate", str(rest_job_types_dir), "--json")
    assert json.loads(out) == {"valid": True, "problems": []}

    bad = tmp_path / "bad_types"
    bad.mkdir()
    (bad / "one.yaml").write_text("name: one\ndescription: x\n")
    (bad / "two.yaml").write_text("name: two\n  broken: [yaml\n")
    status, out, err = await run_ocps("validate", str(bad))
    assert status == 1
    assert "one.yaml" in out and "two.yaml" in out
    assert "problem(s)" in out
    status, out, err = await run_ocps("validate", str(bad), "--json")
    report = json.loads(out)
    assert status == 1 and report["valid"] is False
    paths = {pathlib.Path(problem["path"]).name for problem in report["problems"]}
    assert paths == {"one.yaml", "two.yaml"}

    status, out, err = await run_ocps("validate", str(tmp_path / "missing"))
    assert status == 1


async def test_submit_status_list_logs_types(serve: Any) -> None:
    status, out, err = await ocps(
        serve, "submit", "echo", "-p", "message=hello world", "-p", "count=2", "--wait"
    )
    assert status == 0, err
    assert "COMPLETED" in out
    job_id = out.split("job id:")[1].split()[0]
    assert "hello world" in out

    status, out, err = await ocps(
        serve,
        "submit",
        "echo",
        "--json-params",
        '{"message": "json", "count": 3}',
        "-p",
        "count=4",
        "--run-id",
        "r7",
        "--json",
    )
    assert status == 0, err
    submitted = json.loads(out)
    assert submitted["phase"] in ("QUEUED", "EXECUTING", "COMPLETED")
    assert submitted["parameters"]["count"] == 4
    assert submitted["runId"] == "r7"

    status, out, err = await ocps(serve, "status", job_id)
    assert status == 0
    assert "phase:" in out and "COMPLETED" in out
    assert '"message": "hello world"' in out
    status, out, err = await ocps(serve, "status", job_id, "--json")
    assert json.loads(out)["jobInfo"]["result"] == {
        "message": "hello world",
        "count": 2,
    }

    status, out, err = await ocps(serve, "submit", "fail", "--wait")
    assert status == 1
    assert "process exited with code 3" in out

    status, out, err = await ocps(serve, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["JOB", "ID", "TYPE", "PHASE", "CREATED", "EXIT"]
    assert len(lines) == 4
    assert lines[1].split()[2] == "ERROR"
    status, out, err = await ocps(serve, "list", "--json", "--phase", "error")
    assert [job["type"] for job in json.loads(out)] == ["fail"]
    status, out, err = await ocps(serve, "list", "--json", "--last", "1")
    assert len(json.loads(out)) == 1

    status, out, err = await ocps(serve, "logs", job_id)
    assert (status, out) == (0, "hello world\n")
    status, out, err = await ocps(serve, "logs", job_id, "--stream", "stderr")
    assert out == "to stderr\n"
    status, out, err = await ocps(serve, "logs", job_id, "--tail", "0")
    assert out == ""

    status, out, err = await ocps(serve, "types")
    assert status == 0
    assert "echo 2.1: Print a message" in out
    assert "ratio (units arcmin, default 1.0, min 0.1, max 12)" in out
    status, out, err = await ocps(serve, "types", "--json")
    assert "sleep" in [t["name"] for t in json.loads(out)]


async def test_errors_are_reported(serve: Any) -> None:
    status, out, err = await ocps(serve, "submit", "sleep", "-p", "seconds=5000")
    assert status == 1
    assert "greater than the maximum of 3600" in err
    # -p values are JSON when they parse: 5 is a number, not a string.
    status, out, err = await ocps(serve, "submit", "echo", "-p", "message=5")
    assert status == 1 and "message" in err
    status, out, err = await ocps(serve, "submit", "echo", "-p", 'message="5"')
    assert status == 0, err
    status, out, err = await ocps(serve, "submit", "nope")
    assert status == 1 and "unknown job type 'nope'" in err
    status, out, err = await ocps(serve, "submit", "sleep", "--prereq", "feedface")
    assert status == 1 and "unknown prerequisite job(s): feedface" in err
    status, out, err = await ocps(serve, "status", "feedface")
    assert status == 1 and "not found" in err
    status, out, err = await ocps(serve, "status", "../../etc")
    assert status == 1 and "invalid job id" in err
    status, out, err = await ocps(serve, "submit", "echo", "-p", "oops")
    assert status == 2 and "name=value" in err
    status, out, err = await run_ocps("list", "--url", "http://127.0.0.1:9")
    assert status == 1 and "cannot reach" in err


async def test_abort_and_follow(serve: Any, tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "gate.fifo"
    os.mkfifo(fifo)
    status, out, err = await ocps(serve, "submit", "gate", "-p", f"fifo={fifo}")
    assert status == 0, err
    first_id = out.split()[0]
    status, out, err = await ocps(
        serve, "submit", "gate", "-p", f"fifo={fifo}", "--json"
    )
    second_id = json.loads(out)["jobId"]

    # Follow the first job's log while it runs.
    follower = await asyncio.create_subprocess_exec(
        str(OCPS_SCRIPT),
        "logs",
        first_id,
        "--follow",
        "--url",
        serve.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert follower.stdout is not None
    line = await asyncio.wait_for(follower.stdout.readline(), STD_TIMEOUT)
    assert line == b"first\n"

    await open_gate(fifo, "opened")
    rest, follow_err = await asyncio.wait_for(follower.communicate(), STD_TIMEOUT)
    assert (follower.returncode, rest) == (0, b"second opened\n"), follow_err

    # The second job was queued behind the first; abort it.
    status, out, err = await ocps(serve, "abort", second_id)
    assert (status, out) == (0, f"{second_id} ABORTED\n"), err
    status, out, err = await ocps(serve, "abort", second_id, "--json")
    assert status == 1 and "ended already" in err
    status, out, err = await ocps(serve, "status", first_id, "--json")
    assert json.loads(out)["phase"] == "COMPLETED"


async def test_token(make_ocps_serve: Any, tmp_path: pathlib.Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    server = await make_ocps_serve("--token-file", str(token_file))
    server.token = "file-token"
    status, out, err = await ocps(server, "submit", "echo", "-p", "message=x")
    assert status == 1 and "Bearer" in err
    status, out, err = await ocps(
        server, "submit", "echo", "-p", "message=x", "--token", "wrong"
    )
    assert status == 1 and "not valid" in err
    status, out, err = await ocps(
        server, "submit", "echo", "-p", "message=x", "--token", "file-token"
    )
    assert status == 0, err
    status, out, err = await ocps(
        server,
        "submit",
        "echo",
        "-p",
        "message=x",
        env={"OCPS_API_TOKEN": "file-token"},
    )
    assert status == 0, err
    # Reading needs no token.
    status, out, err = await ocps(server, "list", "--json")
    assert len(json.loads(out)) == 2

    server = await make_ocps_serve(env={"OCPS_API_TOKEN": "env-token"})
    status, out, err = await ocps(server, "submit", "echo", "-p", "message=x")
    assert status == 1 and "Bearer" in err
    status, out, err = await ocps(
        server, "submit", "echo", "-p", "message=x", "--token", "env-token"
    )
    assert status == 0, err


async def test_prerequisites(serve: Any) -> None:
    status, out, err = await ocps(serve, "submit", "fail", "--json")
    failed = json.loads(out)["jobId"]
    status, out, err = await ocps(
        serve, "submit", "echo", "-p", "message=after", "--prereq", failed, "--wait"
    )
    assert status == 0, err
    assert f"prerequisites: {failed}" in out
    assert "COMPLETED" in out

    status, out, err = await ocps(
        serve,
        "submit",
        "echo",
        "-p",
        "message=strict",
        "--prereq",
        failed,
        "--prereq-success",
        "--wait",
        "--json",
    )
    assert status == 1
    job = json.loads(out)
    assert job["phase"] == "ERROR"
    assert job["startTime"] is None
    assert failed in job["errorSummary"]["message"]


async def test_serve_options(
    make_ocps_serve: Any, tmp_path: pathlib.Path, rest_job_types_dir: pathlib.Path
) -> None:
    server = await make_ocps_serve("--max-concurrent", "1")
    status, out, err = await ocps(server, "submit", "sleep", "-p", "seconds=600")
    first = out.split()[0]
    status, out, err = await ocps(server, "submit", "sleep", "-p", "seconds=600")
    second = out.split()[0]
    async with OcpsClient(server.url) as client:
        job = await client.get(first)
        while job["phase"] == "QUEUED":
            job = await client.get(first, wait=30, phase="QUEUED")
        assert job["phase"] == "EXECUTING"
        # The second job stays queued while the first runs.
        job = await client.get(second, wait=1, phase="QUEUED")
        assert job["phase"] == "QUEUED"
        for job_id in (first, second):
            assert (await client.abort(job_id))["phase"] == "ABORTED"

    # The state directory comes from $OCPS_STATE_DIR when not given.
    state_dir = tmp_path / "from_env"
    process = await asyncio.create_subprocess_exec(
        str(OCPS_SCRIPT),
        "serve",
        "--port",
        "0",
        "--job-types",
        str(rest_job_types_dir),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OCPS_STATE_DIR": str(state_dir)},
    )
    assert process.stderr is not None
    line = b""
    while b"listening on" not in line:
        line = await asyncio.wait_for(process.stderr.readline(), STD_TIMEOUT)
        assert line, "ocps serve ended early"
    assert f"state in {state_dir}".encode() in line
    assert (state_dir / "ocps.sqlite3").exists()
    process.terminate()
    _, err_bytes = await asyncio.wait_for(process.communicate(), STD_TIMEOUT)
    assert process.returncode == 0, err_bytes

    status, out, err = await run_ocps(
        "serve", "--port", "0", "--token-file", str(tmp_path / "missing_token")
    )
    assert status == 2 and "cannot read token file" in err


async def test_serve_refuses_bad_runner_settings(
    tmp_path: pathlib.Path, rest_job_types_dir: pathlib.Path
) -> None:
    state_dir = tmp_path / "s"
    cases = [
        (["--slurm-partition", "p"], "--slurm-partition: only with --slurm"),
        (
            ["--slurm-option=--qos=x", "--slurm-poll-interval", "1"],
            "--slurm-option, --slurm-poll-interval: only with --slurm",
        ),
        (
            ["--default-runner", "slurm"],
            "--default-runner slurm: default runner 'slurm' needs the Slurm "
            "runner enabled (--slurm)",
        ),
        (
            ["--slurm", "--slurm-option=--output=/tmp/x"],
            "invalid Slurm settings: sbatch option '--output=/tmp/x' is set "
            "by the runner",
        ),
        (
            ["--slurm", "--slurm-poll-interval", "0"],
            "invalid Slurm settings: Slurm poll_interval=0.0 must be positive",
        ),
        (
            ["--slurm", "--slurm-account", "a b"],
            "invalid Slurm settings: Slurm runner option account='a b' is not a name",
        ),
    ]
    for extra, message in cases:
        status, out, err = await run_ocps(
            "serve",
            "--port",
            "0",
            "--job-types",
            str(rest_job_types_dir),
            "--state-dir",
            str(state_dir),
            *extra,
        )
        assert status == 2, (extra, err)
        assert f"ocps: {message}" in err, (extra, err)
        assert "Traceback" not in err
    status, out, err = await run_ocps("serve", "--default-runner", "pbs")
    assert status == 2 and "invalid choice: 'pbs'" in err
    assert not state_dir.exists()


async def test_serve_refuses_job_types_without_their_runner(
    tmp_path: pathlib.Path, rest_job_types_dir: pathlib.Path
) -> None:
    types_dir = tmp_path / "types"
    shutil.copytree(rest_job_types_dir, types_dir)
    base = {
        "description": "x",
        "version": "1",
        "command": ["true"],
        "parameters": {"type": "object", "properties": {}},
    }
    (types_dir / "on_slurm.yaml").write_text(
        json.dumps({**base, "name": "on_slurm", "runner": "slurm"})
    )
    (types_dir / "on_pbs.yaml").write_text(
        json.dumps({**base, "name": "on_pbs", "runner": "pbs"})
    )
    state_dir = tmp_path / "s"
    args = ["serve", "--port", "0", "--job-types", str(types_dir)]
    args += ["--state-dir", str(state_dir)]

    status, out, err = await run_ocps(*args)
    assert status == 2
    assert f"invalid job types in {types_dir}" in err
    assert "on_slurm.yaml: $.runner: runner 'slurm' is not configured" in err
    assert "on_pbs.yaml: $.runner: runner 'pbs' is not configured" in err
    assert "available: local" in err

    # With Slurm enabled only the unknown runner is left; Slurm options
    # of a job type are checked before anything runs too.
    (types_dir / "on_slurm.yaml").write_text(
        json.dumps(
            {
                **base,
                "name": "on_slurm",
                "runner": "slurm",
                "runner_options": {"memory": "lots"},
            }
        )
    )
    status, out, err = await run_ocps(*args, "--slurm")
    assert status == 2
    assert "on_pbs.yaml: $.runner: runner 'pbs' is not configured" in err
    assert "available: local, slurm" in err
    assert "on_slurm.yaml: $.runner_options: Slurm runner option memory='lots'" in err
    assert not state_dir.exists()
