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

"""The command-line entry: argument parsing and a CSC in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lsst.ts.ocps.sal import AckError, Remote, SalRetCode, State
from lsst.ts.ocps.sal.command_line import make_from_cmd_line, make_parser
from lsst.ts.ocps.sal.testing import check_bin_script, set_summary_state
from lsst.ts.ocps.sal.testing_csc import MinimalOcpsCsc
from support.sal import CONFIGS_DIR, STD_TIMEOUT, sal_env  # noqa: F401

GOOD = CONFIGS_DIR / "good"
CSC_ARGV = [sys.executable, "-m", "lsst.ts.ocps.sal.testing_csc"]


class SalIndex(enum.IntEnum):
    LATISS = 1
    RA = 101


@contextlib.asynccontextmanager
async def csc_process(
    argv: list[str], **kwargs: Any
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process with no stdin, killed on exit if it still runs."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, **kwargs
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_parser_options(capsys: pytest.CaptureFixture[str]) -> None:
    parser = make_parser(MinimalOcpsCsc, index=SalIndex)
    args = parser.parse_args(
        ["101", "--state", "enabled", "--override", "fast.yaml", "--simulate"]
    )
    assert (args.index, args.state, args.override, args.simulate) == (
        101,
        "enabled",
        "fast.yaml",
        1,
    )
    assert parser.parse_args(["1"]).simulate == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["2"])
    with pytest.raises(SystemExit):
        parser.parse_args(["1", "--state", "fault"])
    with pytest.raises(SystemExit) as excinfo:
        parser.parse_args(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out.strip() == "test"


@pytest.mark.usefixtures("sal_env")
async def test_make_from_cmd_line() -> None:
    csc = make_from_cmd_line(
        MinimalOcpsCsc,
        index=True,
        argv=["7", "--configdir", str(GOOD), "--simulate", "--loglevel", "10"],
    )
    try:
        assert csc.salinfo.index == 7
        assert csc.simulation_mode == 1
        assert csc.config_dir == GOOD.resolve()
        assert csc.check_if_duplicate
        assert csc.log.level == 10
    finally:
        await csc.close()
        # The "OCPS" logger is process-wide; leave it as other tests expect.
        csc.log.setLevel(logging.NOTSET)
    with pytest.raises(SystemExit):
        make_from_cmd_line(MinimalOcpsCsc, index=True, argv=["0"])


@pytest.mark.usefixtures("kafka_env")
async def test_check_bin_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSST_SITE", "test")
    await check_bin_script(
        "OCPS",
        11,
        CSC_ARGV,
        cmdline_args=["--configdir", str(GOOD)],
        timeout=STD_TIMEOUT * 2,
    )
    await check_bin_script(
        "OCPS",
        12,
        CSC_ARGV,
        initial_state=State.ENABLED,
        override="fast.yaml",
        cmdline_args=["--configdir", str(GOOD)],
        timeout=STD_TIMEOUT * 2,
    )


@pytest.mark.usefixtures("kafka_env")
async def test_csc_process_over_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSST_SITE", "test")
    argv = CSC_ARGV + ["13", "--configdir", str(GOOD)]
    async with csc_process(argv) as process:
        async with Remote(None, "OCPS", index=13) as remote:
            data = await remote.evt_summaryState.next(
                flush=False, timeout=STD_TIMEOUT * 2
            )
            assert data.summaryState == State.STANDBY
            assert data.private_origin == process.pid
            await set_summary_state(remote, State.ENABLED, override="fast.yaml")

            ack = await remote.cmd_execute.set_start(
                pipeline="p.yaml", wait_done=False, timeout=STD_TIMEOUT
            )
            assert ack.ack == SalRetCode.CMD_INPROGRESS
            job_id = json.loads(ack.result)["job_id"]
            final = await remote.cmd_execute.next_ackcmd(ack, timeout=STD_TIMEOUT)
            assert final.ack == SalRetCode.CMD_COMPLETE
            result = await remote.evt_job_result.next(flush=False, timeout=STD_TIMEOUT)
            assert json.loads(result.result)["jobId"] == job_id

            with pytest.raises(AckError, match="not allowed in state"):
                await remote.cmd_start.set_start(timeout=STD_TIMEOUT)
            await set_summary_state(remote, State.OFFLINE)
        assert await asyncio.wait_for(process.wait(), STD_TIMEOUT) == 0


@pytest.mark.usefixtures("kafka_env")
async def test_second_process_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LSST_SITE", "test")
    argv = CSC_ARGV + ["14", "--configdir", str(GOOD)]
    async with csc_process(argv) as first:
        async with Remote(None, "OCPS", index=14) as remote:
            await remote.evt_heartbeat.next(flush=False, timeout=STD_TIMEOUT * 2)
            async with csc_process(argv, stderr=asyncio.subprocess.PIPE) as second:
                _, stderr = await asyncio.wait_for(
                    second.communicate(), STD_TIMEOUT * 2
                )
                assert second.returncode != 0
                assert b"found another instance" in stderr
            await set_summary_state(remote, State.OFFLINE)
        assert await asyncio.wait_for(first.wait(), STD_TIMEOUT) == 0


@pytest.mark.usefixtures("kafka_env")
async def test_sigterm_closes_the_csc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSST_SITE", "test")
    argv = CSC_ARGV + ["15", "--configdir", str(GOOD)]
    async with csc_process(argv, stderr=asyncio.subprocess.PIPE) as process:
        async with Remote(None, "OCPS", index=15) as remote:
            data = await remote.evt_summaryState.next(
                flush=False, timeout=STD_TIMEOUT * 2
            )
            assert data.summaryState == State.STANDBY
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), STD_TIMEOUT)
            assert process.returncode == 0
            assert b"Signal received; closing" in stderr
            assert b"Traceback" not in stderr
            # No OFFLINE summaryState on a signal.
            with pytest.raises(TimeoutError):
                await remote.evt_summaryState.next(flush=False, timeout=1)
