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

"""Test fixtures of the REST API: job types, servers, validating clients."""

from __future__ import annotations

__all__ = [
    "OCPS_SCRIPT",
    "OcpsServe",
    "OpenApiValidator",
    "RestServer",
    "ValidatingResponse",
    "abort_active_and_close",
    "make_ocps_serve",
    "make_rest_server",
    "open_gate",
    "openapi_validator",
    "rest_api",
    "rest_job_types_dir",
    "rest_manager",
    "rest_server",
    "run_ocps",
    "start_ocps_serve",
    "unserializable_parameters",
    "write_rest_job_types",
]

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import jsonschema
import pytest
import referencing
import referencing.jsonschema
import yaml
from aiohttp import web
from lsst.ts.ocps.rest.app import API_PREFIX, OPENAPI_PATH, create_app, start_server

_DOC_URI = "urn:ocps:openapi"

# Job types of the REST tests. Every command is a fixed Python program
# run by this interpreter; parameters reach it as argv data.
_JOB_TYPES = {
    "sleep": """
        description: Sleep for a while, printing a line before and after.
        version: "1.0"
        command:
          - {python}
          - -c
          - |
            import sys, time
            print("sleeping", flush=True)
            time.sleep(float(sys.argv[1]))
            print("awake")
          - "{{seconds}}"
        parameters:
          type: object
          properties:
            seconds:
              type: number
              minimum: 0
              maximum: 3600
              default: 1
              units: s
              description: How long to sleep.
    """,
    "echo": """
        description: Print a message, write it as the result and to a file.
        version: "2.1"
        command:
          - {python}
          - -c
          - |
            import json, os, sys
            message = sys.argv[1]
            print(message)
            print("to stderr", file=sys.stderr)
            with open(os.environ["OCPS_RESULT_FILE"], "w") as f:
                json.dump(dict(message=message, count=int(sys.argv[2])), f)
            os.makedirs("out", exist_ok=True)
            with open("out/message.txt", "w") as f:
                f.write(message)
          - "{{message}}"
          - "{{count}}"
        parameters:
          type: object
          required: [message]
          properties:
            message:
              type: string
              description: What to print.
            count:
              type: integer
              minimum: 1
              maximum: 10
              default: 1
              description: A number with a range.
            ratio:
              type: number
              units: arcmin
              minimum: 0.1
              maximum: 12
              default: 1.0
              description: A float, to test text from env entries.
        output_globs: ["out/*.txt"]
    """,
    "fail": """
        description: Write to stderr and exit with the given code.
        version: "1.0"
        command:
          - {python}
          - -c
          - |
            import sys
            print("failing on purpose", file=sys.stderr)
            sys.exit(int(sys.argv[1]))
          - "{{code}}"
        parameters:
          type: object
          properties:
            code:
              type: integer
              minimum: 0
              maximum: 255
              default: 3
    """,
    "gate": """
        description: >-
          Print "first", wait until a line arrives on a FIFO, print
          "second"; at most one runs at a time.
        version: "1.0"
        max_concurrent: 1
        command:
          - {python}
          - -c
          - |
            import sys
            print("first", flush=True)
            with open(sys.argv[1]) as fifo:
                line = fifo.readline().strip()
            print("second", line, flush=True)
          - "{{fifo}}"
        parameters:
          type: object
          required: [fifo]
          properties:
            fifo:
              type: string
              description: Path of the FIFO to read.
    """,
    "lines": """
        description: Print numbered lines.
        version: "1.0"
        command:
          - {python}
          - -c
          - |
            import sys
            for i in range(int(sys.argv[1])):
                print("line", i)
          - "{{count}}"
        parameters:
          type: object
          properties:
            count:
              type: integer
              minimum: 0
              maximum: 100000
              default: 10
    """,
    "boom": """
        description: A type whose preprocessor returns what JSON cannot hold.
        version: "1.0"
        preprocessor: support.rest:unserializable_parameters
        command: [/bin/true]
        parameters:
          type: object
    """,
}


