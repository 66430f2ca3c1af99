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

"""SAL enumerations shared by every component: summary states, ack codes."""

__all__ = ["FAILED_ACK_CODES", "FINAL_ACK_CODES", "SalRetCode", "State"]

import enum


class State(enum.IntEnum):
    """Summary state of a CSC, with the numbers SAL puts on the wire."""

    DISABLED = 1
    ENABLED = 2
    FAULT = 3
    OFFLINE = 4
    STANDBY = 5


class SalRetCode(enum.IntEnum):
    """Command acknowledgement codes carried by ``ackcmd.ack``.

    Only the codes a command ack can carry are listed.
    """

    CMD_ACK = 300
    CMD_INPROGRESS = 301
    CMD_STALLED = 302
    CMD_COMPLETE = 303
    CMD_NOPERM = -300
    CMD_NOACK = -301
    CMD_FAILED = -302
    CMD_ABORTED = -303
    CMD_TIMEOUT = -304


FINAL_ACK_CODES = frozenset(
    {
        SalRetCode.CMD_STALLED,
        SalRetCode.CMD_COMPLETE,
        SalRetCode.CMD_NOPERM,
        SalRetCode.CMD_NOACK,
        SalRetCode.CMD_FAILED,
        SalRetCode.CMD_ABORTED,
        SalRetCode.CMD_TIMEOUT,
    }
)
"""Ack codes after which no further ack is expected for a command."""

FAILED_ACK_CODES = FINAL_ACK_CODES - {SalRetCode.CMD_COMPLETE}
"""Final ack codes that a Remote reports by raising `AckError`."""
