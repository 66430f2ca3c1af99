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

"""Tests of the REST job API over real HTTP with a real job manager."""

import asyncio
import datetime
import json
import logging
import os
import pathlib
import re
from typing import Any

import aiohttp
import pytest
import yaml
import yarl
from lsst.ts.ocps.models import ExecutionPhase, parse_time
from lsst.ts.ocps.rest.app import OPENAPI_PATH
from lsst.ts.ocps.rest.client import ClientError, OcpsClient
from support.rest import RestServer, ValidatingResponse, open_gate

STD_TIMEOUT = 60
"""Longest a test waits for something that should happen at once."""

TERMINAL = {"COMPLETED", "ERROR", "ABORTED", "UNKNOWN"}


async def call(
    api: aiohttp.ClientSession, method: str, path: str | yarl.URL, **kwargs: Any
) -> tuple[int, Any]:
    """Make a call; return the status and the decoded JSON (or text)."""
    async with api.request(method, path, **kwargs) as response:
        text = await response.text()
        if response.content_type == "application/json":
            return response.status, json.loads(text)
        return response.status, text


async def submit(api: aiohttp.ClientSession, type_name: str, **fields: Any) -> str:
    status, body = await call(api, "PUT", "job", json={"type": type_name, **fields})
    assert status == 200, body
    assert body["job_id"] == body["jobId"]
    return body["jobId"]


