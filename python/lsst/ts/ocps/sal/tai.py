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

"""TAI clock helpers: SAL time stamps are TAI seconds since 1970."""

from __future__ import annotations

__all__ = [
    "LEAP_SECONDS",
    "current_tai",
    "tai_from_utc",
    "tai_minus_utc",
    "utc_from_tai",
]

import bisect
import calendar
import time

# TAI - UTC in whole seconds, from each UTC date on (IERS Bulletin C).
#
# To update: when the IERS announces a leap second (Bulletin C, published
# each January and July, at least 5 months ahead), append a row with the
# UTC date it takes effect (00:00:00) and the new TAI - UTC. The table has
# not changed since 2017-01-01 (37 s). Without the row every stamp taken
# after that date is 1 s early; nothing else here needs to change.
_LEAP_TABLE: tuple[tuple[tuple[int, int, int], int], ...] = (
    ((1972, 1, 1), 10),
    ((1972, 7, 1), 11),
    ((1973, 1, 1), 12),
    ((1974, 1, 1), 13),
    ((1975, 1, 1), 14),
    ((1976, 1, 1), 15),
    ((1977, 1, 1), 16),
    ((1978, 1, 1), 17),
    ((1979, 1, 1), 18),
    ((1980, 1, 1), 19),
    ((1981, 7, 1), 20),
    ((1982, 7, 1), 21),
    ((1983, 7, 1), 22),
    ((1985, 7, 1), 23),
    ((1988, 1, 1), 24),
    ((1990, 1, 1), 25),
    ((1991, 1, 1), 26),
    ((1992, 7, 1), 27),
    ((1993, 7, 1), 28),
    ((1994, 7, 1), 29),
    ((1996, 1, 1), 30),
    ((1997, 7, 1), 31),
    ((1999, 1, 1), 32),
    ((2006, 1, 1), 33),
    ((2009, 1, 1), 34),
    ((2012, 7, 1), 35),
    ((2015, 7, 1), 36),
    ((2017, 1, 1), 37),
)

LEAP_SECONDS: tuple[tuple[float, int], ...] = tuple(
    (float(calendar.timegm((y, m, d, 0, 0, 0))), offset)
    for (y, m, d), offset in _LEAP_TABLE
)
"""``(utc_unix_start, tai_minus_utc)`` pairs, oldest first."""

_UTC_STARTS = [start for start, _ in LEAP_SECONDS]
_TAI_STARTS = [start + offset for start, offset in LEAP_SECONDS]


def _offset_at(starts: list[float], t: float) -> int:
    i = bisect.bisect_right(starts, t) - 1
    if i < 0:
        raise ValueError(f"{t=} is before 1972-01-01, where TAI - UTC is not whole")
    return LEAP_SECONDS[i][1]


def tai_minus_utc(utc: float) -> int:
    """Return TAI - UTC in seconds at a UTC time.

    Parameters
    ----------
    utc : `float`
        UTC as unix seconds.

    Returns
    -------
    offset : `int`
        Leap seconds, 37 since 2017-01-01.

    Raises
    ------
    ValueError
        If ``utc`` is before 1972-01-01.
    """
    return _offset_at(_UTC_STARTS, utc)


def tai_from_utc(utc: float) -> float:
    """Convert UTC unix seconds to TAI seconds.

    Parameters
    ----------
    utc : `float`
        UTC as unix seconds.

    Returns
    -------
    tai : `float`
        TAI seconds since 1970-01-01.

    Raises
    ------
    ValueError
        If ``utc`` is before 1972-01-01.
    """
    return utc + tai_minus_utc(utc)


def utc_from_tai(tai: float) -> float:
    """Convert TAI seconds to UTC unix seconds.

    Parameters
    ----------
    tai : `float`
        TAI seconds since 1970-01-01.

    Returns
    -------
    utc : `float`
        UTC as unix seconds; this is what ``private_efdStamp`` holds.

    Raises
    ------
    ValueError
        If ``tai`` is before 1972-01-01.
    """
    return tai - _offset_at(_TAI_STARTS, tai)


def current_tai() -> float:
    """Return the current time as TAI seconds.

    Returns
    -------
    tai : `float`
        TAI seconds since 1970-01-01: the system UTC clock plus the leap
        seconds in force.
    """
    return tai_from_utc(time.time())
