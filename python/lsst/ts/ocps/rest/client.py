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

"""An asyncio client of the REST job API."""

from __future__ import annotations

__all__ = ["ClientError", "OcpsClient"]

import asyncio
import builtins
import datetime
import json
import urllib.parse
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from ..models import TERMINAL_PHASES, format_time

_API_PREFIX = "/api/v1"
"""Path prefix of the job API; the same as ``app.API_PREFIX``, which is not
imported so that a client does not load the server's modules."""


class ClientError(Exception):
    """Raised if a call cannot be made, or the server refuses it or cannot
    be reached.

    Parameters
    ----------
    message : `str`
        The server's ``message``, or what went wrong on the way.
    status : `int` or `None`
        HTTP status of the reply; None if there was no reply.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _quote(segment: str) -> str:
    """Quote one path segment (a job id or job type name) of a URL.

    A "/" is escaped, so it stays inside the segment. "", "." and ".."
    cannot be escaped (URLs drop or resolve them), so they are refused
    before any request is made.

    Raises
    ------
    ClientError
        Raised if ``segment`` is "", "." or "..".
    """
    if segment in ("", ".", ".."):
        raise ClientError(f"{segment!r} is not a valid job id or job type name")
    return urllib.parse.quote(segment, safe="")


class OcpsClient:
    """Talk to an OCPS job server.

    Use as an async context manager::

        async with OcpsClient("http://127.0.0.1:8080") as client:
            job = await client.submit("sleep", {"seconds": 1})
            job = await client.wait(job["jobId"])

    Parameters
    ----------
    base_url : `str`
        Server root, e.g. ``http://127.0.0.1:8080`` (``/api/v1`` is
        added unless the URL already ends with it).
    token : `str` or `None`, optional
        Bearer token sent with every call.
    timeout : `float`, optional
        Seconds allowed for one call that does not wait or stream.
    session : `aiohttp.ClientSession` or `None`, optional
        Session to use (and not close); None to make one.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        if not base.endswith(_API_PREFIX):
            base += _API_PREFIX
        self.base_url = base
        self.timeout = timeout
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._headers = headers
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> OcpsClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session, if this client made it."""
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session; only inside ``async with``."""
        if self._session is None:
            raise RuntimeError("use OcpsClient as 'async with OcpsClient(...)'")
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, str]] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Make one call and return its decoded JSON reply."""
        total = self.timeout if timeout is None else timeout
        try:
            async with self.session.request(
                method,
                self.base_url + path,
                params=params,
                json=json_body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=total),
            ) as response:
                text = await response.text()
                return self._decode(response, text)
        except aiohttp.ClientError as e:
            raise ClientError(f"cannot reach {self.base_url}: {e}") from e
        except asyncio.TimeoutError as e:
            raise ClientError(
                f"{method} {self.base_url}{path}: no reply in {total} s"
            ) from e

    @staticmethod
    def _decode(response: aiohttp.ClientResponse, text: str) -> Any:
        """Return the reply's JSON; raise `ClientError` for a 4xx or 5xx."""
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if response.status >= 400:
            message = (
                data.get("message")
                if isinstance(data, dict) and isinstance(data.get("message"), str)
                else text or response.reason or "error"
            )
            raise ClientError(str(message), response.status)
        return data

    async def submit(
        self,
        type_name: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        version: str | None = None,
        prereq_jobs: Sequence[str] = (),
        prereq_success: bool = False,
        wait_for: Sequence[str] = (),
        wait_timeout: float = 0.0,
        execution_duration: float | None = None,
    ) -> dict[str, Any]:
        """Submit a job (PUT /job) and return it.

        Parameters
        ----------
        type_name : `str`
            Job type name.
        parameters : `dict` [`str`, `typing.Any`] or `None`, optional
            Job parameters.
        run_id : `str` or `None`, optional
            Opaque label.
        version : `str` or `None`, optional
            If given, the job type's version must equal it.
        prereq_jobs : `list` [`str`], optional
            Jobs that must finish first.
        prereq_success : `bool`, optional
            Require the prerequisites to complete successfully.
        wait_for : `list` [`str`], optional
            Absolute paths or globs that must exist first.
        wait_timeout : `float`, optional
            Seconds to wait for ``wait_for``; 0 = forever.
        execution_duration : `float` or `None`, optional
            Allowed run time in seconds; None for the type's default.

        Returns
        -------
        job : `dict` [`str`, `typing.Any`]
            The accepted job (camelCase keys, as the server sends).
        """
        body: dict[str, Any] = {"type": type_name, "config": dict(parameters or {})}
        if run_id is not None:
            body["runId"] = run_id
        if version is not None:
            body["version"] = version
        if prereq_jobs:
            body["prereqJobs"] = list(prereq_jobs)
            body["prereqSuccess"] = prereq_success
        if wait_for:
            body["waitFor"] = list(wait_for)
            body["waitTimeout"] = wait_timeout
        if execution_duration is not None:
            body["executionDuration"] = execution_duration
        return await self._call("PUT", "/job", json_body=body)

    async def get(
        self, job_id: str, *, wait: float | None = None, phase: str | None = None
    ) -> dict[str, Any]:
        """Get a job, optionally after a UWS blocking wait of ``wait`` s."""
        params: dict[str, str] = {}
        timeout = None
        if wait is not None:
            params["wait"] = str(wait)
            timeout = self.timeout + max(wait, 0) + (3600 if wait < 0 else 0)
        if phase is not None:
            params["phase"] = phase
        return await self._call(
            "GET", f"/job/{_quote(job_id)}", params=params, timeout=timeout
        )

    async def list(
        self,
        *,
        phases: Collection[str] = (),
        after: datetime.datetime | None = None,
        last: int | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """List job summaries, newest first (one page of GET /job)."""
        params: list[tuple[str, str]] = [("phase", phase) for phase in phases]
        if after is not None:
            params.append(("after", format_time(after) or ""))
        for name, value in (("last", last), ("limit", limit), ("offset", offset)):
            if value is not None:
                params.append((name, str(value)))
        data = await self._call("GET", "/job", params=params)
        return builtins.list(data["jobs"])

    async def abort(self, job_id: str) -> dict[str, Any]:
        """Abort an active job (never deletes); return the aborted job."""
        return await self._call(
            "POST", f"/job/{_quote(job_id)}/phase", json_body={"phase": "ABORT"}
        )

    async def delete(self, job_id: str) -> dict[str, Any]:
        """DELETE a job: abort it if active, else delete it and its files."""
        return await self._call("DELETE", f"/job/{_quote(job_id)}")

    async def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until a job is finished and return it.

        Uses the server's blocking GET, so it makes one request per phase
        change (or per server wait cap), never a busy loop.

        Raises
        ------
        ClientError
            Raised if ``timeout`` seconds pass first.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        job = await self.get(job_id)
        while job["phase"] not in TERMINAL_PHASES:
            wait: float = -1
            if deadline is not None:
                wait = deadline - loop.time()
                if wait <= 0:
                    raise ClientError(
                        f"job {job_id} still {job['phase']} after {timeout} s"
                    )
            job = await self.get(job_id, wait=wait, phase=job["phase"])
        return job

    async def types(self) -> builtins.list[dict[str, Any]]:
        """Return the schema of every job type."""
        return await self._call("GET", "/schema/all")

    async def schema(self, type_name: str) -> dict[str, Any]:
        """Return one job type's schema."""
        return await self._call("GET", f"/schema/{_quote(type_name)}")

    async def health(self) -> dict[str, Any]:
        """Return the server's health report."""
        return await self._call("GET", "/health")

    async def logs(
        self,
        job_id: str,
        *,
        stream: str = "stdout",
        tail: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[bytes]:
        """Yield a job's log as it arrives.

        Without ``follow`` the log so far is yielded; with it, chunks are
        yielded until the job is finished and its log fully sent.
        """
        params = {"stream": stream, "follow": "true" if follow else "false"}
        if tail is not None:
            params["tail"] = str(tail)
        timeout = aiohttp.ClientTimeout(
            total=None if follow else self.timeout, sock_connect=self.timeout
        )
        try:
            async with self.session.get(
                f"{self.base_url}/job/{_quote(job_id)}/log",
                params=params,
                headers=self._headers,
                timeout=timeout,
            ) as response:
                if response.status >= 400:
                    self._decode(response, await response.text())
                async for chunk in response.content.iter_any():
                    yield chunk
        except aiohttp.ClientError as e:
            raise ClientError(f"cannot reach {self.base_url}: {e}") from e