async def wait_done(api: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    """Wait for a job to end with blocking GETs (no polling delay)."""
    status, job = await call(api, "GET", f"job/{job_id}")
    while job["phase"] not in TERMINAL:
        status, job = await call(
            api, "GET", f"job/{job_id}", params={"wait": "-1", "phase": job["phase"]}
        )
        assert status == 200, job
    return job


async def wait_phase(api: aiohttp.ClientSession, job_id: str, phase: str) -> None:
    """Wait until a job reaches ``phase`` (or fail if it ends first)."""
    status, job = await call(api, "GET", f"job/{job_id}")
    while job["phase"] != phase:
        assert job["phase"] not in TERMINAL, job
        status, job = await call(
            api, "GET", f"job/{job_id}", params={"wait": "-1", "phase": job["phase"]}
        )


async def snapshot(server: RestServer) -> list[tuple[str, str]]:
    jobs = await server.manager.list_jobs(limit=1000)
    return [(job.job_id, str(job.phase)) for job in jobs]


@pytest.fixture
def fifo(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "gate.fifo"
    os.mkfifo(path)
    return path


async def test_put_job_lifecycle(rest_api: aiohttp.ClientSession) -> None:
    job_id = await submit(
        rest_api, "echo", config={"message": "hello"}, runId="run 1", version="2.1"
    )
    job = await wait_done(rest_api, job_id)
    assert job["phase"] == "COMPLETED"
    assert job["exitCode"] == 0
    assert job["runId"] == "run 1"
    assert job["parameters"] == {"message": "hello", "count": 1, "ratio": 1.0}
    assert job["jobInfo"]["result"] == {"message": "hello", "count": 1}
    assert [result["id"] for result in job["results"]] == ["out/message.txt"]
    assert job["startTime"] is not None and job["endTime"] is not None

    assert await call(rest_api, "GET", f"job/{job_id}/phase") == (200, "COMPLETED")
    status, parameters = await call(rest_api, "GET", f"job/{job_id}/parameters")
    assert parameters == job["parameters"]
    status, results = await call(rest_api, "GET", f"job/{job_id}/results")
    assert results == job["results"]
    uri = results[0]["uri"]
    assert pathlib.Path(yarl.URL(uri).path).read_text() == "hello"
    status, error = await call(rest_api, "GET", f"job/{job_id}/error")
    assert status == 404 and "no error summary" in error["message"]

    assert await call(rest_api, "GET", f"job/{job_id}/log") == (200, "hello\n")
    assert await call(
        rest_api, "GET", f"job/{job_id}/log", params={"stream": "stderr"}
    ) == (200, "to stderr\n")


async def test_env_entries_become_parameters(rest_api: aiohttp.ClientSession) -> None:
    env = [
        {"name": "message", "value": "from env"},
        {"name": "count", "value": "3"},
        {"name": "ratio", "value": "2.5"},
    ]
    job_id = await submit(rest_api, "echo", env=env)
    job = await wait_done(rest_api, job_id)
    assert job["parameters"] == {"message": "from env", "count": 3, "ratio": 2.5}

    # A number as text for a string parameter stays text.
    job_id = await submit(rest_api, "echo", env=[{"name": "message", "value": "42"}])
    assert (await wait_done(rest_api, job_id))["parameters"]["message"] == "42"

    # The same value twice is fine, different values are not.
    job_id = await submit(
        rest_api,
        "echo",
        config={"message": "same"},
        env=[{"name": "message", "value": "same"}],
    )
    status, body = await call(
        rest_api,
        "PUT",
        "job",
        json={
            "type": "echo",
            "config": {"message": "a"},
            "env": [{"name": "message", "value": "b"}],
        },
    )
    assert status == 400
    assert "given twice" in body["message"]


async def test_post_job_json_and_form(
    rest_api: aiohttp.ClientSession, tmp_path: pathlib.Path
) -> None:
    log_dir = tmp_path / "never_written"
    status, body = await call(
        rest_api,
        "POST",
        "job",
        json={"type": "echo", "env": {"message": "posted"}, "log_dir": str(log_dir)},
    )
    assert status == 200, body
    assert body["status"] == "ok"
    assert "log_dir is ignored" in body["msg"]
    job = await wait_done(rest_api, body["job_id"])
    assert job["phase"] == "COMPLETED"
    assert not log_dir.exists()

    form = {"type": "echo", "env": json.dumps({"message": "form", "count": "2"})}
    status, body = await call(rest_api, "POST", "job", data=form)
    assert status == 200, body
    job = await wait_done(rest_api, body["job_id"])
    assert job["parameters"]["message"] == "form"
    assert job["parameters"]["count"] == 2

    status, body = await call(
        rest_api,
        "POST",
        "job",
        json={"type": "echo", "parameters": {"message": "params"}},
    )
    assert status == 200
    assert (await wait_done(rest_api, body["job_id"]))["jobInfo"]["result"][
        "message"
    ] == "params"


async def test_failure_and_error_summary(rest_api: aiohttp.ClientSession) -> None:
    job_id = await submit(rest_api, "fail", config={"code": 7})
    job = await wait_done(rest_api, job_id)
    assert job["phase"] == "ERROR"
    assert job["exitCode"] == 7
    assert job["errorSummary"]["message"] == "process exited with code 7"
    status, error = await call(rest_api, "GET", f"job/{job_id}/error")
    assert (status, error) == (200, job["errorSummary"])
    status, text = await call(
        rest_api, "GET", f"job/{job_id}/log", params={"stream": "stderr"}
    )
    assert text == "failing on purpose\n"


async def test_time_limit(rest_api: aiohttp.ClientSession) -> None:
    job_id = await submit(
        rest_api, "sleep", config={"seconds": 600}, executionDuration=0.5
    )
    job = await wait_done(rest_api, job_id)
    assert job["phase"] == "ERROR"
    assert job["executionDuration"] == 0.5
    assert job["errorSummary"]["message"] == "time limit exceeded"


async def test_abort_running_queued_held(
    rest_api: aiohttp.ClientSession, fifo: pathlib.Path
) -> None:
    # gate allows one job at a time: the first runs, the second queues;
    # the third waits for the first.
    running = await submit(rest_api, "gate", config={"fifo": str(fifo)})
    await wait_phase(rest_api, running, "EXECUTING")
    queued = await submit(rest_api, "gate", config={"fifo": str(fifo)})
    held = await submit(rest_api, "sleep", config={"seconds": 0}, prereqJobs=[running])
    assert await call(rest_api, "GET", f"job/{queued}/phase") == (200, "QUEUED")
    assert await call(rest_api, "GET", f"job/{held}/phase") == (200, "HELD")

    status, job = await call(
        rest_api, "POST", f"job/{queued}/phase", json={"phase": "ABORT"}
    )
    assert (status, job["phase"]) == (200, "ABORTED")
    assert job["startTime"] is None
    status, job = await call(rest_api, "DELETE", f"job/{held}")
    assert (status, job["phase"]) == (200, "ABORTED")
    status, job = await call(
        rest_api, "POST", f"job/{running}/phase", data={"PHASE": "abort"}
    )
    assert (status, job["phase"]) == (200, "ABORTED"), json.dumps(job)
    assert job["startTime"] is not None

    # Aborting again is a conflict; deleting a finished job removes it.
    status, body = await call(
        rest_api, "POST", f"job/{running}/phase", json={"phase": "ABORT"}
    )
    assert status == 409 and "ended already" in body["message"]
    assert await call(rest_api, "DELETE", f"job/{running}") == (
        200,
        {"message": "deleted", "job_id": running},
    )
    status, body = await call(rest_api, "GET", f"job/{running}")
    assert status == 404
    status, body = await call(rest_api, "DELETE", f"job/{running}")
    assert status == 404


async def test_blocking_wait(
    rest_api: aiohttp.ClientSession, fifo: pathlib.Path
) -> None:
    job_id = await submit(rest_api, "gate", config={"fifo": str(fifo)})
    await wait_phase(rest_api, job_id, "EXECUTING")

    # Nothing changes: the wait ends at its timeout with the same phase.
    status, job = await call(
        rest_api, "GET", f"job/{job_id}", params={"wait": "0.3", "phase": "EXECUTING"}
    )
    assert (status, job["phase"]) == (200, "EXECUTING")
    # A phase other than the current one returns at once.
    status, job = await call(
        rest_api, "GET", f"job/{job_id}", params={"wait": "30", "phase": "queued"}
    )
    assert job["phase"] == "EXECUTING"

    # A change ends the wait long before its timeout (the server caps
    # waits at 30 s; the guard below is shorter).
    waiting = asyncio.create_task(
        call(
            rest_api,
            "GET",
            f"job/{job_id}",
            params={"wait": "-1", "phase": "EXECUTING"},
        )
    )
    await asyncio.sleep(0)
    await open_gate(fifo)
    status, job = await asyncio.wait_for(waiting, 25)
    assert job["phase"] == "COMPLETED"

    # A finished job returns at once even with a long wait.
    status, job = await asyncio.wait_for(
        call(rest_api, "GET", f"job/{job_id}", params={"wait": "-1"}), 25
    )
    assert job["phase"] == "COMPLETED"


async def test_log_tail_and_follow(
    rest_api: aiohttp.ClientSession, fifo: pathlib.Path
) -> None:
    job_id = await submit(rest_api, "lines", config={"count": 20})
    await wait_done(rest_api, job_id)
    path = f"job/{job_id}/log"
    assert await call(rest_api, "GET", path, params={"tail": "3"}) == (
        200,
        "line 17\nline 18\nline 19\n",
    )
    assert await call(rest_api, "GET", path, params={"tail": "0"}) == (200, "")
    status, text = await call(rest_api, "GET", path, params={"tail": "1000"})
    assert text.count("\n") == 20
    # Following a finished job sends the log and ends.
    status, text = await call(rest_api, "GET", path, params={"follow": "true"})
    assert text.splitlines()[-1] == "line 19"

    # Following a running job: "first" arrives while it waits on the FIFO,
    # "second" after the gate opens, then the stream ends.
    job_id = await submit(rest_api, "gate", config={"fifo": str(fifo)})
    received = b""
    async with rest_api.get(f"job/{job_id}/log", params={"follow": "true"}) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        while b"first\n" not in received:
            chunk = await asyncio.wait_for(response.content.readany(), STD_TIMEOUT)
            assert chunk, f"stream ended early: {received!r}"
            received += chunk
        assert b"second" not in received
        await open_gate(fifo, "opened")
        received += await asyncio.wait_for(response.content.read(), STD_TIMEOUT)
    assert received == b"first\nsecond opened\n"
    status, job = await call(rest_api, "GET", f"job/{job_id}")
    assert job["phase"] == "COMPLETED"

    # A queued job's log is empty until it runs.
    status, text = await call(
        rest_api, "GET", "job/" + job_id + "/log", params={"stream": "stderr"}
    )
    assert (status, text) == (200, "")


async def test_list_filters_and_paging(rest_api: aiohttp.ClientSession) -> None:
    ids = []
    for index in range(5):
        ids.append(await submit(rest_api, "echo", config={"message": str(index)}))
        await wait_done(rest_api, ids[-1])
    failed = await submit(rest_api, "fail", config={"code": 1})
    await wait_done(rest_api, failed)
    newest_first = [failed] + ids[::-1]

    seen: list[str] = []
    url: str | None = "job?limit=4"
    pages = 0
    while url is not None:
        status, page = await call(rest_api, "GET", url.removeprefix("/api/v1/"))
        assert status == 200
        seen += [job["jobId"] for job in page["jobs"]]
        url = page["next"]
        pages += 1
    assert seen == newest_first
    assert pages == 2

    status, page = await call(rest_api, "GET", "job", params={"phase": "completed"})
    assert [job["jobId"] for job in page["jobs"]] == ids[::-1]
    status, page = await call(
        rest_api, "GET", "job", params=[("phase", "ERROR"), ("phase", "Aborted")]
    )
    assert [job["jobId"] for job in page["jobs"]] == [failed], page
    assert page["jobs"][0]["exitCode"] == 1
    status, page = await call(rest_api, "GET", "job", params={"last": "2"})
    assert [job["jobId"] for job in page["jobs"]] == newest_first[:2]
    assert page["next"] is None

    # Times are sent to the millisecond: "after" the next millisecond.
    status, third = await call(rest_api, "GET", f"job/{ids[2]}")
    created = parse_time(third["creationTime"])
    assert created is not None
    after = created + datetime.timedelta(milliseconds=1)
    status, page = await call(
        rest_api, "GET", "job", params={"after": after.isoformat()}
    )
    assert [job["jobId"] for job in page["jobs"]] == newest_first[:3]

    async def category(name: str) -> list[str]:
        status, body = await call(rest_api, "GET", f"job/list/{name}")
        assert status == 200
        return body["job_ids"]

    assert await category("all") == newest_first
    assert await category("completed") == newest_first
    assert await category("complete") == newest_first
    assert await category("running") == []
    assert await category("pending") == []
    assert await category("null") == []

    status, health = await call(rest_api, "GET", "health")
    assert status == 200
    zero = {phase: 0 for phase in ExecutionPhase}
    assert health["jobs"] == zero | {"COMPLETED": 5, "ERROR": 1}
    assert health["total"] == 6


async def test_list_categories_of_active_jobs(
    rest_api: aiohttp.ClientSession, fifo: pathlib.Path
) -> None:
    running = await submit(rest_api, "gate", config={"fifo": str(fifo)})
    await wait_phase(rest_api, running, "EXECUTING")
    queued = await submit(rest_api, "gate", config={"fifo": str(fifo)})
    held = await submit(rest_api, "sleep", config={"seconds": 0}, prereqJobs=[queued])

    status, body = await call(rest_api, "GET", "job/list/running")
    assert body["job_ids"] == [running]
    status, body = await call(rest_api, "GET", "job/list/pending")
    assert body["job_ids"] == [held, queued]

    status, health = await call(rest_api, "GET", "health")
    assert status == 200
    zero = {phase: 0 for phase in ExecutionPhase}
    assert health["jobs"] == zero | {"EXECUTING": 1, "QUEUED": 1, "HELD": 1}
    assert health["total"] == 3
    assert health["status"] == "ok"

    # The held job runs once its prerequisite is done. The second gate
    # opens only once the first job has ended (it is then EXECUTING), so
    # each job reads its own line from the FIFO.
    await open_gate(fifo)
    await wait_phase(rest_api, queued, "EXECUTING")
    await open_gate(fifo)
    assert (await wait_done(rest_api, held))["phase"] == "COMPLETED"


async def test_schemas(rest_api: aiohttp.ClientSession) -> None:
    status, types = await call(rest_api, "GET", "schema/all")
    assert status == 200
    assert [t["name"] for t in types] == [
        "boom",
        "echo",
        "fail",
        "gate",
        "lines",
        "sleep",
    ]
    status, echo = await call(rest_api, "GET", "schema/echo")
    assert echo["version"] == "2.1"
    ratio = [item for item in echo["env"] if item["name"] == "ratio"][0]
    assert (ratio["units"], ratio["min"], ratio["max"]) == ("arcmin", 0.1, 12)
    assert echo["parameters"]["required"] == ["message"]
    status, body = await call(rest_api, "GET", "schema/nope")
    assert status == 404
    assert "nope" in body["message"]


async def test_openapi_served(rest_api: aiohttp.ClientSession) -> None:
    status, document = await call(rest_api, "GET", "openapi.json")
    assert status == 200
    assert document == yaml.safe_load(OPENAPI_PATH.read_text())


async def test_shell_metacharacters_arrive_verbatim(
    rest_api: aiohttp.ClientSession, tmp_path: pathlib.Path
) -> None:
    target = tmp_path / "pwned"
    message = f"; touch {target} && echo $(touch {target}2) `id` | cat > {target}3 '\""
    job_id = await submit(rest_api, "echo", config={"message": message})
    job = await wait_done(rest_api, job_id)
    assert job["phase"] == "COMPLETED"
    assert job["jobInfo"]["result"]["message"] == message
    assert await call(rest_api, "GET", f"job/{job_id}/log") == (200, message + "\n")
    assert list(tmp_path.glob("pwned*")) == []


async def test_unexpected_error_is_a_bare_500(
    rest_api: aiohttp.ClientSession,
    rest_server: RestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = await snapshot(rest_server)
    with caplog.at_level(logging.ERROR, logger="ocps.rest"):
        status, body = await call(rest_api, "PUT", "job", json={"type": "boom"})
    assert status == 500
    assert body == {
        "status": "error",
        "message": "internal server error; see the server log",
    }
    assert "Traceback" not in json.dumps(body)
    assert any(
        "unexpected error in PUT /api/v1/job" in r.message for r in caplog.records
    )
    assert any(r.exc_info for r in caplog.records)
    assert await snapshot(rest_server) == before


async def test_token(
    make_rest_server: Any, tmp_path: pathlib.Path, fifo: pathlib.Path
) -> None:
    server = await make_rest_server(token="s3cret-token")
    async with aiohttp.ClientSession(
        base_url=server.api_url + "/", response_class=ValidatingResponse
    ) as api:
        body = {"type": "echo", "config": {"message": "x"}}
        status, reply = await call(api, "PUT", "job", json=body)
        assert status == 401
        assert "Bearer" in reply["message"]
        async with api.put("job", json=body) as response:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = {"Authorization": "Bearer s3cret-tokeX"}
        status, reply = await call(api, "PUT", "job", json=body, headers=wrong)
        assert (status, reply["message"]) == (401, "the bearer token is not valid")
        status, reply = await call(
            api, "POST", "job", json=body, headers={"Authorization": "Basic abc"}
        )
        assert status == 401
        assert await server.manager.list_jobs() == []

        good = {"Authorization": "Bearer s3cret-token"}
        status, job = await call(api, "PUT", "job", json=body, headers=good)
        assert status == 200
        job_id = job["jobId"]
        # Reading needs no token.
        assert (await wait_done(api, job_id))["phase"] == "COMPLETED"
        for method, path in (
            ("DELETE", f"job/{job_id}"),
            ("POST", f"job/{job_id}/phase"),
        ):
            status, reply = await call(api, method, path, json={"phase": "ABORT"})
            assert status == 401, (method, path)
        assert [job.job_id for job in await server.manager.list_jobs()] == [job_id]
        status, reply = await call(api, "DELETE", f"job/{job_id}", headers=good)
        assert status == 200

    # The client sends the token.
    async with OcpsClient(server.url, token="s3cret-token") as client:
        job = await client.submit("echo", {"message": "via client"})
        assert (await client.wait(job["jobId"]))["phase"] == "COMPLETED"
    async with OcpsClient(server.url) as client:
        with pytest.raises(ClientError, match="Bearer") as caught:
            await client.submit("echo", {"message": "no token"})
        assert caught.value.status == 401


def raw(server: RestServer, path: str) -> yarl.URL:
    return yarl.URL(server.api_url + "/" + path, encoded=True)


BIG = "x" * (2**20 + 10)

# (method, path, request kwargs, status, message regex)
BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "PUT",
        "job",
        {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
        400,
        "not valid JSON",
    ),
    ("PUT", "job", {"json": ["a list"]}, 400, "must be a JSON object"),
    (
        "PUT",
        "job",
        {
            "data": b'{"type": "sleep", "waitTimeout": NaN}',
            "headers": {"Content-Type": "application/json"},
        },
        400,
        "NaN is not a JSON number",
    ),
    (
        "PUT",
        "job",
        {"data": b"type=echo", "headers": {"Content-Type": "text/plain"}},
        415,
        "application/json",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "echo", "config": {"message": BIG}}},
        413,
        "request body size 1048576",
    ),
    (
        "POST",
        "job",
        {"json": {"type": "echo", "env": {"message": BIG}}},
        413,
        "request body size 1048576",
    ),
    ("PUT", "job", {"json": {"config": {}}}, 400, "'type' is required"),
    ("PUT", "job", {"json": {"type": "nope"}}, 400, "unknown job type 'nope'"),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "config": {"seconds": 5000}}},
        400,
        "5000 is greater than the maximum of 3600",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "config": {"seconds": -1}}},
        400,
        "seconds",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "config": {"seconds": "5"}}},
        400,
        "seconds",
    ),
    ("PUT", "job", {"json": {"type": "sleep", "config": {"bogus": 1}}}, 400, "bogus"),
    ("PUT", "job", {"json": {"type": "echo", "config": {}}}, 400, "message"),
    (
        "PUT",
        "job",
        {"json": {"type": "echo", "config": ["message"]}},
        400,
        "'config' must be an object",
    ),
    ("PUT", "job", {"json": {"type": 5}}, 400, "'type' must be a string"),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "colour": "red"}},
        400,
        "unknown field.*'colour'",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "env": [{"value": 1}]}},
        400,
        r"env\[0\]",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "env": {"seconds": 1}}},
        400,
        "'env' must be an array",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "version": "9.9"}},
        400,
        "version '1.0', not '9.9'",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "prereqJobs": ["feedfacefeedface"]}},
        400,
        "unknown prerequisite job.*feedfacefeedface",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "prereqJobs": [3]}},
        400,
        "array of strings",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "prereqSuccess": "yes"}},
        400,
        "'prereqSuccess' must be a boolean",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "executionDuration": -1}},
        400,
        "'executionDuration' must be >= 0",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "waitTimeout": "long"}},
        400,
        "'waitTimeout' must be a number",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "waitFor": ["relative/*.fits"]}},
        400,
        "absolute",
    ),
    (
        "PUT",
        "job",
        {"json": {"type": "sleep", "waitFor": ["/data/../etc/*"]}},
        400,
        r"'\.\.'",
    ),
    (
        "POST",
        "job",
        {"data": {"type": "echo", "env": "{not json"}},
        400,
        "'env' is not a JSON object",
    ),
    (
        "POST",
        "job",
        {"data": b"<job/>", "headers": {"Content-Type": "application/xml"}},
        415,
        "Content-Type",
    ),
    (
        "POST",
        "job",
        {"json": {"type": "echo", "env": ["message"]}},
        400,
        "'env' must be an object",
    ),
    (
        "POST",
        "job",
        {"json": {"type": "echo", "env": {"message": "x"}, "log_dir": 5}},
        400,
        "'log_dir' must be a string",
    ),
    ("GET", "job/..%2F..%2Fetc%2Fpasswd", {}, 400, "invalid job id"),
    ("GET", "job/..", {}, 400, "invalid job id"),
    ("GET", "job/a..b", {}, 400, "invalid job id"),
    ("GET", "job/ABC", {}, 400, "invalid job id"),
    ("GET", "job/%2Fetc%2Fpasswd/log", {}, 400, "invalid job id"),
    ("GET", "job/..%2F..%2Fetc/log", {}, 400, "invalid job id"),
    ("DELETE", "job/..%2Fstate", {}, 400, "invalid job id"),
    ("GET", "job/feedface", {}, 404, "not found"),
    ("GET", "job/feedface/log", {}, 404, "not found"),
    ("GET", "job/feedface/error", {}, 404, "not found"),
    ("DELETE", "job/feedface", {}, 404, "not found"),
    ("POST", "job/feedface/phase", {"json": {"phase": "ABORT"}}, 404, "not found"),
    ("POST", "job/feedface/phase", {"json": {"phase": "RUN"}}, 400, "only ABORT"),
    ("GET", "job?phase=RUNNING", {}, 400, "invalid phase 'RUNNING'"),
    ("GET", "job?after=yesterday", {}, 400, "not an ISO 8601 time"),
    ("GET", "job?last=-1", {}, 400, "last=-1 is less than the minimum of 0"),
    ("GET", "job?last=two", {}, 400, "not an integer"),
    ("GET", "job?limit=0", {}, 400, "limit=0"),
    ("GET", "job?offset=-3", {}, 400, "offset=-3"),
    ("GET", "job/list/finished", {}, 400, "invalid category"),
    ("GET", "job/feedface?wait=soon", {}, 400, "not a number"),
    ("GET", "job/feedface?wait=-5", {}, 400, "must be >= 0 or -1"),
    ("GET", "job/feedface?wait=1&phase=DONE", {}, 400, "invalid phase"),
    ("GET", "job/feedface/log?stream=stdin", {}, 400, "stdout or stderr"),
    ("GET", "job/feedface/log?tail=-1", {}, 400, "tail=-1"),
    ("GET", "job/feedface/log?follow=maybe", {}, 400, "not a boolean"),
    ("GET", "schema/..%2F..%2Fetc", {}, 404, "unknown job type"),
]


