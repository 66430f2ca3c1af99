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

"""The handlers of the REST job API: jobs, job lists, schemas, health."""

from __future__ import annotations

__all__ = [
    "delete_job",
    "get_all_schemas",
    "get_health",
    "get_job",
    "get_job_part",
    "get_schema",
    "list_job_ids",
    "list_jobs",
    "post_job",
    "post_job_phase",
    "put_job",
]

import logging
from typing import Any

from aiohttp import web

from .. import __version__
from ..exceptions import (
    JobNotFoundError,
    JobStateError,
    ParameterError,
    UnknownJobTypeError,
)
from ..models import ACTIVE_PHASES, TERMINAL_PHASES, ExecutionPhase, Job, parse_time
from .request_checks import (
    POST_FIELDS,
    PUT_FIELDS,
    check_fields,
    check_job_id,
    check_version,
    expect_field,
    get_manager,
    merge_env,
    non_negative,
    parse_int,
    parse_phase,
    parse_phases,
    read_json_object,
    read_post_fields,
    string_list,
    wait_seconds,
)

_LIST_PAGE_MAX = 1000
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


async def put_job(request: web.Request) -> web.Response:
    """PUT /job: submit a job (the prototype's ``PutJob`` plus extras)."""
    manager = get_manager(request)
    data = await read_json_object(request)
    check_fields(data, PUT_FIELDS)

    type_name = expect_field(data, "type", str)
    if not type_name:
        raise ParameterError("field 'type' is required")
    config = expect_field(data, "config", dict) or {}
    env_items = expect_field(data, "env", list) or []
    env: dict[str, Any] = {}
    for index, item in enumerate(env_items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ParameterError(
                f"field 'env[{index}]' must be an object with a string 'name'"
            )
        env[item["name"]] = item.get("value")

    check_version(manager, type_name, expect_field(data, "version", str))
    parameters = merge_env(manager, type_name, config, env)
    job = await manager.submit(
        type_name,
        parameters,
        run_id=expect_field(data, "runId", str),
        prereq_jobs=string_list(data, "prereqJobs"),
        prereq_success=bool(expect_field(data, "prereqSuccess", bool)),
        wait_for=string_list(data, "waitFor"),
        wait_timeout=non_negative(data, "waitTimeout") or 0.0,
        execution_duration=non_negative(data, "executionDuration"),
    )
    _log.info("job_id=%s submitted type=%s via=rest", job.job_id, job.type)
    return web.json_response({"job_id": job.job_id, **job.to_dict()})


async def post_job(request: web.Request) -> web.Response:
    """POST /job: submit a job the way the prototype's client did."""
    manager = get_manager(request)
    data = await read_post_fields(request)
    check_fields(data, POST_FIELDS)

    type_name = expect_field(data, "type", str)
    if not type_name:
        raise ParameterError("field 'type' is required")
    parameters = expect_field(data, "parameters", dict) or {}
    env = expect_field(data, "env", dict) or {}
    expect_field(data, "log_dir", str)
    check_version(manager, type_name, expect_field(data, "version", str))

    merged = merge_env(manager, type_name, parameters, env)
    job = await manager.submit(type_name, merged)
    _log.info("job_id=%s submitted type=%s via=rest-post", job.job_id, job.type)
    message = f"job {job.job_id} accepted in phase {job.phase}"
    if "log_dir" in data:
        message += "; log_dir is ignored: logs stay in the job's work directory"
    return web.json_response({"status": "ok", "msg": message, "job_id": job.job_id})


async def get_job(request: web.Request) -> web.Response:
    """GET /job/{job_id}: a job, optionally after a UWS blocking wait."""
    manager = get_manager(request)
    job_id = check_job_id(request.match_info["job_id"])
    wait = wait_seconds(request, manager.config.max_wait_timeout)
    phase_text = request.query.get("phase")
    phase = None if phase_text is None else parse_phase(phase_text)

    job = await manager.get_job(job_id)
    if wait and job.phase in ACTIVE_PHASES and (phase is None or phase == job.phase):
        job = await manager.wait_for_change(job_id, phase, wait)
    return web.json_response(job.to_dict())


async def delete_job(request: web.Request) -> web.Response:
    """DELETE /job/{job_id}: abort an active job, delete a finished one."""
    manager = get_manager(request)
    job_id = check_job_id(request.match_info["job_id"])
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
    manager = get_manager(request)
    job_id = check_job_id(request.match_info["job_id"])
    if request.content_type == "application/json":
        data = await read_json_object(request)
    else:
        data = dict(await read_post_fields(request))
    check_fields(data, frozenset({"phase", "PHASE"}))
    action = expect_field(data, "phase", str) or expect_field(data, "PHASE", str) or ""
    if action.upper() != "ABORT":
        raise ParameterError(
            f"phase={action!r} is not supported; only ABORT is (jobs start at once)"
        )
    job = await manager.abort(job_id)
    return web.json_response(job.to_dict())


async def get_job_part(request: web.Request) -> web.Response:
    """GET /job/{job_id}/{part}: phase, parameters, results or error."""
    manager = get_manager(request)
    job_id = check_job_id(request.match_info["job_id"])
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


async def list_jobs(request: web.Request) -> web.Response:
    """GET /job: job summaries, newest first, filtered and paged."""
    manager = get_manager(request)
    phases = parse_phases(request)
    after_text = request.query.get("after")
    try:
        after = parse_time(after_text)
    except ValueError:
        raise ParameterError(f"after={after_text!r} is not an ISO 8601 time") from None
    last = parse_int(request.query, "last", 0)
    limit = parse_int(request.query, "limit", 1)
    limit = 100 if limit is None else min(limit, _LIST_PAGE_MAX)
    offset = parse_int(request.query, "offset", 0) or 0

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
    manager = get_manager(request)
    category = request.match_info["category"].lower()
    if category not in _LIST_CATEGORIES:
        raise ParameterError(
            f"invalid category {category!r}; expected one of "
            f"{', '.join(_LIST_CATEGORIES)}"
        )
    job_ids = await manager.journal.list_ids(phases=_LIST_CATEGORIES[category])
    return web.json_response({"job_ids": job_ids})


async def get_all_schemas(request: web.Request) -> web.Response:
    """GET /schema/all: the schema of every job type."""
    manager = get_manager(request)
    return web.json_response(
        [manager.job_types[name].to_schema_dict() for name in sorted(manager.job_types)]
    )


async def get_schema(request: web.Request) -> web.Response:
    """GET /schema/{job_type}: one job type's schema (404 if unknown)."""
    manager = get_manager(request)
    name = request.match_info["job_type"]
    try:
        job_type = manager.job_types.get_type(name)
    except UnknownJobTypeError as e:
        raise web.HTTPNotFound(text=str(e)) from e
    return web.json_response(job_type.to_schema_dict())


async def get_health(request: web.Request) -> web.Response:
    """GET /health: liveness, the number of jobs in every phase, and the
    version."""
    manager = get_manager(request)
    counts = await manager.journal.count_by_phase()
    return web.json_response(
        {
            "status": "ok",
            "jobs": {str(phase): count for phase, count in counts.items()},
            "total": sum(counts.values()),
            "version": __version__,
        }
    )
