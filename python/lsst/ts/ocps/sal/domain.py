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

"""The domain: identity and process origin shared by SAL endpoints."""

from __future__ import annotations

__all__ = ["Domain"]

import getpass
import os
import socket
from typing import TYPE_CHECKING

from .closing import AsyncClosing

if TYPE_CHECKING:
    from .sal_info import SalInfo


def default_identity() -> str:
    """The identity of a stand-alone user process: ``user@fqdn``."""
    return f"{getpass.getuser()}@{socket.getfqdn()}"


class Domain(AsyncClosing):
    """What every SAL endpoint of one process shares.

    Parameters
    ----------
    identity : `str` or `None`, optional
        Identity stamped on records and used to filter acks; `None` means
        ``user@fqdn``. A CSC sets it to ``<name>:<index>`` so Remotes built
        on its domain share it.

    Attributes
    ----------
    identity : `str`
        Identity written as ``private_identity``.
    origin : `int`
        Process id written as ``private_origin``.
    """

    def __init__(self, identity: str | None = None) -> None:
        self.identity = default_identity() if identity is None else identity
        self.origin = os.getpid()
        self._salinfos: list[SalInfo] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        """Has `close` been called?"""
        return self._closed

    def add_salinfo(self, salinfo: SalInfo) -> None:
        """Register an endpoint so `close` closes it."""
        if self._closed:
            raise RuntimeError("Domain is closed")
        self._salinfos.append(salinfo)

    def remove_salinfo(self, salinfo: SalInfo) -> None:
        """Forget an endpoint; a no-op if it is unknown."""
        if salinfo in self._salinfos:
            self._salinfos.remove(salinfo)

    async def close(self) -> None:
        """Close every endpoint of this domain; safe to call twice."""
        self._closed = True
        while self._salinfos:
            salinfo = self._salinfos.pop()
            await salinfo.close()

    async def __aenter__(self) -> Domain:
        return self
