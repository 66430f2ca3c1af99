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

"""Errors raised by the SAL layer: expected failures and ack failures."""

from __future__ import annotations

__all__ = ["AckError", "AckTimeoutError", "ExpectedError"]

from typing import Any


class ExpectedError(Exception):
    """A command failed for a reason the operator can act on.

    A command handler that raises this gets a ``CMD_FAILED`` ack with the
    message, and the CSC logs no traceback.
    """


class AckError(Exception):
    """A command ended with a failure ack.

    Parameters
    ----------
    msg : `str`
        What went wrong.
    ackcmd : `~typing.Any`
        The ack sample (with ``private_seqNum``, ``ack``, ``error`` and
        ``result`` attributes).
    """

    def __init__(self, msg: str, ackcmd: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.ackcmd = ackcmd

    def __str__(self) -> str:
        ack = self.ackcmd
        return (
            f"msg={self.msg!r}, ackcmd=(ackcmd private_seqNum={ack.private_seqNum}, "
            f"ack={ack.ack!r}, error={ack.error}, result={ack.result!r})"
        )


class AckTimeoutError(AckError, TimeoutError):
    """No final ack arrived in time.

    ``ackcmd`` is the last ack seen, or a synthetic ``CMD_NOACK`` when none
    arrived. It is also a `TimeoutError`, so ``except TimeoutError`` works.
    """