def unserializable_parameters(job_type: Any, parameters: dict[str, Any]) -> Any:
    """Preprocessor of the "boom" job type: a value JSON cannot encode,
    to make an unexpected error inside the server."""
    return {**parameters, "value": {1, 2}}


def write_rest_job_types(directory: pathlib.Path) -> pathlib.Path:
    """Write the REST tests' job types into ``directory``; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in _JOB_TYPES.items():
        text = textwrap.dedent(body).format(python=json.dumps(sys.executable))
        (directory / f"{name}.yaml").write_text(f"name: {name}\n{text}")
    return directory


@pytest.fixture
def rest_job_types_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory with the job types boom, echo, fail, gate, lines, sleep."""
    return write_rest_job_types(tmp_path / "job_types")


@pytest.fixture
async def rest_manager(
    tmp_path: pathlib.Path, rest_job_types_dir: pathlib.Path
) -> AsyncIterator[Any]:
    """A started `JobManager` on ``tmp_path``; active jobs are aborted at
    the end so no process outlives the test."""
    from lsst.ts.ocps.jobs.job_manager import JobManager, ManagerConfig
    from lsst.ts.ocps.jobs.job_types import JobTypeRegistry

    config = ManagerConfig(
        state_dir=tmp_path / "state",
        max_concurrent=4,
        kill_grace=2.0,
        max_wait_timeout=30.0,
    )
    manager = JobManager(config, JobTypeRegistry.from_directory(rest_job_types_dir))
    await manager.start()
    try:
        yield manager
    finally:
        await abort_active_and_close(manager)


async def abort_active_and_close(manager: Any) -> None:
    """Abort a started `JobManager`'s active jobs, then close it.

    `JobManager.close` leaves executing jobs running (a restarted manager
    adopts them); a test must not, so each is aborted first, which returns
    once its process has ended. A job that ends on its own meanwhile makes
    the abort fail, which is ignored.
    """
    from lsst.ts.ocps.models import ACTIVE_PHASES

    for job in await manager.list_jobs(phases=ACTIVE_PHASES, limit=10000):
        with contextlib.suppress(Exception):
            await manager.abort(job.job_id)
    await manager.close()


@dataclasses.dataclass
class RestServer:
    """A REST API served on loopback for a test."""

    url: str
    """Root URL, e.g. ``http://127.0.0.1:34567``."""

    api_url: str
    """URL of the API prefix, ``<url>/api/v1``."""

    manager: Any
    """The `JobManager` behind it."""

    runner: web.AppRunner
    """The runner serving it; cleaned up at the end of the test."""


@pytest.fixture
async def make_rest_server(
    rest_manager: Any,
) -> AsyncIterator[Callable[..., Awaitable[RestServer]]]:
    """Factory of REST servers on port 0 sharing ``rest_manager``."""
    runners: list[web.AppRunner] = []

    async def make(**kwargs: Any) -> RestServer:
        app = create_app(rest_manager, **kwargs)
        runner, port = await start_server(app, "127.0.0.1", 0)
        runners.append(runner)
        url = f"http://127.0.0.1:{port}"
        return RestServer(url, url + API_PREFIX, rest_manager, runner)

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def rest_server(
    make_rest_server: Callable[..., Awaitable[RestServer]],
) -> RestServer:
    """A REST server without a token."""
    return await make_rest_server()


