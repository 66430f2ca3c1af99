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

"""The CSC framework: states, transitions, start-up events, faults, logs."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from lsst.ts.ocps import sal
from lsst.ts.ocps.sal import AckError, ExpectedError, SalRetCode, State
from lsst.ts.ocps.sal.testing import make_csc
from lsst.ts.ocps.sal.testing_csc import MinimalOcpsCsc
from support.sal import (  # noqa: F401
    CONFIGS_DIR,
    STD_TIMEOUT,
    make_harness,
    next_log_message,
    sal_any_env,
    sal_env,
)

GOOD = CONFIGS_DIR / "good"


@pytest.mark.usefixtures("sal_any_env")
async def test_standard_state_transitions() -> None:
    async with make_harness() as harness:
        await harness.assert_next_summary_state(State.STANDBY)
        await harness.check_standard_state_transitions(
            enabled_commands=("execute", "abort_job")
        )
        assert harness.csc.summary_state == State.OFFLINE
        await asyncio.wait_for(harness.csc.done_task, STD_TIMEOUT)


@pytest.mark.parametrize(
    "command, fields, result",
    [
        ("enable", {}, "Failed: enable not allowed in state <State.STANDBY: 5>"),
        ("disable", {}, "Failed: disable not allowed in state <State.STANDBY: 5>"),
        ("standby", {}, "Failed: standby not allowed in state <State.STANDBY: 5>"),
        (
            "execute",
            {"pipeline": "a.yaml"},
            "Failed: execute not allowed in state=<State.STANDBY: 5>",
        ),
        (
            "abort_job",
            {"job_id": "x"},
            "Failed: abort_job not allowed in state=<State.STANDBY: 5>",
        ),
    ],
)
@pytest.mark.usefixtures("sal_env")
async def test_refused_command_text(command: str, fields: dict, result: str) -> None:
    async with make_harness() as harness:
        with pytest.raises(AckError) as excinfo:
            await getattr(harness.remote, f"cmd_{command}").set_start(
                timeout=STD_TIMEOUT, **fields
            )
        ack = excinfo.value.ackcmd
        assert ack.ack == SalRetCode.CMD_FAILED
        assert ack.error == 1
        assert ack.result == result
        assert ack.identity == harness.remote.salinfo.identity
        assert ack.origin == harness.remote.salinfo.origin
        assert harness.csc.summary_state == State.STANDBY


@pytest.mark.usefixtures("sal_any_env")
async def test_start_up_events_in_order() -> None:
    async with make_harness() as harness:
        remote = harness.remote
        log_level = await harness.assert_next_sample(
            remote.evt_logLevel, level=logging.INFO, subsystem=""
        )
        beat = await harness.assert_next_sample(remote.evt_heartbeat, heartbeat=False)
        mode = await harness.assert_next_sample(remote.evt_simulationMode, mode=0)
        versions = await harness.assert_next_sample(
            remote.evt_softwareVersions,
            cscVersion="test",
            xmlVersion=harness.csc.salinfo.component.xml_version,
            salVersion="",
        )
        state = await harness.assert_next_sample(
            remote.evt_summaryState, summaryState=State.STANDBY
        )
        error = await harness.assert_next_sample(
            remote.evt_errorCode, errorCode=0, errorReport="", traceback=""
        )
        available = await harness.assert_next_sample(
            remote.evt_configurationsAvailable,
            overrides="fast.yaml,slow.yaml",
            schemaVersion="v1",
        )
        assert available.url.startswith("file://")
        assert available.url.endswith("/sal_configs/good")
        stamps = [
            data.private_sndStamp
            for data in (log_level, mode, versions, state, error, available)
        ]
        assert stamps == sorted(stamps)
        assert log_level.private_sndStamp <= beat.private_sndStamp
        for data in (log_level, beat, state, available):
            assert data.salIndex == 1
            assert data.private_identity == "OCPS:1"
            assert data.private_revCode != ""
            assert data.private_kafkaStamp == data.private_sndStamp
            assert data.private_efdStamp == pytest.approx(data.private_sndStamp - 37)
            assert data.private_rcvStamp >= data.private_sndStamp


@pytest.mark.usefixtures("sal_env")
async def test_initial_state_enabled() -> None:
    async with make_harness(initial_state=State.ENABLED, override="fast.yaml") as h:
        # make_csc consumed STANDBY and DISABLED; ENABLED is next.
        await h.assert_next_summary_state(State.ENABLED)
        applied = await h.assert_next_sample(h.remote.evt_configurationApplied)
        assert applied.configurations == "_init.yaml,_test.yaml,fast.yaml"
        assert h.csc.config is not None and h.csc.config.label == "fast"
        assert h.csc.summary_state == State.ENABLED


@pytest.mark.usefixtures("sal_env")
async def test_heartbeat() -> None:
    async with make_harness() as harness:
        seq_nums = []
        for _ in range(3):
            data = await harness.assert_next_sample(
                harness.remote.evt_heartbeat, heartbeat=False
            )
            seq_nums.append(data.private_seqNum)
        assert seq_nums == sorted(seq_nums)
        assert len(set(seq_nums)) == 3


@pytest.mark.usefixtures("sal_env")
async def test_log_message_and_set_log_level() -> None:
    async with make_harness() as harness:
        csc, remote = harness.csc, harness.remote
        csc.log.debug("not sent at INFO")
        csc.log.info("hello %s", "world")
        data = await harness.assert_next_sample(
            remote.evt_logMessage, level=logging.INFO, message="hello world"
        )
        assert data.name == "OCPS"
        assert data.functionName == "test_log_message_and_set_log_level"
        assert data.filePath.endswith("test_sal_csc.py")
        assert data.lineNumber > 0
        assert data.traceback == ""

        await remote.cmd_setLogLevel.set_start(level=logging.DEBUG, timeout=STD_TIMEOUT)
        await harness.assert_next_sample(remote.evt_logLevel, level=logging.INFO)
        await harness.assert_next_sample(remote.evt_logLevel, level=logging.DEBUG)
        csc.log.debug("now sent")
        await harness.assert_next_sample(
            remote.evt_logMessage, level=logging.DEBUG, message="now sent"
        )

        try:
            raise ValueError("boom")
        except ValueError:
            csc.log.exception("with traceback")
        data = await harness.assert_next_sample(
            remote.evt_logMessage, level=logging.ERROR, message="with traceback"
        )
        assert "ValueError: boom" in data.traceback


@pytest.mark.usefixtures("sal_any_env")
async def test_fault_and_recovery() -> None:
    async with make_harness(initial_state=State.ENABLED) as harness:
        remote = harness.remote
        await harness.assert_next_summary_state(State.ENABLED)
        await harness.assert_next_sample(remote.evt_errorCode, errorCode=0)

        with pytest.raises(AckError, match="Simulated fault"):
            await remote.cmd_execute.set_start(
                pipeline="fault.yaml", timeout=STD_TIMEOUT
            )
        error = await harness.assert_next_sample(
            remote.evt_errorCode, errorCode=2, errorReport="Simulated fault"
        )
        state = await harness.assert_next_sample(
            remote.evt_summaryState, summaryState=State.FAULT
        )
        assert error.private_sndStamp <= state.private_sndStamp
        critical = await next_log_message(harness, logging.CRITICAL)
        assert critical.message == "Fault! errorCode=2, errorReport='Simulated fault'"

        with pytest.raises(AckError) as excinfo:
            await remote.cmd_execute.set_start(pipeline="a.yaml", timeout=STD_TIMEOUT)
        assert excinfo.value.ackcmd.result == (
            "Failed: execute not allowed in Fault state: errorCode=2, "
            "errorReport='Simulated fault'"
        )
        for command in ("enable", "disable", "start", "exitControl"):
            with pytest.raises(AckError, match="not allowed in state <State.FAULT: 3>"):
                await getattr(remote, f"cmd_{command}").set_start(timeout=STD_TIMEOUT)

        await remote.cmd_standby.set_start(timeout=STD_TIMEOUT)
        await harness.assert_next_summary_state(State.STANDBY)
        await harness.assert_next_sample(
            remote.evt_errorCode, errorCode=0, errorReport=""
        )


@pytest.mark.usefixtures("sal_env")
async def test_assert_enabled_text() -> None:
    async with make_harness() as harness:
        csc = harness.csc
        with pytest.raises(
            ExpectedError, match=r"^Not allowed in state=<State.STANDBY: 5>$"
        ):
            csc.assert_enabled()
        with pytest.raises(ExpectedError, match=r"^execute not allowed in state="):
            csc.assert_enabled("execute")
        await csc.fault(code=7, report="Broken")
        with pytest.raises(
            ExpectedError,
            match=r"^Not allowed in Fault state: errorCode=7, errorReport='Broken'$",
        ):
            csc.assert_enabled()


@pytest.mark.usefixtures("sal_any_env")
async def test_execute_first_ack_in_progress_and_concurrent() -> None:
    async with make_harness(initial_state=State.ENABLED) as harness:
        remote = harness.remote
        acks = await asyncio.gather(
            *[
                remote.cmd_execute.set_start(
                    pipeline=f"p{i}.yaml", config="0.5", wait_done=False, timeout=5
                )
                for i in range(3)
            ]
        )
        job_ids = []
        for i, ack in enumerate(acks):
            assert ack.ack == SalRetCode.CMD_INPROGRESS
            assert ack.timeout == pytest.approx(10.5)
            job_id = json.loads(ack.result)["job_id"]
            assert job_id.startswith(f"p{i}.yaml-")
            job_ids.append(job_id)
        finals = await asyncio.gather(
            *[remote.cmd_execute.next_ackcmd(ack, timeout=STD_TIMEOUT) for ack in acks]
        )
        assert [final.ack for final in finals] == [SalRetCode.CMD_COMPLETE] * 3
        assert [final.result for final in finals] == ["Done"] * 3

        # All three ran at once: every job_id event precedes every result.
        started = [
            await harness.assert_next_sample(
                remote.evt_job_id, event_name="cmd_execute"
            )
            for _ in range(3)
        ]
        results = [
            await harness.assert_next_sample(remote.evt_job_result, exit_code=0)
            for _ in range(3)
        ]
        assert max(d.private_sndStamp for d in started) < min(
            d.private_sndStamp for d in results
        )
        assert {json.loads(d.result)["jobId"] for d in results} == set(job_ids)
        assert {d.seq_num for d in started} == {ack.private_seqNum for ack in acks}

        with pytest.raises(RuntimeError, match="unknown or finished"):
            await remote.cmd_execute.next_ackcmd(acks[0], timeout=1)


@pytest.mark.usefixtures("sal_env")
async def test_abort_job() -> None:
    async with make_harness(initial_state=State.ENABLED) as harness:
        remote = harness.remote
        ack = await remote.cmd_execute.set_start(
            pipeline="long.yaml", config="600", wait_done=False, timeout=STD_TIMEOUT
        )
        job_id = json.loads(ack.result)["job_id"]
        await remote.cmd_abort_job.set_start(job_id=job_id, timeout=STD_TIMEOUT)
        final = await remote.cmd_execute.next_ackcmd(ack, timeout=STD_TIMEOUT)
        assert final.ack == SalRetCode.CMD_COMPLETE
        await harness.assert_next_sample(
            remote.evt_job_result, job_id=job_id, exit_code=255
        )
        with pytest.raises(AckError, match="Unknown job_id='nope'"):
            await remote.cmd_abort_job.set_start(job_id="nope", timeout=STD_TIMEOUT)


@pytest.mark.usefixtures("sal_env")
async def test_failure_acks() -> None:
    async with make_harness(initial_state=State.ENABLED) as harness:
        remote = harness.remote
        with pytest.raises(AckError) as excinfo:
            await remote.cmd_execute.set_start(pipeline="timeout.yaml", timeout=5)
        assert excinfo.value.ackcmd.ack == SalRetCode.CMD_TIMEOUT
        assert excinfo.value.ackcmd.result == "Timeout"
        logged = await next_log_message(harness, logging.ERROR)
        assert "timed out" in logged.message

        with pytest.raises(AckError) as excinfo:
            await remote.cmd_execute.set_start(pipeline="fail.yaml", timeout=5)
        ack = excinfo.value.ackcmd
        assert (ack.ack, ack.error) == (SalRetCode.CMD_FAILED, 1)
        assert ack.result == "Failed: Simulated unexpected failure"
        assert "ackcmd=(ackcmd private_seqNum=" in str(excinfo.value)
        logged = await next_log_message(harness, logging.ERROR)
        assert "RuntimeError: Simulated unexpected failure" in logged.traceback

        # An ExpectedError logs a warning without a traceback.
        with pytest.raises(AckError, match="is not a number"):
            await remote.cmd_execute.set_start(pipeline="a.yaml", config="x", timeout=5)
        logged = await next_log_message(harness, logging.WARNING)
        assert "is not a number" in logged.message
        assert logged.traceback == ""
        assert harness.csc.summary_state == State.ENABLED


@pytest.mark.usefixtures("sal_env")
async def test_simulation_mode() -> None:
    async with make_harness(simulation_mode=1) as harness:
        await harness.assert_next_sample(harness.remote.evt_simulationMode, mode=1)
        assert harness.csc.simulation_mode == 1
    with pytest.raises(ValueError, match="simulation_mode=2 not in"):
        MinimalOcpsCsc(index=1, config_dir=GOOD, simulation_mode=2)


@pytest.mark.usefixtures("sal_env")
async def test_bad_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="must not be FAULT"):
        MinimalOcpsCsc(index=1, config_dir=GOOD, initial_state=State.FAULT)
    with pytest.raises(ValueError, match="index must be non-zero"):
        MinimalOcpsCsc(index=0, config_dir=GOOD)
    with pytest.raises(RuntimeError, match="TS_OCPS_TEST_CONFIG_DIR not defined"):
        MinimalOcpsCsc(index=1)
    monkeypatch.setenv("TS_OCPS_TEST_CONFIG_DIR", str(CONFIGS_DIR))
    with pytest.raises(ValueError, match="is not a directory"):
        MinimalOcpsCsc(index=1)
    monkeypatch.delenv("LSST_SITE")
    with pytest.raises(RuntimeError, match="LSST_SITE"):
        MinimalOcpsCsc(index=1, config_dir=GOOD)


@pytest.mark.usefixtures("sal_env")
async def test_missing_do_method() -> None:
    class Incomplete(sal.BaseCsc):
        async def do_execute(self, data: sal.Sample) -> None:
            pass

    with pytest.raises(TypeError, match="command_abort_job"):
        Incomplete("OCPS", index=1)

    csc = Incomplete("OCPS", index=1, allow_missing_callbacks=True)
    try:
        async with sal.Remote(csc.domain, "OCPS", index=1) as remote:
            await csc.start_task
            with pytest.raises(AckError, match="This command is not supported"):
                await remote.cmd_abort_job.set_start(job_id="x", timeout=STD_TIMEOUT)
    finally:
        await csc.close()


@pytest.mark.usefixtures("sal_env")
async def test_duplicate_instance_refused() -> None:
    async with make_harness(index=5) as harness:
        await harness.assert_next_sample(harness.remote.evt_heartbeat)
        second = MinimalOcpsCsc(
            index=5,
            config_dir=harness.csc.config_dir,
            check_if_duplicate=True,
        )
        with pytest.raises(ExpectedError, match="found another instance"):
            await asyncio.wait_for(second.start_task, STD_TIMEOUT)
        with pytest.raises(ExpectedError):
            await second.done_task
        assert harness.csc.summary_state == State.STANDBY


@pytest.mark.usefixtures("sal_env")
async def test_no_duplicate_starts() -> None:
    csc = MinimalOcpsCsc(
        index=6,
        config_dir=GOOD,
        check_if_duplicate=True,
    )
    try:
        await asyncio.wait_for(csc.start_task, STD_TIMEOUT)
        assert csc.summary_state == State.STANDBY
    finally:
        await csc.close()
    assert csc.done_task.done() and csc.done_task.exception() is None


@pytest.mark.usefixtures("sal_env")
async def test_log_records_before_start_are_buffered() -> None:
    def factory(**kwargs: object) -> MinimalOcpsCsc:
        csc = MinimalOcpsCsc(index=1, **kwargs)  # type: ignore[arg-type]
        csc.log.warning("logged before start")
        return csc

    async with make_csc(factory, config_dir=GOOD) as harness:
        data = await next_log_message(harness, logging.WARNING)
        assert data.message == "logged before start"
