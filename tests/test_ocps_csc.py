"""Tests of the OCPS CSC: state machine, execute/abort_job client flows."""

import asyncio
import datetime
import json
import pathlib

import aiohttp
import pytest
from lsst.ts.ocps import sal
from lsst.ts.ocps.csc.ocps_csc import OcpsCsc
from lsst.ts.ocps.models import ExecutionPhase
from support.csc import (
    STD_TIMEOUT,
    csc_env,
    make_ocps,
    next_job_result,
    run_execute,
    start_execute,
)

__all__ = ["csc_env"]

ENABLED = sal.State.ENABLED


@pytest.fixture
def transport(any_transport_env: str, csc_env: str) -> str:
    """Run the test on the in-process transport and on the broker."""
    return csc_env


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_standard_state_transitions(transport: str) -> None:
    async with make_ocps() as harness:
        await harness.assert_next_summary_state(sal.State.STANDBY)
        await harness.check_standard_state_transitions(
            enabled_commands=("execute", "abort_job")
        )


async def test_execute_success(transport: str) -> None:
    async with make_ocps(initial_state=ENABLED) as harness:
        csc, remote = harness.csc, harness.remote
        assert isinstance(csc, OcpsCsc)
        flow = await run_execute(
            remote,
            pipeline="${CP_PIPE_DIR}/pipelines/LATISS/cpBias.yaml#isr",
            version="",
            config="-j 2 --register-dataset-types",
            data_query="sleep=0.2",
            output_dataset_types="cpBias*, *Stats",
        )
        assert flow.final_ack is not None
        assert flow.final_ack.ack == sal.SalRetCode.CMD_COMPLETE
        assert flow.job_result is not None
        assert flow.job_result.exit_code == 0

        result = flow.result
        assert result["jobId"] == result["job_id"] == flow.job_id
        assert result["phase"] == "completed"
        assert result["runId"] == str(flow.first_ack.private_seqNum)
        assert result["errorSummary"] == {"message": ""}
        assert [item["id"] for item in result["results"]] == ["output.out"]
        parameters = result["parameters"]
        assert (
            parameters["pipeline"] == "${CP_PIPE_DIR}/pipelines/LATISS/cpBias.yaml#isr"
        )
        assert parameters["config"] == "-j 2 --register-dataset-types"
        assert parameters["output_dataset_types"] == "cpBias*,*Stats"
        assert parameters["butler"] == "/repo/test/LATISS"
        assert parameters["input_collection"] == "LATISS/defaults"
        assert {"name": "BUTLER_REPO", "value": "/repo/test/LATISS"} in parameters[
            "environment"
        ]
        assert parameters["command"][-2:] == [parameters["pipeline"], "sleep=0.2"]
        for key in ("creationTime", "startTime", "endTime", "destruction"):
            assert parse_time(result[key])
        assert result["jobInfo"]["result"]["pipeline"] == parameters["pipeline"]

        job_id_event = await harness.assert_next_sample(
            remote.evt_job_id, event_name="cmd_execute", job_id=flow.job_id
        )
        assert job_id_event.seq_num == flow.first_ack.private_seqNum

        # Reported (published, then journaled) before the final ack.
        assert csc.manager is not None
        assert flow.job_id not in [
            j.job_id for j in await csc.manager.unreported_jobs()
        ]


async def test_execute_failure(transport: str) -> None:
    async with make_ocps(initial_state=ENABLED) as harness:
        flow = await run_execute(harness.remote, pipeline="p.yaml", data_query="exit=3")
        assert flow.final_ack is not None
        assert flow.final_ack.ack == sal.SalRetCode.CMD_COMPLETE
        assert flow.job_result is not None
        assert flow.job_result.exit_code == 3
        assert flow.result["phase"] == "error"
        assert flow.result["exitCode"] == 3
        assert "code 3" in flow.result["errorSummary"]["message"]