@pytest.mark.parametrize(
    "method,path,kwargs,status,message",
    BAD_REQUESTS,
    ids=[f"{m} {p[:40]} {s}" for m, p, _, s, _ in BAD_REQUESTS],
)
async def test_bad_request(
    rest_api: aiohttp.ClientSession,
    rest_server: RestServer,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    message: str,
) -> None:
    # One finished job, so a bad request has something it could damage.
    existing = await submit(rest_api, "echo", config={"message": "keep"})
    await wait_done(rest_api, existing)
    before = await snapshot(rest_server)
    files_before = sorted(rest_server.manager.state_dir.rglob("*"))

    got_status, body = await call(rest_api, method, raw(rest_server, path), **kwargs)
    assert got_status == status, body
    assert isinstance(body, dict), body
    assert re.search(message, body["message"]), body["message"]
    assert "root:" not in body["message"]

    assert await snapshot(rest_server) == before
    files_after = sorted(rest_server.manager.state_dir.rglob("*"))
    assert [p for p in files_after if p.suffix != ".sqlite3-shm"] == [
        p for p in files_before if p.suffix != ".sqlite3-shm"
    ]
    # The stored job is intact.
    status_code, job = await call(rest_api, "GET", f"job/{existing}")
    assert (status_code, job["phase"]) == (200, "COMPLETED")