class OpenApiValidator:
    """Check HTTP responses against ``schema/openapi.yaml``.

    Every response must come from a documented path and method, have a
    declared status code and, if JSON, a body valid against the declared
    schema; anything else fails the test with an `AssertionError`.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = referencing.jsonschema.DRAFT202012.create_resource(document)
        self.registry: referencing.Registry = referencing.Registry().with_resource(
            _DOC_URI, resource
        )
        self.checked = 0
        self._routes: list[tuple[re.Pattern[str], str]] = []
        for template in sorted(document["paths"], key=lambda p: p.count("{")):
            pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
            self._routes.append((re.compile(f"^{API_PREFIX}{pattern}$"), template))

    def _operation(self, method: str, raw_path: str) -> tuple[str, dict[str, Any]]:
        for pattern, template in self._routes:
            if pattern.match(raw_path):
                operation = self.document["paths"][template].get(method.lower())
                assert operation is not None, f"{method} {template} is not documented"
                return template, operation
        raise AssertionError(f"{method} {raw_path} matches no documented path")

    def _response(
        self, method: str, raw_path: str, status: int
    ) -> tuple[str, dict[str, Any]]:
        template, operation = self._operation(method, raw_path)
        responses = operation["responses"]
        key = str(status)
        assert key in responses, (
            f"{method} {template}: status {status} is not declared "
            f"(declared: {sorted(responses)})"
        )
        response = responses[key]
        pointer = f"/paths/{_escape(template)}/{method.lower()}/responses/{key}"
        if "$ref" in response:
            pointer = response["$ref"][1:]
            response = self._resolve(pointer)
        return pointer, response

    def _resolve(self, pointer: str) -> Any:
        node: Any = self.document
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def check_status(self, method: str, raw_path: str, status: int) -> None:
        """Fail unless ``status`` is declared for the operation."""
        self._response(method, raw_path, status)

    def check(
        self,
        method: str,
        raw_path: str,
        status: int,
        content_type: str,
        body: bytes,
    ) -> None:
        """Fail unless the response is declared and its body valid."""
        pointer, response = self._response(method, raw_path, status)
        content = response.get("content", {})
        if not content:
            assert not body, f"{method} {raw_path}: {status} must have no body"
            return
        assert content_type in content, (
            f"{method} {raw_path}: content type {content_type!r} not declared "
            f"for {status} ({sorted(content)})"
        )
        if content_type == "application/json":
            data = json.loads(body)
            ref = f"{_DOC_URI}#{pointer}/content/application~1json/schema"
            validator = jsonschema.Draft202012Validator(
                {"$ref": ref}, registry=self.registry
            )
            errors = sorted(validator.iter_errors(data), key=lambda e: e.path)
            assert not errors, (
                f"{method} {raw_path} {status}: body does not match the "
                f"document: {errors[0].message} at {list(errors[0].path)}"
            )
        self.checked += 1


def _escape(template: str) -> str:
    return template.replace("~", "~0").replace("/", "~1")


_VALIDATOR: OpenApiValidator | None = None


def _get_validator() -> OpenApiValidator:
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = OpenApiValidator(yaml.safe_load(OPENAPI_PATH.read_text()))
    return _VALIDATOR


class ValidatingResponse(aiohttp.ClientResponse):
    """A client response checked against the OpenAPI document.

    The status is checked when the headers arrive, the body when it is
    read (streamed bodies are checked for status and content type).
    """

    async def start(self, connection: Any) -> ValidatingResponse:
        await super().start(connection)
        _get_validator().check_status(self.method, self.url.raw_path, self.status)
        return self

    async def read(self) -> bytes:
        body = await super().read()
        _get_validator().check(
            self.method, self.url.raw_path, self.status, self.content_type, body
        )
        return body


@pytest.fixture
def openapi_validator() -> OpenApiValidator:
    """The shared validator (its ``checked`` counts validated bodies)."""
    return _get_validator()


@pytest.fixture
async def rest_api(rest_server: RestServer) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session on ``rest_server`` whose every response is checked
    against the OpenAPI document; use paths relative to ``/api/v1/``."""
    async with aiohttp.ClientSession(
        base_url=rest_server.api_url + "/", response_class=ValidatingResponse
    ) as session:
        yield session


async def open_gate(path: pathlib.Path, line: str = "go", timeout: float = 60) -> None:
    """Write a line to a FIFO once a job opens it for reading.

    If no job opens it in time, open it here so that the writing thread
    ends, and fail.
    """

    def write() -> None:
        with open(path, "w") as stream:
            stream.write(line + "\n")

    writing = asyncio.ensure_future(asyncio.to_thread(write))
    try:
        await asyncio.wait_for(asyncio.shield(writing), timeout)
    except TimeoutError:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            await writing
        finally:
            os.close(fd)
        raise AssertionError(f"no job read the FIFO {path}")


