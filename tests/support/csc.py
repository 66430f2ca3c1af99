"""OCPS CSC test helpers: environment, harness factory, client flows."""

from __future__ import annotations

__all__ = [
    "CONFIGS_DIR",
    "STD_TIMEOUT",
    "ExecuteFlow",
    "csc_env",
    "make_ocps",
    "next_job_result",
    "run_execute",
    "start_execute",
]

import contextlib
import dataclasses
import json
import os
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from lsst.ts.ocps import sal
from lsst.ts.ocps.csc.ocps_csc import OcpsCsc
from lsst.ts.ocps.sal.testing import CscHarness, make_test_subname

from .sal import make_quick_harness

DATA_DIR = pathlib.Path(__file__).parent.parent / "data"
CONFIGS_DIR = DATA_DIR / "csc_configs"
"""Config sets of the CSC tests, one directory per case."""

STD_TIMEOUT = 60.0
"""Seconds to wait for an expected ack or event."""


@pytest.fixture
def csc_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[str]:
    """``LSST_SITE=test``, a fresh state dir and topic subname.

    The transport is whatever the environment selects: tests that want
    the broker request ``kafka_env`` (or ``any_transport_env``) first;
    otherwise the broker address is cleared so the in-process bus is used.
    Yields the transport name.
    """
    monkeypatch.setenv("LSST_SITE", "test")
    monkeypatch.setenv("OCPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("OCPS_API_TOKEN", raising=False)
    if os.environ.get("LSST_KAFKA_BROKER_ADDR"):
        yield "kafka"
        return
    monkeypatch.setenv("LSST_TOPIC_SUBNAME", make_test_subname())
    yield "inprocess"


@contextlib.asynccontextmanager
async def make_ocps(
    index: int = 1,
    initial_state: sal.State | None = None,
    config_dir: pathlib.Path | None = None,
    simulation_mode: int = 0,
    **kwargs: Any,
) -> AsyncIterator[CscHarness]:
    """An `OcpsCsc` (config set ``good`` by default) and a Remote."""
    async with make_quick_harness(
        OcpsCsc,
        index=index,
        initial_state=initial_state,
        config_dir=CONFIGS_DIR / "good" if config_dir is None else config_dir,
        simulation_mode=simulation_mode,
        timeout=STD_TIMEOUT,
        **kwargs,
    ) as harness:
        yield harness


@dataclasses.dataclass
class ExecuteFlow:
    """What a calibration script sees of one ``execute``."""

    job_id: str
    first_ack: sal.Sample
    final_ack: sal.Sample | None = None
    job_result: sal.Sample | None = None

    @property
    def result(self) -> dict[str, Any]:
        assert self.job_result is not None
        return json.loads(self.job_result.result)


async def start_execute(
    remote: sal.Remote, timeout: float = STD_TIMEOUT, **fields: str
) -> ExecuteFlow:
    """``set_start(wait_done=False)``; check the first ack carries the id."""
    ack = await remote.cmd_execute.set_start(wait_done=False, timeout=timeout, **fields)
    assert ack.ack == sal.SalRetCode.CMD_INPROGRESS, ack
    job_id = json.loads(ack.result)["job_id"]
    assert ack.result == json.dumps({"job_id": job_id})
    assert ack.timeout > 0
    return ExecuteFlow(job_id=job_id, first_ack=ack)


async def next_job_result(
    remote: sal.Remote, job_id: str, timeout: float = STD_TIMEOUT
) -> sal.Sample:
    """Read job_result events until one has ``jobId == job_id``."""
    while True:
        data = await remote.evt_job_result.next(flush=False, timeout=timeout)
        if json.loads(data.result)["jobId"] == job_id:
            return data


async def run_execute(
    remote: sal.Remote, timeout: float = STD_TIMEOUT, **fields: str
) -> ExecuteFlow:
    """The whole client flow of a calibration script, as in §6.1."""
    flow = await start_execute(remote, timeout=timeout, **fields)
    flow.final_ack = await remote.cmd_execute.next_ackcmd(
        flow.first_ack, timeout=timeout
    )
    flow.job_result = await next_job_result(remote, flow.job_id, timeout=timeout)
    assert flow.job_result.job_id == flow.job_id
    return flow
