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

"""The job log endpoint of the REST API: whole, tail, or followed."""

from __future__ import annotations

__all__ = ["FOLLOWERS_KEY", "end_follows", "get_job_log"]

import asyncio
import logging
import os
import pathlib

import watchfiles
from aiohttp import web

from ..exceptions import ParameterError
from ..jobs.job_manager import JobManager
from ..jobs.triggers import nearest_directory
from .request_checks import check_job_id, get_manager, parse_bool, parse_int

FOLLOWERS_KEY = web.AppKey("followers", set)
"""App key of the stop events of the log streams being followed."""

_log = logging.getLogger("ocps.rest")


def _tail_offset(path: pathlib.Path, lines: int) -> int:
    """Return the offset where the last ``lines`` lines of a file start."""
    block = 65536
    with path.open("rb") as stream:
        end = stream.seek(0, os.SEEK_END)
        if lines <= 0:
            return end
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
    """Read at most ``limit`` bytes from ``offset``; none if no file."""
    try:
        with path.open("rb") as stream:
            stream.seek(offset)
            return stream.read(limit)
    except FileNotFoundError:
        return b""


async def _copy_new(
    path: pathlib.Path, offset: int, response: web.StreamResponse
) -> int:
    """Write what the file holds past ``offset``; return the new offset."""
    while True:
        data = await asyncio.to_thread(_read_from, path, offset)
        if not data:
            return offset
        await response.write(data)
        offset += len(data)


async def _send_log(
    request: web.Request,
    job_id: str,
    path: pathlib.Path,
    offset: int,
    manager: JobManager | None,
) -> web.StreamResponse:
    """Send a log file from ``offset``; with ``manager``, follow it.

    The file goes out in chunks, so that a large log is never held in
    memory whole. A client that goes away ends the response quietly.
    """
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    try:
        if manager is None:
            await _copy_new(path, offset, response)
        else:
            await _follow(request, manager, job_id, path, offset, response)
        await response.write_eof()
    except ConnectionResetError as e:
        # The client went away; there is nobody left to tell.
        _log.info("job_id=%s log stream ended early: %s", job_id, e)
    return response


async def _follow(
    request: web.Request,
    manager: JobManager,
    job_id: str,
    path: pathlib.Path,
    offset: int,
    response: web.StreamResponse,
) -> None:
    """Send a log file as it grows, until the job has ended.

    The last read comes after the job is terminal, so the file is drained.

    Waits on file-system events (watchfiles) and on the job's end (the
    manager's `JobManager.wait_terminal`), never on a timer.

    When the server shuts down, the stream ends after a last read.

    A write that lands between the first read and the moment the watcher
    is running is sent with the next change or when the job ends; removing
    this needs a watcher that reports when it is armed.
    """
    stop = asyncio.Event()
    followers = request.app[FOLLOWERS_KEY]
    followers.add(stop)
    terminal = asyncio.create_task(manager.wait_terminal(job_id))
    terminal.add_done_callback(lambda _: stop.set())
    try:
        offset = await _copy_new(path, offset, response)
        if not terminal.done():
            root = nearest_directory(path.parent)
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
    finally:
        followers.discard(stop)
        terminal.cancel()
        await asyncio.gather(terminal, return_exceptions=True)


async def get_job_log(request: web.Request) -> web.StreamResponse:
    """GET /job/{job_id}/log: a job's stdout or stderr, whole or tail."""
    manager = get_manager(request)
    job_id = check_job_id(request.match_info["job_id"])
    stream = request.query.get("stream", "stdout")
    if stream not in ("stdout", "stderr"):
        raise ParameterError(f"stream={stream!r} must be stdout or stderr")
    tail = parse_int(request.query, "tail", 0)
    follow = parse_bool(request.query, "follow")

    await manager.get_job(job_id)
    path = manager.log_path(job_id, stream)
    offset = 0
    if tail is not None and path.exists():
        offset = await asyncio.to_thread(_tail_offset, path, tail)
    return await _send_log(request, job_id, path, offset, manager if follow else None)


async def end_follows(app: web.Application) -> None:
    """End every log follow, so that shutdown does not wait for jobs."""
    for stop in app[FOLLOWERS_KEY]:
        stop.set()
