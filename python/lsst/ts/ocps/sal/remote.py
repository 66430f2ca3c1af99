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

"""The Remote: commands a CSC and reads its events."""

from __future__ import annotations

__all__ = ["Remote"]

import asyncio
from collections.abc import Iterable
from typing import Any

from .closing import AsyncClosing
from .command_topics import AckCmdReader, RemoteCommand
from .domain import Domain
from .sal_info import SalInfo
from .topics import ReadTopic


class Remote(AsyncClosing):
    """Talk to a CSC: ``cmd_<name>`` to command it, ``evt_<name>`` to read.

    Use it as an async context manager, or await `start_task` and call
    `close`.

    Parameters
    ----------
    domain : `Domain` or `None`
        Supplies identity and origin; acks are accepted only when they
        echo both. `None` makes a private domain (identity ``user@fqdn``)
        that `close` closes.
    name : `str`
        SAL component name, e.g. ``OCPS``.
    index : `int`, optional
        SAL index of the CSC; 0 reads all indices and sends commands with
        ``salIndex=0``, which indexed CSCs ignore.
    readonly : `bool`, optional
        Make no command topics.
    include : `~collections.abc.Iterable` [`str`] or `None`, optional
        Names (without ``logevent_``) of the only events to read.
    exclude : `~collections.abc.Iterable` [`str`] or `None`, optional
        Names of events not to read; not with ``include``.
    evt_max_history : `int`, optional
        Historical samples (0 or 1) each event reader gets at start.
    start : `bool`, optional
        Start at once (`start_task` tracks it).

    Raises
    ------
    ValueError
        If both include and exclude are given, or a name is unknown.
    """

    def __init__(
        self,
        domain: Domain | None,
        name: str,
        index: int = 0,
        *,
        readonly: bool = False,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        evt_max_history: int = 1,
        start: bool = True,
    ) -> None:
        if include is not None and exclude is not None:
            raise ValueError("Specify include or exclude, not both")
        self._own_domain = domain is None
        self.domain = Domain() if domain is None else domain
        self.salinfo = SalInfo(self.domain, name, index)
        component = self.salinfo.component

        names = {sal_name.split("_", 1)[1] for sal_name in component.events}
        wanted = set(names)
        for given in (include, exclude):
            if given is not None:
                unknown = sorted(set(given) - names)
                if unknown:
                    raise ValueError(f"{name} has no events {unknown}")
        if include is not None:
            wanted = set(include)
        elif exclude is not None:
            wanted -= set(exclude)

        for sal_name, topic_info in component.events.items():
            if sal_name.split("_", 1)[1] in wanted:
                reader = ReadTopic(
                    salinfo=self.salinfo,
                    topic_info=topic_info,
                    max_history=evt_max_history,
                )
                setattr(self, topic_info.attr_name, reader)
        for topic_info in component.telemetry.values():
            reader = ReadTopic(
                salinfo=self.salinfo, topic_info=topic_info, max_history=0
            )
            setattr(self, topic_info.attr_name, reader)
        if not readonly and component.commands:
            ack_reader = AckCmdReader(salinfo=self.salinfo, topic_info=component.ackcmd)
            for topic_info in component.commands.values():
                command = RemoteCommand(
                    salinfo=self.salinfo, topic_info=topic_info, ack_reader=ack_reader
                )
                setattr(self, topic_info.attr_name, command)

        self.start_task: asyncio.Future[None] = (
            asyncio.ensure_future(self.start())
            if start
            else asyncio.get_running_loop().create_future()
        )

    # Topic attributes are set at run time from the interface; this
    # declaration lets type checkers accept them (lookups still fail).
    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    async def start(self) -> None:
        """Start reading and writing; history arrives before this returns."""
        await self.salinfo.start()
        if not self.start_task.done() and not isinstance(self.start_task, asyncio.Task):
            self.start_task.set_result(None)

    async def close(self) -> None:
        """Stop; also closes the domain if this Remote made it."""
        if not self.start_task.done():
            self.start_task.cancel()
            await asyncio.gather(self.start_task, return_exceptions=True)
        await self.salinfo.close()
        if self._own_domain:
            await self.domain.close()

    async def __aenter__(self) -> Remote:
        await self.start_task
        return self
