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

"""The rapid-analysis backend of OCPS:101: pushes work items to Redis."""

__all__ = ["RapidAnalysisBackend", "RedisSettings"]

import dataclasses
import json
import logging
import os
from collections.abc import Mapping

import redis.asyncio

from ..exceptions import ParameterError

DEFAULT_REDIS_PORT = 6379
"""Port used when ``REDIS_PORT`` is not set."""


@dataclasses.dataclass(frozen=True)
class RedisSettings:
    """Where the rapid-analysis Redis server is.

    Parameters
    ----------
    host : `str`
        Host name.
    port : `int`
        TCP port.
    password : `str` or `None`
        Password, if the server needs one.
    """

    host: str
    port: int = DEFAULT_REDIS_PORT
    password: str | None = None

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] = os.environ
    ) -> "RedisSettings":
        """Read ``REDIS_HOST``, ``REDIS_PORT`` and ``REDIS_PASSWORD``.

        Raises
        ------
        RuntimeError
            Raised if ``REDIS_HOST`` is unset or ``REDIS_PORT`` is not an
            integer.
        """
        host = environ.get("REDIS_HOST", "")
        if not host:
            raise RuntimeError("environment variable REDIS_HOST is not set")
        port_text = environ.get("REDIS_PORT", "") or str(DEFAULT_REDIS_PORT)
        try:
            port = int(port_text)
        except ValueError:
            raise RuntimeError(
                f"environment variable REDIS_PORT={port_text!r} is not an integer"
            ) from None
        return cls(host=host, port=port, password=environ.get("REDIS_PASSWORD") or None)


def parse_work_items(config: str) -> dict[str, str]:
    """Parse the ``config`` field of an ``execute`` command for index 101.

    Parameters
    ----------
    config : `str`
        A JSON object mapping Redis list keys to string values, e.g.
        ``{"LSSTCam-FROM-OCS_CWFSIMAGE": "1234"}``.

    Returns
    -------
    items : `dict` [`str`, `str`]
        The key/value pairs, in order.

    Raises
    ------
    ParameterError
        Raised if ``config`` is not a non-empty JSON object of non-empty
        string keys and string or number values.
    """
    try:
        data = json.loads(config)
    except json.JSONDecodeError as e:
        raise ParameterError(f"config is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not data:
        raise ParameterError("config must be a non-empty JSON object of key: value")

    items: dict[str, str] = {}
    for key, value in data.items():
        if not key:
            raise ParameterError("config has an empty Redis key")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ParameterError(
                f"config value for {key!r} must be a string or a number, not {value!r}"
            )
        items[key] = str(value)
    return items


class RapidAnalysisBackend:
    """Hands work to Rapid Analysis by LPUSHing to Redis lists.

    Parameters
    ----------
    settings : `RedisSettings`
        Where Redis is.
    log : `logging.Logger`
        Logger to use.
    """

    def __init__(self, settings: RedisSettings, log: logging.Logger) -> None:
        self.settings = settings
        self.log = log.getChild("rapid_analysis")
        self._client = redis.asyncio.Redis(
            host=settings.host,
            port=settings.port,
            password=settings.password,
            socket_connect_timeout=5,
            socket_timeout=5,
        )

    async def ping(self) -> None:
        """Check that Redis answers.

        Raises
        ------
        ConnectionError
            Raised if Redis cannot be reached or refuses the password.
        """
        try:
            await self._client.ping()
        except redis.RedisError as e:
            raise ConnectionError(
                f"cannot reach Redis at {self.settings.host}:{self.settings.port}: {e}"
            ) from e

    async def push(self, config: str) -> dict[str, str]:
        """Push each key/value pair of ``config`` onto its Redis list.

        Parameters
        ----------
        config : `str`
            The ``execute`` command's ``config`` field; see
            `parse_work_items`.

        Returns
        -------
        items : `dict` [`str`, `str`]
            What was pushed.

        Raises
        ------
        ParameterError
            Raised if ``config`` is invalid; nothing is pushed then.
        ConnectionError
            Raised if Redis fails; pairs before the failing one stay pushed.
        """
        items = parse_work_items(config)
        for key, value in items.items():
            try:
                await self._client.lpush(key, value)
            except redis.RedisError as e:
                raise ConnectionError(f"LPUSH {key!r} failed: {e}") from e
            self.log.info(f"pushed key={key!r} value={value!r}")
        return items

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
