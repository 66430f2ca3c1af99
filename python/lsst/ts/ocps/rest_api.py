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

"""The REST job API (aiohttp) served under ``/api/v1``."""

from __future__ import annotations

__all__ = [
    "API_PREFIX",
    "DEFAULT_MAX_BODY",
    "JOB_ID_PATTERN",
    "MANAGER_KEY",
    "OPENAPI_PATH",
    "TOKEN_ENV_VAR",
    "create_app",
    "load_token",
    "start_server",
]

import asyncio
import hmac
import json
import logging
import os
import pathlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import yaml
from aiohttp import web

from . import __version__
from .exceptions import (
    JobNotFoundError,
    JobStateError,
    OcpsError,
    ParameterError,
    UnknownJobTypeError,
)
from .job_manager import JOB_ID_PATTERN, JobManager
from .models import ACTIVE_PHASES, TERMINAL_PHASES, ExecutionPhase, Job, parse_time

API_PREFIX = "/api/v1"
"""Path prefix of every route of the job API."""

DEFAULT_MAX_BODY = 2**20
"""Largest accepted request body (bytes); larger bodies get 413."""

TOKEN_ENV_VAR = "OCPS_API_TOKEN"
"""Environment variable holding the bearer token of mutating calls."""

OPENAPI_PATH = pathlib.Path(__file__).resolve().parents[4] / "schema" / "openapi.yaml"
"""The OpenAPI document served as ``/api/v1/openapi.json``."""

MANAGER_KEY = web.AppKey("manager", JobManager)
"""App key of the `JobManager` shared by the handlers."""

_OPENAPI_KEY = web.AppKey("openapi", dict)
_TOKEN_KEY = web.AppKey("token", str)
_FOLLOWERS_KEY = web.AppKey("followers", set)

_MUTATING_METHODS = frozenset({"PUT", "POST", "DELETE", "PATCH"})
_LIST_PAGE_MAX = 1000
_ID_PAGE = 1000
_PUT_FIELDS = frozenset(
    {
        "type",
        "version",
        "config",
        "env",
        "runId",
        "prereqJobs",
        "prereqSuccess",
        "waitFor",
        "waitTimeout",
        "executionDuration",
    }
)
_POST_FIELDS = frozenset({"type", "env", "parameters", "log_dir", "version"})
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_LIST_CATEGORIES: dict[str, frozenset[ExecutionPhase] | None] = {
    "all": None,
    "completed": TERMINAL_PHASES,
    "complete": TERMINAL_PHASES,
    "pending": frozenset(
        {ExecutionPhase.PENDING, ExecutionPhase.QUEUED, ExecutionPhase.HELD}
    ),
    "running": frozenset({ExecutionPhase.EXECUTING}),
    "null": frozenset(),
}

_log = logging.getLogger("ocps.rest")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_token(token_file: str | pathlib.Path | None = None) -> str | None:
    """Find the bearer token that guards mutating calls.

    Parameters
    ----------
    token_file : `str`, `pathlib.Path` or `None`
        File whose stripped contents are the token; if None, the
        ``OCPS_API_TOKEN`` environment variable is used, if set.

    Returns
    -------
    token : `str` or `None`
        The token, or None if there is none (no authentication).

    Raises
    ------
    ParameterError
        Raised if the file cannot be read or holds no token.
    """
    if token_file is not None:
        try:
            token = pathlib.Path(token_file).read_text().strip()
        except OSError as e:
            raise ParameterError(
                f"cannot read token file {str(token_file)!r}: {e}"
            ) from e
        if not token:
            raise ParameterError(f"token file {str(token_file)!r} is empty")
        return token
    return os.environ.get(TOKEN_ENV_VAR) or None


def _manager(request: web.Request) -> JobManager:
    return request.app[MANAGER_KEY]


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response(
        {"status": "error", "message": message}, status=status, headers=headers
    )