async def test_client(rest_server: RestServer, fifo: pathlib.Path) -> None:
    async with aiohttp.ClientSession(response_class=ValidatingResponse) as session:
        async with OcpsClient(rest_server.url, session=session) as client:
            health = await client.health()
            assert health["status"] == "ok"
            types = await client.types()
            assert "sleep" in [t["name"] for t in types]
            assert (await client.schema("sleep"))["env"][0]["units"] == "s"

            job = await client.submit("echo", {"message": "c"}, run_id="r")
            job = await client.wait(job["jobId"])
            assert job["phase"] == "COMPLETED"
            jobs = await client.list(phases=["COMPLETED"])
            assert [j["jobId"] for j in jobs] == [job["jobId"]]
            chunks = [c async for c in client.logs(job["jobId"])]
            assert b"".join(chunks) == b"c\n"

            async def follow(job_id: str) -> bytes:
                return b"".join([c async for c in client.logs(job_id, follow=True)])

            gate = await client.submit("gate", {"fifo": str(fifo)})
            following = asyncio.create_task(follow(gate["jobId"]))
            await open_gate(fifo, "followed")
            assert await asyncio.wait_for(following, STD_TIMEOUT) == (
                b"first\nsecond followed\n"
            )

            gate = await client.submit("gate", {"fifo": str(fifo)})
            with pytest.raises(ClientError, match="still"):
                await client.wait(gate["jobId"], timeout=0.2)
            aborted = await client.abort(gate["jobId"])
            assert aborted["phase"] == "ABORTED"
            with pytest.raises(ClientError, match="ended already") as caught:
                await client.abort(gate["jobId"])
            assert caught.value.status == 409
            assert (await client.delete(gate["jobId"]))["message"] == "deleted"
            with pytest.raises(ClientError, match="not found"):
                await client.get(gate["jobId"])
            with pytest.raises(ClientError, match="greater than the maximum"):
                await client.submit("sleep", {"seconds": 1e6})

    async with OcpsClient("http://127.0.0.1:9") as client:
        with pytest.raises(ClientError, match="cannot reach"):
            await client.health()