OCPS_SCRIPT = pathlib.Path(sys.executable).parent / "ocps"
"""The installed ``ocps`` console script of this environment."""

_LISTENING = re.compile(r"listening on (http://\S+?:\d+)")


@dataclasses.dataclass
class OcpsServe:
    """An ``ocps serve`` subprocess and what it logged."""

    process: asyncio.subprocess.Process
    url: str
    lines: list[str]
    reader: asyncio.Task
    state_dir: pathlib.Path
    token: str | None = None

    @property
    def log_text(self) -> str:
        """Everything the server wrote to standard error so far."""
        return "".join(self.lines)

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the server and return its exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signum)
        status = await asyncio.wait_for(self.process.wait(), 60)
        await self.reader
        return status


async def _read_lines(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode(errors="replace"))


async def run_ocps(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    """Run ``ocps ARGS`` to completion; return status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        str(OCPS_SCRIPT),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def start_ocps_serve(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[asyncio.subprocess.Process, str, list[str]]:
    """Start ``ocps serve --port 0 ARGS`` and wait until it listens.

    Parameters
    ----------
    *args : `str`
        Further arguments of ``ocps serve``.
    env : `dict` [`str`, `str`] or `None`, optional
        Variables added to this process's environment.
    timeout : `float`, optional
        Seconds allowed for each line the server writes before it listens.

    Returns
    -------
    process : `asyncio.subprocess.Process`
        The server; its standard error is a pipe the caller must go on
        reading (or close) and it must be stopped by the caller.
    url : `str`
        The root URL the server listens on.
    lines : `list` [`str`]
        What the server wrote to standard error so far; the last line is
        the one that names the URL.

    Raises
    ------
    AssertionError
        Raised if the server ends or stays silent before it listens; it
        is then killed, so that no process outlives the failure.
    """
    process = await asyncio.create_subprocess_exec(
        str(OCPS_SCRIPT),
        "serve",
        "--port",
        "0",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        while True:
            line = await asyncio.wait_for(process.stderr.readline(), timeout)
            if not line:
                await process.wait()
                raise AssertionError(f"ocps serve ended early: {''.join(lines)}")
            lines.append(line.decode(errors="replace"))
            match = _LISTENING.search(lines[-1])
            if match:
                return process, match.group(1), lines
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise


@pytest.fixture
async def make_ocps_serve(
    tmp_path: pathlib.Path, rest_job_types_dir: pathlib.Path
) -> AsyncIterator[Callable[..., Awaitable[OcpsServe]]]:
    """Factory of ``ocps serve --port 0`` subprocesses on the REST test
    job types; each is stopped with SIGTERM at the end of the test."""
    servers: list[OcpsServe] = []

    async def make(*extra: str, env: dict[str, str] | None = None) -> OcpsServe:
        state_dir = tmp_path / f"serve_state_{len(servers)}"
        process, url, lines = await start_ocps_serve(
            "--job-types",
            str(rest_job_types_dir),
            "--state-dir",
            str(state_dir),
            "--log-level",
            "DEBUG",
            *extra,
            env=env,
        )
        assert process.stderr is not None
        reader = asyncio.create_task(_read_lines(process.stderr, lines))
        token = (env or {}).get("OCPS_API_TOKEN")
        server = OcpsServe(process, url, lines, reader, state_dir, token)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.process.returncode is None:
            await _abort_active(server)
        with contextlib.suppress(ProcessLookupError):
            await server.stop()


async def _abort_active(server: OcpsServe) -> None:
    """Abort the server's active jobs, so that no job outlives a test
    (``ocps serve`` leaves running jobs to be re-adopted on restart)."""
    from lsst.ts.ocps.rest.client import ClientError, OcpsClient

    token = server.token
    async with OcpsClient(server.url, token=token) as client:
        active = ["PENDING", "QUEUED", "HELD", "EXECUTING"]
        for job in await client.list(phases=active, limit=1000):
            with contextlib.suppress(ClientError):
                await client.abort(job["jobId"])