async def test_execute_time_limit(transport: str) -> None:
    async with make_ocps(initial_state=ENABLED, override="short_limit.yaml") as harness:
        flow = await run_execute(
            harness.remote, pipeline="p.yaml", data_query="sleep=60"
        )
        assert flow.first_ack.timeout == pytest.approx(1.5 + 60)
        assert flow.final_ack is not None
        assert flow.final_ack.ack == sal.SalRetCode.CMD_COMPLETE
        assert flow.job_result is not None
        assert flow.job_result.exit_code not in (0, 255)
        assert flow.result["phase"] == "error"
        assert "time limit exceeded" in flow.result["errorSummary"]["message"]


async def test_abort_job(transport: str) -> None:
    async with make_ocps(initial_state=ENABLED) as harness:
        remote = harness.remote
        flow = await start_execute(remote, pipeline="p.yaml", data_query="sleep=120")
        ack = await remote.cmd_abort_job.set_start(
            job_id=flow.job_id, timeout=STD_TIMEOUT
        )
        assert ack.ack == sal.SalRetCode.CMD_COMPLETE

        data = await next_job_result(remote, flow.job_id)
        assert data.exit_code == 255
        result = json.loads(data.result)
        assert result["jobId"] == flow.job_id
        assert result["phase"] == "aborted"

        final = await remote.cmd_execute.next_ackcmd(
            flow.first_ack, timeout=STD_TIMEOUT
        )
        assert final.ack == sal.SalRetCode.CMD_COMPLETE

        with pytest.raises(sal.AckError, match="cannot abort job"):
            await remote.cmd_abort_job.set_start(
                job_id=flow.job_id, timeout=STD_TIMEOUT
            )
        with pytest.raises(sal.AckError, match="No such job id"):
            await remote.cmd_abort_job.set_start(job_id="f00d", timeout=STD_TIMEOUT)
        with pytest.raises(sal.AckError, match="job_id is empty"):
            await remote.cmd_abort_job.set_start(job_id=" ", timeout=STD_TIMEOUT)


async def test_simulation(transport: str) -> None:
    async with make_ocps(initial_state=ENABLED, simulation_mode=1) as harness:
        remote = harness.remote
        assert harness.csc.simulator.duration == 0.3
        for pipeline, success in (("true.yaml", True), ("false.yaml", False)):
            flow = await run_execute(remote, pipeline=pipeline)
            assert flow.job_id.startswith(pipeline)
            assert flow.final_ack is not None
            assert flow.final_ack.ack == sal.SalRetCode.CMD_COMPLETE
            assert flow.job_result is not None
            assert flow.job_result.exit_code == 0
            assert flow.result["result"] is success
            assert flow.result["jobId"] == flow.job_id
            assert flow.result["phase"] == "completed"

        with pytest.raises(sal.AckError, match="Unknown \\(simulated\\) pipeline"):
            await remote.cmd_execute.set_start(
                pipeline="other.yaml", timeout=STD_TIMEOUT
            )

        harness.csc.simulator.duration = 120
        flow = await start_execute(remote, pipeline="true.yaml")
        await remote.cmd_abort_job.set_start(job_id=flow.job_id, timeout=STD_TIMEOUT)
        data = await next_job_result(remote, flow.job_id)
        assert data.exit_code == 255
        assert json.loads(data.result)["phase"] == "aborted"
        final = await remote.cmd_execute.next_ackcmd(
            flow.first_ack, timeout=STD_TIMEOUT
        )
        assert final.ack == sal.SalRetCode.CMD_COMPLETE

        harness.csc.simulator.duration = 0.1
        flow = await start_execute(remote, pipeline="fault.yaml")
        with pytest.raises(sal.AckError, match="cannot contact execution service"):
            await remote.cmd_execute.next_ackcmd(flow.first_ack, timeout=STD_TIMEOUT)
        while (
            await remote.evt_errorCode.next(flush=False, timeout=STD_TIMEOUT)
        ).errorCode != 2:
            pass
        assert harness.csc.summary_state == sal.State.FAULT
        data = await next_job_result(remote, flow.job_id)
        assert data.exit_code == 1


