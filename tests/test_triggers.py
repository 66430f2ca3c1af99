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


"""Tests of the data-arrival trigger on a real file system."""

import asyncio
import itertools
import logging
import pathlib
from collections.abc import Iterator

import pytest
from lsst.ts.ocps.exceptions import ParameterError
from lsst.ts.ocps.jobs.triggers import (
    check_patterns,
    match_patterns,
    nearest_directory,
    wait_for_paths,
)

STD_TIMEOUT = 30
"""Seconds a test waits for something that should happen much sooner."""

_logger_numbers = itertools.count()


class Recorder(logging.Handler):
    """Keep the messages of a logger and wake waiters on each one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.event.set()

    async def wait_for(self, text: str) -> None:
        """Wait until a message equal to ``text`` has been logged."""
        while text not in self.messages:
            self.event.clear()
            await self.event.wait()


@pytest.fixture
def recorder() -> Iterator[logging.Logger]:
    """A logger of its own whose only handler is a `Recorder`."""
    log = logging.getLogger(f"ocps.test_triggers.{next(_logger_numbers)}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = Recorder()
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)


def recorder_of(log: logging.Logger) -> Recorder:
    handler = log.handlers[0]
    assert isinstance(handler, Recorder)
    return handler


async def test_files_already_there(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.fits").write_text("a")
    (tmp_path / "b.fits").write_text("b")
    (tmp_path / "c.txt").write_text("c")
    before = asyncio.all_tasks()
    paths = await wait_for_paths(
        [str(tmp_path / "*.fits"), str(tmp_path / "a.fits")], timeout=0
    )
    assert paths == [tmp_path / "a.fits", tmp_path / "b.fits"]
    assert asyncio.all_tasks() == before
    assert await wait_for_paths([], timeout=1) == []


async def test_file_created_later(
    tmp_path: pathlib.Path, recorder: logging.Logger
) -> None:
    target = tmp_path / "raw.fits"
    waiter = asyncio.create_task(
        wait_for_paths([str(target)], 0, log=recorder, job_id="j1")
    )
    await recorder_of(recorder).wait_for(f"job_id=j1 watching {tmp_path}")
    assert not waiter.done()

    target.write_text("data")
    assert await asyncio.wait_for(waiter, STD_TIMEOUT) == [target]


async def test_directories_created_later(
    tmp_path: pathlib.Path, recorder: logging.Logger
) -> None:
    # Each level appears only once the watcher has moved down to its parent.
    records = recorder_of(recorder)
    target = tmp_path / "2026" / "12" / "03" / "raw.fits"
    waiter = asyncio.create_task(
        wait_for_paths([str(target)], STD_TIMEOUT, log=recorder)
    )
    await records.wait_for(f"watching {tmp_path}")
    directory = tmp_path
    for name in ("2026", "12", "03"):
        directory = directory / name
        directory.mkdir()
        await records.wait_for(f"watching {directory}")
        assert not waiter.done()
    target.write_text("data")
    assert await asyncio.wait_for(waiter, STD_TIMEOUT) == [target]


async def test_directory_tree_created_at_once(
    tmp_path: pathlib.Path, recorder: logging.Logger
) -> None:
    # A whole tree and the file appear between two looks of the watcher.
    target = tmp_path / "a" / "b" / "c" / "raw.fits"
    waiter = asyncio.create_task(wait_for_paths([str(target)], 0, log=recorder))
    await recorder_of(recorder).wait_for(f"watching {tmp_path}")
    target.parent.mkdir(parents=True)
    target.write_text("data")
    assert await asyncio.wait_for(waiter, STD_TIMEOUT) == [target]


async def test_glob_patterns(tmp_path: pathlib.Path, recorder: logging.Logger) -> None:
    records = recorder_of(recorder)
    patterns = [
        str(tmp_path / "night" / "*" / "raw_[0-9].fits"),
        str(tmp_path / "deep" / "**" / "*.json"),
    ]
    (tmp_path / "night").mkdir()
    (tmp_path / "deep").mkdir()
    waiter = asyncio.create_task(wait_for_paths(patterns, 0, log=recorder))
    await records.wait_for(
        f"watching {tmp_path / 'deep'}, {tmp_path / 'night'} recursively"
    )

    # Files that do not match, and a directory that does, change nothing.
    (tmp_path / "night" / "exp1").mkdir()
    (tmp_path / "night" / "exp1" / "raw_x.fits").write_text("no")
    (tmp_path / "night" / "exp1" / "raw_7.fits.tmp").write_text("no")
    (tmp_path / "deep" / "dir.json").mkdir()
    (tmp_path / "night" / "exp1" / "raw_1.fits").write_text("yes")
    (tmp_path / "deep" / "x" / "y").mkdir(parents=True)
    (tmp_path / "deep" / "x" / "y" / "result.json").write_text("yes")

    paths = await asyncio.wait_for(waiter, STD_TIMEOUT)
    assert paths == [
        tmp_path / "deep" / "x" / "y" / "result.json",
        tmp_path / "night" / "exp1" / "raw_1.fits",
    ]


async def test_directory_does_not_match(
    tmp_path: pathlib.Path, recorder: logging.Logger
) -> None:
    (tmp_path / "raw.fits").mkdir()
    with pytest.raises(TimeoutError):
        await wait_for_paths([str(tmp_path / "raw.fits")], 0.2, log=recorder)
    assert match_patterns([str(tmp_path / "raw.fits")]) is None


async def test_timeout_names_what_is_missing(tmp_path: pathlib.Path) -> None:
    (tmp_path / "here.txt").write_text("x")
    missing = str(tmp_path / "later" / "*.txt")
    before = asyncio.all_tasks()
    with pytest.raises(TimeoutError) as excinfo:
        await wait_for_paths([str(tmp_path / "here.txt"), missing], timeout=0.3)
    assert str(excinfo.value) == f"no file matched {missing!r} within 0.3 s"
    assert asyncio.all_tasks() == before


async def test_cancel_leaves_nothing_behind(
    tmp_path: pathlib.Path, recorder: logging.Logger
) -> None:
    records = recorder_of(recorder)
    (tmp_path / "deep").mkdir()
    before = asyncio.all_tasks()
    waiter = asyncio.create_task(
        wait_for_paths(
            [str(tmp_path / "deep" / "**" / "x"), str(tmp_path / "flat" / "y")],
            0,
            log=recorder,
        )
    )
    await records.wait_for(f"watching {tmp_path / 'deep'} recursively")
    await records.wait_for(f"watching {tmp_path}")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert asyncio.all_tasks() == before


@pytest.mark.parametrize(
    "patterns, message",
    [
        (["data/*.fits"], "wait_for pattern 'data/*.fits' is not absolute"),
        ([""], "wait_for pattern '' is not absolute"),
        (["/data/../etc/passwd"], "wait_for pattern '/data/../etc/passwd' has a '..'"),
        (["/"], "wait_for pattern '/' names no file"),
        (["/data/"], "wait_for pattern '/data/' names no file"),
        (["/data/a\0b"], "wait_for pattern '/data/a\\x00b' has a NUL character"),
        ([3], "wait_for pattern 3 is not a string"),
        ("/data/x", "wait_for must be a list of patterns, not the string '/data/x'"),
    ],
)
async def test_bad_patterns(patterns: list[str], message: str) -> None:
    with pytest.raises(ParameterError) as excinfo:
        check_patterns(patterns)
    assert str(excinfo.value).startswith(message)
    with pytest.raises(ParameterError):
        await wait_for_paths(patterns, timeout=1)


@pytest.mark.parametrize("yields", range(6))
async def test_file_created_while_arming(tmp_path: pathlib.Path, yields: int) -> None:
    # The file appears at every point of the waiter's start-up: before its
    # first look, while the watcher is being armed, or after; it is never
    # missed (a miss would end in TimeoutError).
    for attempt in range(10):
        target = tmp_path / f"{attempt}.fits"
        waiter = asyncio.create_task(wait_for_paths([str(target)], STD_TIMEOUT))
        for _ in range(yields):
            await asyncio.sleep(0)
        target.write_text("x")
        assert await waiter == [target]


def test_nearest_directory(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "file").write_text("x")
    assert nearest_directory(tmp_path / "a") == tmp_path / "a"
    assert nearest_directory(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    # A file is not a directory to watch: its directory is.
    assert nearest_directory(tmp_path / "a" / "file" / "d") == tmp_path / "a"
    assert nearest_directory(pathlib.Path("/no/such/dir")) == pathlib.Path("/")
