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


"""Tests of the log endpoint: its file helpers and large logs."""

import pathlib

import aiohttp
import pytest
from lsst.ts.ocps.rest.logs import _tail_offset
from support.rest import RestServer


@pytest.mark.parametrize(
    "content, lines, expected",
    [
        (b"a\nb\nc\n", 0, b""),
        (b"a\nb\nc", 0, b""),
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\nc", 5, b"a\nb\nc"),
        (b"", 3, b""),
    ],
)
def test_tail_offset(
    tmp_path: pathlib.Path, content: bytes, lines: int, expected: bytes
) -> None:
    # A last line without its newline counts as a line; tail=0 is nothing,
    # whether or not the file ends with a newline.
    path = tmp_path / "stdout.log"
    path.write_bytes(content)
    assert content[_tail_offset(path, lines) :] == expected


def test_tail_offset_across_blocks(tmp_path: pathlib.Path) -> None:
    # The file is read backwards in 64 KiB blocks; a tail that spans more
    # than one block must still start exactly at a line.
    text = "".join(f"line {i:06d}\n" for i in range(20000)).encode()
    path = tmp_path / "stdout.log"
    path.write_bytes(text)
    offset = _tail_offset(path, 12000)
    assert text[offset:].count(b"\n") == 12000
    assert text[offset:].startswith(b"line 008000\n")


async def test_large_log_whole_and_tail(
    rest_server: RestServer, rest_api: aiohttp.ClientSession
) -> None:
    # About 1.2 MB of output: more than one chunk of the streamed reply.
    count = 100000
    job = await rest_server.manager.submit("lines", {"count": count})
    await rest_server.manager.wait_terminal(job.job_id)
    expected = "".join(f"line {i}\n" for i in range(count))
    assert len(expected) > 2**20

    async with rest_api.get(f"job/{job.job_id}/log") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        assert await response.text() == expected
    async with rest_api.get(f"job/{job.job_id}/log", params={"tail": "2"}) as response:
        assert await response.text() == f"line {count - 2}\nline {count - 1}\n"

    # HEAD is not in the OpenAPI document, so a plain session asks.
    async with aiohttp.ClientSession() as session:
        url = f"{rest_server.api_url}/job/{job.job_id}/log"
        async with session.head(url) as response:
            assert response.status == 200
            assert await response.read() == b""
