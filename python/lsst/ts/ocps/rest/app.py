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
import logging
import os
import pathlib
from collections.abc import Awaitable, Callable

import yaml
from aiohttp import web

from ..exceptions import OcpsError, ParameterError
from ..jobs.job_manager import JOB_ID_PATTERN, JobManager
from ..paths import SCHEMA_DIR
from . import handlers
from .logs import FOLLOWERS_KEY, end_follows, get_job_log
from .request_checks import MANAGER_KEY

API_PREFIX = "/api/v1"
"""Path prefix of every route of the job API."""

DEFAULT_MAX_BODY = 2**20
"""Largest accepted request body (bytes); larger bodies get 413."""

TOKEN_ENV_VAR = "OCPS_API_TOKEN"
"""Environment variable holding the bearer token of mutating calls."""

OPENAPI_PATH = SCHEMA_DIR / "openapi.yaml"
"""The OpenAPI document served as ``/api/v1/openapi.json``.

It is read from the source tree, which a built wheel does not hold; there
the document is not served (404) and a warning is logged. Make it package
data to lift this.
"""

_OPENAPI_KEY = web.AppKey("openapi", dict)
_TOKEN_KEY = web.AppKey("token", str)
_MUTATING_METHODS = frozenset({"PUT", "POST", "DELETE", "PATCH"})
_log = logging.getLogger("ocps.rest")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    """Make the JSON error reply every failing call gets."""
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
    request: web.Request, handler: _Handler
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


async def get_openapi(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI document of this API."""
    document = request.app.get(_OPENAPI_KEY)
    if document is None:
        raise web.HTTPNotFound(text=f"OpenAPI document not found at {OPENAPI_PATH}")
    return web.json_response(document)


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
    app[FOLLOWERS_KEY] = set()
    app.on_shutdown.append(end_follows)
    if token:
        app[_TOKEN_KEY] = token
    try:
        app[_OPENAPI_KEY] = yaml.safe_load(OPENAPI_PATH.read_text())
    except OSError as e:
        _log.warning("OpenAPI document not served: %s", e)

    prefix = API_PREFIX
    app.router.add_put(f"{prefix}/job", handlers.put_job)
    app.router.add_post(f"{prefix}/job", handlers.post_job)
    app.router.add_get(f"{prefix}/job", handlers.list_jobs)
    app.router.add_get(f"{prefix}/job/list/{{category}}", handlers.list_job_ids)
    app.router.add_get(f"{prefix}/job/{{job_id}}", handlers.get_job)
    app.router.add_delete(f"{prefix}/job/{{job_id}}", handlers.delete_job)
    app.router.add_get(f"{prefix}/job/{{job_id}}/log", get_job_log)
    app.router.add_post(f"{prefix}/job/{{job_id}}/phase", handlers.post_job_phase)
    app.router.add_get(
        f"{prefix}/job/{{job_id}}/{{part:phase|parameters|results|error}}",
        handlers.get_job_part,
    )
    app.router.add_get(f"{prefix}/schema/all", handlers.get_all_schemas)
    app.router.add_get(f"{prefix}/schema/{{job_type}}", handlers.get_schema)
    app.router.add_get(f"{prefix}/health", handlers.get_health)
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
