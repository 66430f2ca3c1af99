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

"""TAI clock helpers: leap-second table and conversions."""

import calendar
import time

import pytest
from lsst.ts.ocps.sal import tai


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> float:
    return float(calendar.timegm((y, m, d, hh, mm, ss)))


def test_current_tai_is_utc_plus_37() -> None:
    before = time.time()
    now = tai.current_tai()
    after = time.time()
    assert before + 37 <= now <= after + 37


def test_leap_second_boundaries() -> None:
    assert tai.tai_minus_utc(utc(2016, 12, 31, 23, 59, 59)) == 36
    assert tai.tai_minus_utc(utc(2017, 1, 1)) == 37
    assert tai.tai_minus_utc(utc(1972, 1, 1)) == 10
    assert tai.tai_minus_utc(utc(2030, 6, 1)) == 37
    with pytest.raises(ValueError, match="before 1972"):
        tai.tai_minus_utc(utc(1971, 12, 31))


def test_round_trip() -> None:
    for t in (utc(1990, 5, 5), utc(2016, 12, 31, 23, 59, 59), utc(2017, 1, 1), 1.7e9):
        assert tai.utc_from_tai(tai.tai_from_utc(t)) == t
    # The efdStamp of the worked example in the wire spec.
    assert tai.utc_from_tai(1.7e9) == 1.7e9 - 37


def test_table_is_ordered() -> None:
    starts = [start for start, _ in tai.LEAP_SECONDS]
    offsets = [offset for _, offset in tai.LEAP_SECONDS]
    assert starts == sorted(starts)
    assert offsets == list(range(10, 38))