def _check_token(request: web.Request) -> web.Response | None:
    """Return a 401 response if a mutating call lacks the right token."""
    token = request.app.get(_TOKEN_KEY)
    if not token or request.method not in _MUTATING_METHODS:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return _json_error(
            401,
            "this call needs an Authorization: Bearer token",
            **{"WWW-Authenticate": 'Bearer realm="ocps"'},
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return _json_error(
            401,
            "the bearer token is not valid",
            **{"WWW-Authenticate": 'Bearer realm="ocps", error="invalid_token"'},
        )
    return None


@web.middleware
async def _error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Authenticate mutating calls and turn every failure into JSON."""
    denied = _check_token(request)
    if denied is not None:
        return denied
    try:
        return await handler(request)
    except OcpsError as e:
        return _json_error(e.status_code, str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {
            name: value
            for name, value in e.headers.items()
            if name in ("Allow", "WWW-Authenticate")
        }
        return _json_error(e.status, e.text or e.reason, **headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        _log.exception("unexpected error in %s %s", request.method, request.path)
        return _json_error(500, "internal server error; see the server log")


def _check_job_id(job_id: str) -> str:
    if not JOB_ID_PATTERN.match(job_id) or ".." in job_id:
        raise ParameterError(f"invalid job id {job_id!r}")
    return job_id


def _parse_phase(text: str) -> ExecutionPhase:
    try:
        return ExecutionPhase(text.upper())
    except ValueError:
        names = ", ".join(phase.value for phase in ExecutionPhase)
        raise ParameterError(
            f"invalid phase {text!r}; expected one of {names}"
        ) from None


def _parse_int(query: Mapping[str, str], name: str, minimum: int) -> int | None:
    text = query.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ParameterError(f"{name}={text!r} is not an integer") from None
    if value < minimum:
        raise ParameterError(f"{name}={value} is less than the minimum of {minimum}")
    return value


def _parse_bool(query: Mapping[str, str], name: str) -> bool:
    text = query.get(name, "false").lower()
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    raise ParameterError(f"{name}={text!r} is not a boolean (true or false)")


_SUMMARY_KEYS = (
    "jobId",
    "runId",
    "ownerId",
    "type",
    "phase",
    "creationTime",
    "startTime",
    "endTime",
    "exitCode",
)


def _job_summary(job: Job) -> dict[str, Any]:
    data = job.to_dict()
    return {key: data[key] for key in _SUMMARY_KEYS}


async def _read_json_object(request: web.Request) -> dict[str, Any]:
    """Read a request body that must be a JSON object."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=f"expected Content-Type application/json, not {request.content_type!r}"
        )
    raw = await request.read()
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise ParameterError(f"request body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ParameterError("request body must be a JSON object")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _expect(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """Return ``data[name]`` (None if absent) checked against ``kind``."""
    value = data.get(name)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        value_ok = False
    else:
        value_ok = isinstance(value, kinds)
    if not value_ok:
        names = " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
        raise ParameterError(f"field {name!r} must be {names}, not {json.dumps(value)}")
    return value


_JSON_NAMES = {
    str: "a string",
    dict: "an object",
    list: "an array",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def _string_list(data: Mapping[str, Any], name: str) -> list[str]:
    """Read an array of strings (or a comma-separated string) field."""
    value = _expect(data, name, (list, str))
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if not all(isinstance(item, str) for item in value):
        raise ParameterError(f"field {name!r} must be an array of strings")
    return list(value)


def _non_negative(data: Mapping[str, Any], name: str) -> float | None:
    value = _expect(data, name, (int, float))
    if value is not None and value < 0:
        raise ParameterError(f"field {name!r} must be >= 0, not {value}")
    return None if value is None else float(value)


def _merge_env(
    manager: JobManager,
    type_name: str,
    parameters: dict[str, Any],
    env: Mapping[str, Any],
) -> dict[str, Any]:
    """Merge prototype-style environment values into the parameters.

    A string value of a parameter whose schema type is not string is
    parsed as JSON when it parses (``"2.5"`` -> 2.5), since the prototype
    sent every value as text; otherwise it is kept for the validator to
    report. A name given both in ``config`` and ``env`` with different
    values is an error.
    """
    job_type = manager.job_types.get_type(type_name)
    properties = job_type.parameters_schema.get("properties", {})
    merged = dict(parameters)
    for name, value in env.items():
        schema = properties.get(name, {}) if isinstance(properties, dict) else {}
        declared = schema.get("type") if isinstance(schema, dict) else None
        declared_types = declared if isinstance(declared, list) else [declared]
        if isinstance(value, str) and declared and "string" not in declared_types:
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if name in merged and merged[name] != value:
            raise ParameterError(
                f"parameter {name!r} is given twice with different values "
                f"({json.dumps(merged[name])} and {json.dumps(value)})"
            )
        merged[name] = value
    return merged


def _check_fields(data: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ParameterError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(sorted(allowed))}"
        )


def _check_version(manager: JobManager, type_name: str, version: str | None) -> None:
    if not version:
        return
    job_type = manager.job_types.get_type(type_name)
    if version != job_type.version:
        raise ParameterError(
            f"job type {type_name!r} has version {job_type.version!r}, "
            f"not {version!r}"
        )


async def put_job(request: web.Request) -> web.Response:
    """PUT /job: submit a job (the prototype's ``PutJob`` plus extras)."""
    manager = _manager(request)
    data = await _read_json_object(request)
    _check_fields(data, _PUT_FIELDS)

    type_name = _expect(data, "type", str)
    if not type_name:
        raise ParameterError("field 'type' is required")
    config = _expect(data, "config", dict) or {}
    env_items = _expect(data, "env", list) or []
    env: dict[str, Any] = {}
    for index, item in enumerate(env_items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ParameterError(
                f"field 'env[{index}]' must be an object with a string 'name'"
            )
        env[item["name"]] = item.get("value")

    _check_version(manager, type_name, _expect(data, "version", str))
    parameters = _merge_env(manager, type_name, config, env)
    job = await manager.submit(
        type_name,
        parameters,
        run_id=_expect(data, "runId", str),
        prereq_jobs=_string_list(data, "prereqJobs"),
        prereq_success=bool(_expect(data, "prereqSuccess", bool)),
        wait_for=_string_list(data, "waitFor"),
        wait_timeout=_non_negative(data, "waitTimeout") or 0.0,
        execution_duration=_non_negative(data, "executionDuration"),
    )
    _log.info("job_id=%s submitted type=%s via=rest", job.job_id, job.type)
    return web.json_response({"job_id": job.job_id, **job.to_dict()})


async def _read_post_fields(request: web.Request) -> dict[str, Any]:
    """Read the fields of ``POST /job`` from JSON or a form."""
    if request.content_type == "application/json":
        return await _read_json_object(request)
    if request.content_type not in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        raise web.HTTPUnsupportedMediaType(
            text="expected Content-Type application/json, "
            "application/x-www-form-urlencoded or multipart/form-data, "
            f"not {request.content_type!r}"
        )
    form = await request.post()
    data: dict[str, Any] = {}
    for name in form:
        value = form.get(name)
        if not isinstance(value, str):
            raise ParameterError(f"form field {name!r} must be text, not a file")
        if name in ("env", "parameters"):
            try:
                value = json.loads(value)
            except ValueError as e:
                raise ParameterError(
                    f"form field {name!r} is not a JSON object: {e}"
                ) from e
        data[name] = value
    return data


async def post_job(request: web.Request) -> web.Response:
    """POST /job: submit a job the way the prototype's client did."""
    manager = _manager(request)
    data = await _read_post_fields(request)
    _check_fields(data, _POST_FIELDS)

    type_name = _expect(data, "type", str)
    if not type_name:
        raise ParameterError("field 'type' is required")
    parameters = _expect(data, "parameters", dict) or {}
    env = _expect(data, "env", dict) or {}
    _expect(data, "log_dir", str)
    _check_version(manager, type_name, _expect(data, "version", str))

    merged = _merge_env(manager, type_name, parameters, env)
    job = await manager.submit(type_name, merged)
    _log.info("job_id=%s submitted type=%s via=rest-post", job.job_id, job.type)
    message = f"job {job.job_id} accepted in phase {job.phase}"
    if "log_dir" in data:
        message += "; log_dir is ignored: logs stay in the job's work directory"
    return web.json_response({"status": "ok", "msg": message, "job_id": job.job_id})


def _wait_seconds(request: web.Request, cap: float) -> float | None:
    text = request.query.get("wait")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ParameterError(f"wait={text!r} is not a number of seconds") from None
    if value == -1:
        return cap
    if value < 0 or value != value:
        raise ParameterError(f"wait={text!r} must be >= 0 or -1 (the server maximum)")
    return min(value, cap)


async def get_job(request: web.Request) -> web.Response:
    """GET /job/{job_id}: a job, optionally after a UWS blocking wait."""
    manager = _manager(request)
    job_id = _check_job_id(request.match_info["job_id"])
    wait = _wait_seconds(request, manager.config.max_wait_timeout)
    phase_text = request.query.get("phase")
    phase = None if phase_text is None else _parse_phase(phase_text)

    job = await manager.get_job(job_id)
    if wait and job.phase in ACTIVE_PHASES and (phase is None or phase == job.phase):
        job = await manager.wait_for_change(job_id, phase, wait)
    return web.json_response(job.to_dict())


async def delete_job(request: web.Request) -> web.Response:
    """DELETE /job/{job_id}: abort an active job, delete a finished one."""
    manager = _manager(request)
    job_id = _check_job_id(request.match_info["job_id"])
    job = await manager.get_job(job_id)
    if not job.is_terminal:
        try:
            job = await manager.abort(job_id)
            return web.json_response(job.to_dict())
        except JobStateError:
            pass
    await manager.delete(job_id)
    _log.info("job_id=%s purged via=rest", job_id)
    return web.json_response({"message": "deleted", "job_id": job_id})


async def post_job_phase(request: web.Request) -> web.Response:
    """POST /job/{job_id}/phase: UWS ``PHASE=ABORT`` (never deletes)."""
    manager = _manager(request)
    job_id = _check_job_id(request.match_info["job_id"])
    if request.content_type == "application/json":
        data = await _read_json_object(request)
    else:
        data = dict(await _read_post_fields(request))
    _check_fields(data, frozenset({"phase", "PHASE"}))
    action = _expect(data, "phase", str) or _expect(data, "PHASE", str) or ""
    if action.upper() != "ABORT":
        raise ParameterError(
            f"phase={action!r} is not supported; only ABORT is (jobs start at once)"
        )
    job = await manager.abort(job_id)
    return web.json_response(job.to_dict())


async def get_job_part(request: web.Request) -> web.Response:
    """GET /job/{job_id}/{part}: phase, parameters, results or error."""
    manager = _manager(request)
    job_id = _check_job_id(request.match_info["job_id"])
    part = request.match_info["part"]
    job = await manager.get_job(job_id)
    if part == "phase":
        return web.json_response(str(job.phase))
    if part == "parameters":
        return web.json_response(job.parameters)
    if part == "results":
        return web.json_response([result.to_dict() for result in job.results])
    if job.error_summary is None:
        raise JobNotFoundError(f"job {job_id} has no error summary (phase {job.phase})")
    return web.json_response(job.error_summary.to_dict())


def _tail_offset(path: pathlib.Path, lines: int) -> int:
    """Return the offset where the last ``lines`` lines of a file start."""
    block = 65536
    with path.open("rb") as stream:
        end = stream.seek(0, os.SEEK_END)
        position = end
        found = 0
        # A final newline ends the last line; it does not start a new one.
        if end > 0:
            stream.seek(end - 1)
            if stream.read(1) == b"\n":
                found = -1
        while position > 0:
            start = max(0, position - block)
            stream.seek(start)
            chunk = stream.read(position - start)
            for index in range(len(chunk) - 1, -1, -1):
                if chunk[index] == 0x0A:
                    found += 1
                    if found == lines:
                        return start + index + 1
            position = start
        return 0


def _read_from(path: pathlib.Path, offset: int, limit: int = 2**20) -> bytes:
    try:
        with path.open("rb") as stream:
            stream.seek(offset)
            return stream.read(limit)
    except FileNotFoundError:
        return b""


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


async def _copy_new(
    path: pathlib.Path, offset: int, response: web.StreamResponse
) -> int:
    """Write what the file holds past ``offset``; return the new offset."""
    while True:
        data = _read_from(path, offset)
        if not data:
            return offset
        await response.write(data)
        offset += len(data)


async def _follow_log(
    request: web.Request,
    manager: JobManager,
    job_id: str,
    path: pathlib.Path,
    offset: int,
) -> web.StreamResponse:
    """Stream a log file until the job is terminal and the file drained.

    Waits on file-system events (watchfiles) and on the job's end (the
    manager's `JobManager.wait_terminal`), never on a timer.

    When the server shuts down, the stream ends after a last read.

    A write that lands between the first read and the moment the watcher
    is running is sent with the next change or when the job ends; removing
    this needs a watcher that reports when it is armed.
    """
    import watchfiles

    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    stop = asyncio.Event()
    followers = request.app[_FOLLOWERS_KEY]
    followers.add(stop)
    terminal = asyncio.create_task(manager.wait_terminal(job_id))
    terminal.add_done_callback(lambda _: stop.set())
    try:
        offset = await _copy_new(path, offset, response)
        if not terminal.done():
            root = _nearest_existing(path.parent)
            async for changes in watchfiles.awatch(
                root,
                watch_filter=None,
                stop_event=stop,
                debounce=200,
                step=20,
                recursive=root != path.parent,
            ):
                if any(pathlib.Path(name) == path for _, name in changes):
                    offset = await _copy_new(path, offset, response)
        await _copy_new(path, offset, response)
        await response.write_eof()
    except (ConnectionResetError, JobNotFoundError) as e:
        _log.info("job_id=%s log follow ended early: %s", job_id, e)
    finally:
        followers.discard(stop)
        terminal.cancel()
        await asyncio.gather(terminal, return_exceptions=True)
    return response


async def get_job_log(request: web.Request) -> web.StreamResponse:
    """GET /job/{job_id}/log: a job's stdout or stderr, whole or tail."""
    manager = _manager(request)
    job_id = _check_job_id(request.match_info["job_id"])
    stream = request.query.get("stream", "stdout")
    if stream not in ("stdout", "stderr"):
        raise ParameterError(f"stream={stream!r} must be stdout or stderr")
    tail = _parse_int(request.query, "tail", 0)
    follow = _parse_bool(request.query, "follow")

    await manager.get_job(job_id)
    path = manager.log_path(job_id, stream)
    offset = 0
    if tail is not None and path.exists():
        offset = await asyncio.to_thread(_tail_offset, path, tail)
    if follow:
        return await _follow_log(request, manager, job_id, path, offset)

    data = await asyncio.to_thread(_read_from, path, offset, 2**31)
    return web.Response(body=data, content_type="text/plain", charset="utf-8")


def _parse_phases(request: web.Request) -> list[ExecutionPhase] | None:
    texts: list[str] = []
    for value in request.query.getall("phase", []):
        texts.extend(item for item in value.split(",") if item)
    return [_parse_phase(text) for text in texts] or None


async def list_jobs(request: web.Request) -> web.Response:
    """GET /job: job summaries, newest first, filtered and paged."""
    manager = _manager(request)
    phases = _parse_phases(request)
    after_text = request.query.get("after")
    try:
        after = parse_time(after_text)
    except ValueError:
        raise ParameterError(f"after={after_text!r} is not an ISO 8601 time") from None
    last = _parse_int(request.query, "last", 0)
    limit = _parse_int(request.query, "limit", 1)
    limit = 100 if limit is None else min(limit, _LIST_PAGE_MAX)
    offset = _parse_int(request.query, "offset", 0) or 0

    jobs = await manager.list_jobs(
        phases=phases, after=after, last=last, limit=limit + 1, offset=offset
    )
    next_url = None
    if len(jobs) > limit:
        jobs = jobs[:limit]
        query = request.rel_url.query.copy()
        query["offset"] = str(offset + limit)
        query["limit"] = str(limit)
        next_url = str(request.rel_url.with_query(query))
    return web.json_response(
        {"jobs": [_job_summary(job) for job in jobs], "next": next_url}
    )


async def list_job_ids(request: web.Request) -> web.Response:
    """GET /job/list/{category}: the prototype's list of job ids."""
    manager = _manager(request)
    category = request.match_info["category"].lower()
    if category not in _LIST_CATEGORIES:
        raise ParameterError(
            f"invalid category {category!r}; expected one of "
            f"{', '.join(_LIST_CATEGORIES)}"
        )
    phases = _LIST_CATEGORIES[category]
    job_ids: list[str] = []
    if phases is None or phases:
        offset = 0
        while True:
            page = await manager.list_jobs(phases=phases, limit=_ID_PAGE, offset=offset)
            job_ids.extend(job.job_id for job in page)
            if len(page) < _ID_PAGE:
                break
            offset += _ID_PAGE
    return web.json_response({"job_ids": job_ids})


async def get_all_schemas(request: web.Request) -> web.Response:
    """GET /schema/all: the schema of every job type."""
    manager = _manager(request)
    return web.json_response(
        [manager.job_types[name].to_schema_dict() for name in sorted(manager.job_types)]
    )


async def get_schema(request: web.Request) -> web.Response:
    """GET /schema/{job_type}: one job type's schema (404 if unknown)."""
    manager = _manager(request)
    name = request.match_info["job_type"]
    try:
        job_type = manager.job_types.get_type(name)
    except UnknownJobTypeError as e:
        raise web.HTTPNotFound(text=str(e)) from e
    return web.json_response(job_type.to_schema_dict())


async def get_health(request: web.Request) -> web.Response:
    """GET /health: liveness, active jobs by phase, and the version.

    Only active phases are counted by phase (a few rows); finished jobs
    are only in ``total``. Counting every phase needs a count-by-phase
    query in the journal, which it does not have yet.
    """
    manager = _manager(request)
    counts: dict[str, int] = {}
    offset = 0
    while True:
        page = await manager.list_jobs(
            phases=ACTIVE_PHASES, limit=_ID_PAGE, offset=offset
        )
        for job in page:
            counts[str(job.phase)] = counts.get(str(job.phase), 0) + 1
        if len(page) < _ID_PAGE:
            break
        offset += _ID_PAGE
    total = await manager.journal.count()
    return web.json_response(
        {"status": "ok", "jobs": counts, "total": total, "version": __version__}
    )


async def get_openapi(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI document of this API."""
    document = request.app.get(_OPENAPI_KEY)
    if document is None:
        raise web.HTTPNotFound(text=f"OpenAPI document not found at {OPENAPI_PATH}")
    return web.json_response(document)


async def _end_follows(app: web.Application) -> None:
    """End every log follow, so that shutdown does not wait for jobs."""
    for stop in app[_FOLLOWERS_KEY]:
        stop.set()


def create_app(
    manager: JobManager,
    *,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> web.Application:
    """Build the REST job API application.

    Parameters
    ----------
    manager : `JobManager`
        The started job manager the handlers use.
    token : `str` or `None`, optional
        Bearer token required by every PUT, POST and DELETE; None for no
        authentication (see `load_token`).
    max_body : `int`, optional
        Largest accepted request body in bytes; larger ones get 413.

    Returns
    -------
    app : `aiohttp.web.Application`
        The application, routes under ``/api/v1``.
    """
    app = web.Application(middlewares=[_error_middleware], client_max_size=max_body)
    app[MANAGER_KEY] = manager
    app[_FOLLOWERS_KEY] = set()
    app.on_shutdown.append(_end_follows)
    if token:
        app[_TOKEN_KEY] = token
    try:
        app[_OPENAPI_KEY] = yaml.safe_load(OPENAPI_PATH.read_text())
    except OSError as e:
        _log.warning("OpenAPI document not served: %s", e)

    prefix = API_PREFIX
    app.router.add_put(f"{prefix}/job", put_job)
    app.router.add_post(f"{prefix}/job", post_job)
    app.router.add_get(f"{prefix}/job", list_jobs)
    app.router.add_get(f"{prefix}/job/list/{{category}}", list_job_ids)
    app.router.add_get(f"{prefix}/job/{{job_id}}", get_job)
    app.router.add_delete(f"{prefix}/job/{{job_id}}", delete_job)
    app.router.add_get(f"{prefix}/job/{{job_id}}/log", get_job_log)
    app.router.add_post(f"{prefix}/job/{{job_id}}/phase", post_job_phase)
    app.router.add_get(
        f"{prefix}/job/{{job_id}}/{{part:phase|parameters|results|error}}",
        get_job_part,
    )
    app.router.add_get(f"{prefix}/schema/all", get_all_schemas)
    app.router.add_get(f"{prefix}/schema/{{job_type}}", get_schema)
    app.router.add_get(f"{prefix}/health", get_health)
    app.router.add_get(f"{prefix}/openapi.json", get_openapi)
    return app


async def start_server(
    app: web.Application, host: str = "127.0.0.1", port: int = 8080
) -> tuple[web.AppRunner, int]:
    """Serve an application over HTTP.

    Parameters
    ----------
    app : `aiohttp.web.Application`
        The application, e.g. from `create_app`.
    host : `str`, optional
        Address to bind.
    port : `int`, optional
        Port to bind; 0 picks a free one.

    Returns
    -------
    runner : `aiohttp.web.AppRunner`
        The runner; call ``await runner.cleanup()`` to stop serving.
    port : `int`
        The port actually bound.
    """
    runner = web.AppRunner(app, access_log=logging.getLogger("ocps.rest.access"))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])
