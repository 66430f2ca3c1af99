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


"""Tests of the REST client against a real server on loopback."""

import pytest
from lsst.ts.ocps.rest.client import ClientError, OcpsClient
from support.rest import RestServer


async def test_unsendable_names_refused(rest_server: RestServer) -> None:
    # "." and ".." would be resolved away by the URL, so the call would
    # reach another resource; the client refuses them before sending.
    async with OcpsClient(rest_server.url) as client:
        for name in ("", ".", ".."):
            with pytest.raises(ClientError, match="not a valid job id") as info:
                await client.get(name)
            assert info.value.status is None
            with pytest.raises(ClientError, match="not a valid job id"):
                await client.schema(name)
        # A "/" stays inside its segment and reaches the server as data.
        with pytest.raises(ClientError, match="invalid job id") as info:
            await client.get("a/b")
        assert info.value.status == 400
        with pytest.raises(ClientError, match="a/b") as info:
            await client.schema("a/b")
        assert info.value.status == 404