async def test_concurrent_executes(transport: str) -> None:
    async with make_ocps(initial_state=ENABLED) as harness:
        remote = harness.remote
        # A long job first: if executes were serialized, none of the
        # following ones could even be acknowledged.
        slow = await start_execute(remote, pipeline="slow.yaml", data_query="sleep=120")
        flows = await asyncio.gather(
            *[
                run_execute(remote, pipeline=f"p{i}.yaml", data_query=f"exit={i}")
                for i in range(4)
            ]
        )
        assert len({flow.job_id for flow in flows} | {slow.job_id}) == 5
        for i, flow in enumerate(flows):
            assert flow.job_result is not None
            assert flow.job_result.exit_code == i, flow.job_result.result
            assert flow.result["parameters"]["pipeline"] == f"p{i}.yaml"

        csc = harness.csc
        assert csc.manager is not None
        job = await csc.manager.get_job(slow.job_id)
        assert job.phase == ExecutionPhase.EXECUTING
        await remote.cmd_abort_job.set_start(job_id=slow.job_id, timeout=STD_TIMEOUT)
        final = await remote.cmd_execute.next_ackcmd(
            slow.first_ack, timeout=STD_TIMEOUT
        )
        assert final.ack == sal.SalRetCode.CMD_COMPLETE


async def test_prerequisites(csc_env: str) -> None:
    async with make_ocps(initial_state=ENABLED) as harness:
        remote, csc = harness.remote, harness.csc
        assert csc.manager is not None
        first = await start_execute(remote, pipeline="a.yaml", data_query="sleep=120")

        # The dependent job is acked at once, HELD in the manager.
        second = await start_execute(
            remote, pipeline="b.yaml", prereq_jobs=f" {first.job_id} "
        )
        job = await csc.manager.get_job(second.job_id)
        assert job.phase == ExecutionPhase.HELD
        assert job.prereq_jobs == [first.job_id]

        await remote.cmd_abort_job.set_start(job_id=first.job_id, timeout=STD_TIMEOUT)
        final = await remote.cmd_execute.next_ackcmd(
            second.first_ack, timeout=STD_TIMEOUT
        )
        assert final.ack == sal.SalRetCode.CMD_COMPLETE
        data = await next_job_result(remote, second.job_id)
        assert data.exit_code == 0, data.result
        first_job = await csc.manager.get_job(first.job_id)
        second_job = await csc.manager.get_job(second.job_id)
        assert first_job.end_time is not None and second_job.start_time is not None
        assert second_job.start_time >= first_job.end_time

        # Rejected requests make no job.
        count = len(await csc.manager.list_jobs())
        with pytest.raises(sal.AckError, match="unknown prerequisite job"):
            await remote.cmd_execute.set_start(
                pipeline="c.yaml", prereq_jobs="0123abcd", timeout=STD_TIMEOUT
            )
        with pytest.raises(sal.AckError, match="is not a job id"):
            await remote.cmd_execute.set_start(
                pipeline="c.yaml", prereq_jobs="../etc", timeout=STD_TIMEOUT
            )
        assert len(await csc.manager.list_jobs()) == count


async def test_execute_bad_fields(csc_env: str) -> None:
    async with make_ocps(initial_state=ENABLED) as harness:
        remote, csc = harness.remote, harness.csc
        assert csc.manager is not None
        with pytest.raises(sal.AckError, match="execute rejected: .*pipeline"):
            await remote.cmd_execute.set_start(data_query="x", timeout=STD_TIMEOUT)
        assert await csc.manager.list_jobs() == []

        # Shell metacharacters are data: they reach the job verbatim.
        nasty = "p.yaml; touch /tmp/ocps_pwned $(id)"
        flow = await run_execute(remote, pipeline=nasty)
        assert flow.result["parameters"]["command"][-2] == nasty
        assert not pathlib.Path("/tmp/ocps_pwned").exists()


