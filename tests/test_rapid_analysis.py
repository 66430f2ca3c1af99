"""Tests of the rapid-analysis Redis backend against a real redis-server."""

import json
import logging

import pytest
import redis.asyncio
from lsst.ts.ocps import ParameterError
from lsst.ts.ocps.csc.rapid_analysis import (
    RapidAnalysisBackend,
    RedisSettings,
    parse_work_items,
)


@pytest.fixture
async def redis_client(redis_server: dict[str, str]):
    client = redis.asyncio.Redis(
        host=redis_server["REDIS_HOST"],
        port=int(redis_server["REDIS_PORT"]),
        password=redis_server["REDIS_PASSWORD"],
    )
    await client.flushall()
    yield client
    await client.aclose()


def test_settings_from_environment() -> None:
    settings = RedisSettings.from_environment(
        {"REDIS_HOST": "h", "REDIS_PORT": "1234", "REDIS_PASSWORD": "pw"}
    )
    assert settings == RedisSettings(host="h", port=1234, password="pw")
    assert RedisSettings.from_environment({"REDIS_HOST": "h"}).port == 6379
    with pytest.raises(RuntimeError, match="REDIS_HOST"):
        RedisSettings.from_environment({})
    with pytest.raises(RuntimeError, match="REDIS_PORT='x' is not an integer"):
        RedisSettings.from_environment({"REDIS_HOST": "h", "REDIS_PORT": "x"})


@pytest.mark.parametrize(
    "config, match",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "non-empty JSON object"),
        ("{}", "non-empty JSON object"),
        ('{"": "x"}', "empty Redis key"),
        ('{"k": {"a": 1}}', "must be a string or a number"),
        ('{"k": true}', "must be a string or a number"),
    ],
)
def test_parse_work_items_rejects(config: str, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        parse_work_items(config)


async def test_push(redis_server: dict[str, str], redis_client) -> None:
    backend = RapidAnalysisBackend(
        RedisSettings.from_environment(redis_server), logging.getLogger("test")
    )
    try:
        await backend.ping()
        config = json.dumps(
            {
                "LSSTComCam-FROM-OCS_DONUTPAIR": "intra,extra",
                "LSSTCam-FROM-OCS_CWFSIMAGE": 2026120300012,
            }
        )
        pushed = await backend.push(config)
        assert pushed == {
            "LSSTComCam-FROM-OCS_DONUTPAIR": "intra,extra",
            "LSSTCam-FROM-OCS_CWFSIMAGE": "2026120300012",
        }
        await backend.push('{"LSSTComCam-FROM-OCS_DONUTPAIR": "a,b"}')
        assert await redis_client.lrange("LSSTComCam-FROM-OCS_DONUTPAIR", 0, -1) == [
            b"a,b",
            b"intra,extra",
        ]

        with pytest.raises(ParameterError):
            await backend.push("{bad")
        assert await redis_client.llen("LSSTComCam-FROM-OCS_DONUTPAIR") == 2
    finally:
        await backend.close()


async def test_wrong_password(redis_server: dict[str, str]) -> None:
    settings = RedisSettings(
        host=redis_server["REDIS_HOST"],
        port=int(redis_server["REDIS_PORT"]),
        password="wrong",
    )
    backend = RapidAnalysisBackend(settings, logging.getLogger("test"))
    try:
        with pytest.raises(ConnectionError, match="cannot reach Redis"):
            await backend.ping()
    finally:
        await backend.close()
