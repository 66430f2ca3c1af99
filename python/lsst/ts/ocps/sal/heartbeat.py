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

"""The CSC heartbeat: the periodic event and the duplicate-instance check."""

from __future__ import annotations

__all__ = ["Heartbeat", "check_no_duplicate"]

import asyncio
import logging

from .errors import ExpectedError
from .sal_info import SalInfo
from .topics import ReadTopic, WriteTopic


class Heartbeat:
    """Write the heartbeat event at a fixed interval until closed.

    Parameters
    ----------
    evt_heartbeat : `WriteTopic`
        The ``heartbeat`` event topic.
    log : `logging.Logger`
        Where a failed write is logged (writing goes on).
    """

    def __init__(self, evt_heartbeat: WriteTopic, log: logging.Logger) -> None:
        self.evt_heartbeat = evt_heartbeat
        self.log = log
        self._task: asyncio.Task[None] | None = None

    def start(self, interval: float) -> None:
        """Begin writing; call once, from the event loop.

        Parameters
        ----------
        interval : `float`
            Seconds between heartbeat events.
        """
        if self._task is not None:
            raise RuntimeError("Heartbeat already started")
        self._task = asyncio.create_task(self._beat(interval))

    async def close(self) -> None:
        """Stop writing; safe to call more than once, or before `start`."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _beat(self, interval: float) -> None:
        while True:
            try:
                await self.evt_heartbeat.write()
            except Exception:
                self.log.exception("Heartbeat write failed")
            await asyncio.sleep(interval)


async def check_no_duplicate(salinfo: SalInfo, timeout: float) -> None:
    """Refuse to run if another instance is heartbeating.

    Parameters
    ----------
    salinfo : `SalInfo`
        The CSC's endpoint; a separate endpoint on its domain listens.
    timeout : `float`
        Seconds to listen for a heartbeat.

    Raises
    ------
    ExpectedError
        If a heartbeat from this name and index arrives in time.
    """
    listener = SalInfo(salinfo.domain, salinfo.name, salinfo.index)
    reader = ReadTopic(
        salinfo=listener,
        topic_info=listener.topic_info("logevent_heartbeat"),
        max_history=0,
    )
    try:
        await listener.start()
        try:
            beat = await reader.next(flush=False, timeout=timeout)
        except TimeoutError:
            return
    finally:
        await listener.close()
    raise ExpectedError(
        f"{salinfo.name_index} with origin={salinfo.origin} quitting: "
        f"found another instance with origin={beat.private_origin}."
    )