async def test_rest_jobs_are_reported(csc_env: str) -> None:
    async with make_ocps(initial_state=ENABLED) as harness:
        remote, csc = harness.remote, harness.csc
        assert isinstance(csc, OcpsCsc) and csc.rest_port
        url = f"http://127.0.0.1:{csc.rest_port}/api/v1/job"
        body = {"type": "fake_pipetask", "config": {"pipeline": "rest.yaml"}}
        async with aiohttp.ClientSession() as session:
            async with session.put(url, json=body) as response:
                assert response.status == 200
                job_id = (await response.json())["job_id"]
        event = await harness.assert_next_sample(
            remote.evt_job_id, event_name="rest", job_id=job_id
        )
        assert event.seq_num == 0
        data = await next_job_result(remote, job_id)
        assert data.exit_code == 0, data.result
        assert json.loads(data.result)["parameters"]["pipeline"] == "rest.yaml"

        # Only one job_result for it: none up to that of a later job.
        flow = await start_execute(remote, pipeline="after.yaml")
        seen = []
        while not seen or seen[-1] != flow.job_id:
            data = await remote.evt_job_result.next(flush=False, timeout=STD_TIMEOUT)
            seen.append(json.loads(data.result)["jobId"])
        assert job_id not in seen


async def test_jobs_continue_outside_enabled(csc_env: str) -> None:
    async with make_ocps(initial_state=ENABLED) as harness:
        remote, csc = harness.remote, harness.csc
        assert csc.manager is not None
        flow = await start_execute(remote, pipeline="p.yaml", data_query="sleep=120")
        queued = await start_execute(remote, pipeline="q.yaml", prereq_jobs=flow.job_id)

        await remote.cmd_disable.set_start(timeout=STD_TIMEOUT)
        with pytest.raises(sal.AckError, match="execute not allowed in state"):
            await remote.cmd_execute.set_start(pipeline="x.yaml", timeout=STD_TIMEOUT)
        await remote.cmd_standby.set_start(timeout=STD_TIMEOUT)
        await csc.fault(code=1, report="test fault")
        job = await csc.manager.wait_for_change(
            flow.job_id, ExecutionPhase.QUEUED, timeout=STD_TIMEOUT
        )
        assert job.phase == ExecutionPhase.EXECUTING
        assert (await csc.manager.get_job(queued.job_id)).phase == ExecutionPhase.HELD

        # Still tracked: aborting it over REST reaches both pending commands.
        url = f"http://127.0.0.1:{csc.rest_port}/api/v1/job/{flow.job_id}"
        async with aiohttp.ClientSession() as session:
            async with session.delete(url) as response:
                assert response.status == 200
        for pending, exit_code in ((flow, 255), (queued, 0)):
            final = await remote.cmd_execute.next_ackcmd(
                pending.first_ack, timeout=STD_TIMEOUT
            )
            assert final.ack == sal.SalRetCode.CMD_COMPLETE
            data = await next_job_result(remote, pending.job_id)
            assert data.exit_code == exit_code, data.result
        assert csc.summary_state == sal.State.FAULT


async def test_close_aborts_pending_commands(csc_env: str) -> None:
    async with make_ocps(initial_state=ENABLED) as harness:
        remote, csc = harness.remote, harness.csc
        flow = await start_execute(remote, pipeline="p.yaml", data_query="sleep=120")
        next_ack = asyncio.create_task(
            remote.cmd_execute.next_ackcmd(flow.first_ack, timeout=STD_TIMEOUT)
        )
        await asyncio.sleep(0)
        manager = csc.manager
        assert manager is not None
        await csc.close()
        with pytest.raises(sal.AckError) as error_info:
            await next_ack
        assert error_info.value.ackcmd.ack == sal.SalRetCode.CMD_ABORTED

        # The job lives on under its supervisor; end it.
        job_dir = manager.work_dir(flow.job_id)
        assert job_dir.is_dir()
