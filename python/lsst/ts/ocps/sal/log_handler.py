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

"""A logging handler that publishes log records as ``logMessage`` events."""

from __future__ import annotations

__all__ = ["SalLogHandler"]

import asyncio
import collections
import contextvars
import logging
import traceback
from typing import Any

from .topics import WriteTopic

MAX_BUFFERED = 10
"""Records kept while the event cannot be written yet; older ones drop."""

_in_writer = contextvars.ContextVar("_in_writer", default=False)
"""True inside the writer task: records logged there would loop."""


class SalLogHandler(logging.Handler):
    """Write each log record as a ``logMessage`` event.

    Records are queued from `emit` (any thread) and written in order by a
    task the handler owns; `close_async` stops it. Records that arrive
    before `start` are buffered (at most `MAX_BUFFERED`).

    Parameters
    ----------
    evt_logMessage : `WriteTopic`
        The ``logMessage`` event topic.
    """

    def __init__(self, evt_logMessage: WriteTopic) -> None:
        super().__init__()
        self.evt_logMessage = evt_logMessage
        self._pending: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=MAX_BUFFERED
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin writing records; call from the event loop."""
        self._loop = asyncio.get_running_loop()
        # The writer drains the queue from now on: stop dropping records.
        self._pending = collections.deque(self._pending)
        self._task = asyncio.create_task(self._write_loop())
        self._wakeup.set()

    def emit(self, record: logging.LogRecord) -> None:
        if _in_writer.get():
            return
        try:
            fields = dict(
                name=record.name,
                level=record.levelno,
                message=record.getMessage(),
                traceback=(
                    "".join(traceback.format_exception(*record.exc_info))
                    if record.exc_info
                    else ""
                ),
                filePath=record.pathname,
                functionName=record.funcName,
                lineNumber=record.lineno,
                process=record.process or 0,
            )
        except Exception:
            self.handleError(record)
            return
        if self._loop is None:
            self._pending.append(fields)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._enqueue, fields)

    def _enqueue(self, fields: dict[str, Any]) -> None:
        self._pending.append(fields)
        self._wakeup.set()

    async def _write_loop(self) -> None:
        _in_writer.set(True)
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                fields = self._pending.popleft()
                try:
                    await self.evt_logMessage.set_write(**fields)
                except Exception:
                    # Nowhere to report it but stderr: logging would loop.
                    self.handleError(logging.makeLogRecord({"msg": str(fields)}))

    async def close_async(self) -> None:
        """Write what is queued, then stop the writer task."""
        if self._task is None:
            return
        # Give the writer a bounded chance to drain the queue.
        for _ in range(100):
            if not self._pending:
                break
            self._wakeup.set()
            await asyncio.sleep(0.001)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