async def test_follow_a_queued_job(
    rest_api: aiohttp.ClientSession, fifo: pathlib.Path
) -> None:
    # The second gate job queues behind the first, so its work directory
    # does not exist yet when the follow starts.
    first = await submit(rest_api, "gate", config={"fifo": str(fifo)})
    await wait_phase(rest_api, first, "EXECUTING")
    second = await submit(rest_api, "gate", config={"fifo": str(fifo)})
    assert await call(rest_api, "GET", f"job/{second}/phase") == (200, "QUEUED")

    async def follow() -> bytes:
        async with rest_api.get(
            f"job/{second}/log", params={"follow": "true"}
        ) as response:
            assert response.status == 200
            return await response.read()

    following = asyncio.create_task(follow())
    await open_gate(fifo, "one")
    await wait_phase(rest_api, second, "EXECUTING")
    await open_gate(fifo, "two")
    assert await asyncio.wait_for(following, STD_TIMEOUT) == b"first\nsecond two\n"


async def test_shutdown_ends_log_follow(
    make_rest_server: Any, fifo: pathlib.Path
) -> None:
    server = await make_rest_server()
    async with aiohttp.ClientSession(
        base_url=server.api_url + "/", response_class=ValidatingResponse
    ) as api:
        job_id = await submit(api, "gate", config={"fifo": str(fifo)})
        async with api.get(f"job/{job_id}/log", params={"follow": "true"}) as response:
            received = b""
            while b"first\n" not in received:
                chunk = await asyncio.wait_for(response.content.readany(), STD_TIMEOUT)
                assert chunk
                received += chunk
            # aiohttp would wait up to 60 s for the open stream; the
            # server ends it at shutdown instead.
            await asyncio.wait_for(server.runner.cleanup(), 30)
            assert await response.content.read() == b""
    job = await server.manager.get_job(job_id)
    assert str(job.phase) == "EXECUTING"
