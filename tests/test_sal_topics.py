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

"""SalInfo, topics and the ack protocol, below the CSC level."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from lsst.ts.ocps import sal
from lsst.ts.ocps.sal import (
    AckCmdReader,
    AckError,
    AckTimeoutError,
    ControllerCommand,
    Domain,
    ReadTopic,
    Remote,
    RemoteCommand,
    SalInfo,
    SalRetCode,
    WriteTopic,
)
from lsst.ts.ocps.sal.inprocess_transport import InProcessBus
from support.sal import STD_TIMEOUT, sal_any_env, sal_env  # noqa: F401

Handler = Callable[[sal.Sample], Awaitable[Any]]


class Controller:
    """A bare controller endpoint: one command topic and two events."""

    def __init__(self, index: int = 1) -> None:
        self.domain = Domain(f"OCPS:{index}")
        self.salinfo = SalInfo(self.domain, "OCPS", index)
        self.salinfo.add_writer(self.salinfo.component.ackcmd)
        self.cmd_execute = ControllerCommand(
            salinfo=self.salinfo,
            topic_info=self.salinfo.topic_info("command_execute"),
            ackcmd_info=self.salinfo.component.ackcmd,
        )
        self.evt_summaryState = WriteTopic(
            salinfo=self.salinfo,
            topic_info=self.salinfo.topic_info("logevent_summaryState"),
        )
        self.evt_job_result = WriteTopic(
            salinfo=self.salinfo,
            topic_info=self.salinfo.topic_info("logevent_job_result"),
        )


@pytest.fixture
async def controller() -> AsyncIterator[Controller]:
    controller = Controller()
    await controller.salinfo.start()
    yield controller
    await controller.domain.close()


@pytest.fixture
async def remote(controller: Controller) -> AsyncIterator[Remote]:
    async with Remote(None, "OCPS", index=1) as remote:
        yield remote


@pytest.mark.usefixtures("sal_any_env")
async def test_ack_sequences(controller: Controller, remote: Remote) -> None:
    async def handler(data: sal.Sample) -> None:
        if data.pipeline == "expected":
            raise sal.ExpectedError("told you")
        if data.pipeline == "timeout":
            raise TimeoutError()
        if data.pipeline == "progress":
            await controller.cmd_execute.ack_in_progress(data, timeout=5, result="r")
            await asyncio.sleep(0.05)

    controller.cmd_execute.callback = handler
    ack = await remote.cmd_execute.set_start(pipeline="ok", timeout=STD_TIMEOUT)
    assert (ack.ack, ack.error, ack.result, ack.timeout) == (
        SalRetCode.CMD_COMPLETE,
        0,
        "Done",
        0.0,
    )
    assert ack.cmdtype == 4
    assert ack.identity == remote.salinfo.identity
    assert ack.origin == remote.salinfo.origin
    assert ack.private_identity == "OCPS:1"
    assert ack.salIndex == 1

    with pytest.raises(AckError) as excinfo:
        await remote.cmd_execute.set_start(pipeline="expected", timeout=STD_TIMEOUT)
    failed = excinfo.value.ackcmd
    assert (failed.ack, failed.error, failed.result) == (
        SalRetCode.CMD_FAILED,
        1,
        "Failed: told you",
    )

    with pytest.raises(AckError) as excinfo:
        await remote.cmd_execute.set_start(pipeline="timeout", timeout=STD_TIMEOUT)
    assert excinfo.value.ackcmd.ack == SalRetCode.CMD_TIMEOUT

    first = await remote.cmd_execute.set_start(
        pipeline="progress", wait_done=False, timeout=STD_TIMEOUT
    )
    assert (first.ack, first.result, first.timeout) == (
        SalRetCode.CMD_INPROGRESS,
        "r",
        5.0,
    )
    final = await remote.cmd_execute.next_ackcmd(first, timeout=STD_TIMEOUT)
    assert final.ack == SalRetCode.CMD_COMPLETE
    assert final.private_seqNum == first.private_seqNum


@pytest.mark.usefixtures("sal_env")
async def test_aborted_ack_on_close(controller: Controller, remote: Remote) -> None:
    started = asyncio.Event()

    async def handler(data: sal.Sample) -> None:
        started.set()
        await asyncio.sleep(STD_TIMEOUT * 2)

    controller.cmd_execute.callback = handler
    task = asyncio.create_task(remote.cmd_execute.set_start(timeout=STD_TIMEOUT))
    await asyncio.wait_for(started.wait(), STD_TIMEOUT)
    await controller.salinfo.close()
    with pytest.raises(AckError) as excinfo:
        await task
    assert excinfo.value.ackcmd.ack == SalRetCode.CMD_ABORTED
    assert excinfo.value.ackcmd.result == "Aborted"


@pytest.mark.usefixtures("sal_env")
async def test_in_progress_extends_the_wait(
    controller: Controller, remote: Remote
) -> None:
    async def handler(data: sal.Sample) -> None:
        if data.pipeline == "quiet":
            await asyncio.sleep(1.0)
            return
        await controller.cmd_execute.ack_in_progress(data, timeout=STD_TIMEOUT)
        await asyncio.sleep(0.5)

    controller.cmd_execute.callback = handler
    controller.cmd_execute.allow_multiple_callbacks = True
    ack = await remote.cmd_execute.set_start(pipeline="loud", timeout=0.1)
    assert ack.ack == SalRetCode.CMD_COMPLETE

    with pytest.raises(AckTimeoutError) as excinfo:
        await remote.cmd_execute.set_start(pipeline="quiet", timeout=0.1)
    assert excinfo.value.ackcmd.ack == SalRetCode.CMD_NOACK
    assert excinfo.value.ackcmd.result == "No command acknowledgement seen"
    assert isinstance(excinfo.value, TimeoutError)


@pytest.mark.parametrize("allow_multiple", [False, True])
@pytest.mark.usefixtures("sal_env")
async def test_serialized_or_concurrent(
    controller: Controller, remote: Remote, allow_multiple: bool
) -> None:
    running = 0
    most = 0
    order: list[str] = []
    release = asyncio.Event()

    async def handler(data: sal.Sample) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        order.append(data.pipeline)
        if allow_multiple and running == 3:
            release.set()
        try:
            if allow_multiple:
                await release.wait()
            else:
                await asyncio.sleep(0.05)
        finally:
            running -= 1

    controller.cmd_execute.callback = handler
    controller.cmd_execute.allow_multiple_callbacks = allow_multiple
    acks = await asyncio.gather(
        *[
            remote.cmd_execute.set_start(pipeline=str(i), timeout=STD_TIMEOUT)
            for i in range(3)
        ]
    )
    assert [ack.ack for ack in acks] == [SalRetCode.CMD_COMPLETE] * 3
    assert most == (3 if allow_multiple else 1)
    if not allow_multiple:
        assert order == ["0", "1", "2"]


@pytest.mark.usefixtures("sal_env")
async def test_commands_for_another_index_are_ignored(
    controller: Controller,
) -> None:
    calls: list[sal.Sample] = []
    controller.cmd_execute.callback = calls.append
    for index in (0, 2):
        async with Remote(None, "OCPS", index=index) as other:
            with pytest.raises(AckTimeoutError):
                await other.cmd_execute.set_start(pipeline="x", timeout=0.3)
    assert calls == []
    async with Remote(None, "OCPS", index=1) as right:
        await right.cmd_execute.set_start(pipeline="x", timeout=STD_TIMEOUT)
    assert [data.pipeline for data in calls] == ["x"]


@pytest.mark.usefixtures("sal_env")
async def test_bad_records_are_skipped(
    controller: Controller, remote: Remote, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[sal.Sample] = []
    controller.cmd_execute.callback = calls.append
    bus = InProcessBus.get()
    topic = controller.salinfo.topic_info("command_execute")
    good = topic.make_data(
        salIndex=1, private_seqNum=7, private_identity="me", private_origin=1
    )

    with caplog.at_level(logging.WARNING):
        bus.publish(topic, {"not": "a command"})
        bus.publish(topic, dict(good, pipeline=42))
        bus.publish(topic, dict(good, private_seqNum=0))
        bus.publish(topic, dict(good, private_seqNum=-3))
        bus.publish(topic, ["not", "a", "dict"])  # type: ignore[arg-type]
        # The reader lives on: a good command after the bad ones runs.
        ack = await remote.cmd_execute.set_start(pipeline="ok", timeout=STD_TIMEOUT)
    assert ack.ack == SalRetCode.CMD_COMPLETE
    assert [data.pipeline for data in calls] == ["ok"]
    text = caplog.text
    assert "missing fields" in text
    assert "field pipeline=42 is not string" in text
    assert "private_seqNum=0 <= 0" in text
    assert "private_seqNum=-3 <= 0" in text
    assert "record is a list" in text


@pytest.mark.usefixtures("sal_env")
async def test_out_of_order_events_are_dropped(
    controller: Controller, remote: Remote, caplog: pytest.LogCaptureFixture
) -> None:
    await controller.evt_summaryState.set_write(summaryState=5)
    first = await remote.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)
    topic = controller.salinfo.topic_info("logevent_summaryState")
    stale = dict(first.get_vars(), summaryState=1)
    stale["private_sndStamp"] -= 10
    with caplog.at_level(logging.WARNING):
        InProcessBus.get().publish(topic, stale)
        await controller.evt_summaryState.set_write(summaryState=2)
        data = await remote.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)
    assert data.summaryState == 2
    assert remote.evt_summaryState.nqueued == 0
    assert "out-of-order" in caplog.text


@pytest.mark.usefixtures("sal_any_env")
async def test_late_joiner_history(controller: Controller) -> None:
    async with Remote(None, "OCPS", index=1) as witness:
        for state in (5, 1, 2):
            await controller.evt_summaryState.set_write(summaryState=state)
        # Writes are not awaited to the broker; once a reader has seen the
        # last one, every late joiner can.
        for state in (5, 1, 2):
            data = await witness.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)
            assert data.summaryState == state
    async with Remote(None, "OCPS", index=1) as late:
        data = await late.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)
        assert data.summaryState == 2
        assert late.evt_summaryState.nqueued == 0
        assert late.evt_job_result.get() is None
    async with Remote(None, "OCPS", index=1, evt_max_history=0) as no_history:
        assert no_history.evt_summaryState.get() is None
        with pytest.raises(TimeoutError):
            await no_history.evt_summaryState.next(flush=False, timeout=0.2)
    async with Remote(None, "OCPS", index=3) as other_index:
        assert other_index.evt_summaryState.get() is None


@pytest.mark.usefixtures("sal_env")
async def test_acks_only_reach_their_commander(controller: Controller) -> None:
    controller.cmd_execute.callback = lambda data: None
    async with (
        Remote(None, "OCPS", index=1) as first,
        Remote(Domain("someone@else"), "OCPS", index=1) as second,
    ):
        ack = await first.cmd_execute.set_start(timeout=STD_TIMEOUT)
        assert ack.ack == SalRetCode.CMD_COMPLETE
        # Give the ack time to reach the second remote too.
        await second.cmd_execute.set_start(timeout=STD_TIMEOUT)
        reader = second.cmd_execute.ack_reader
        assert reader.get().identity == "someone@else"
        assert reader.get().private_seqNum != ack.private_seqNum
        await second.domain.close()


@pytest.mark.usefixtures("sal_env")
async def test_read_topic_api(controller: Controller, remote: Remote) -> None:
    reader = remote.evt_job_result
    assert not reader.has_data
    with pytest.raises(TimeoutError):
        await reader.aget(timeout=0.05)
    for i in range(3):
        await controller.evt_job_result.set_write(job_id=str(i))
    assert (await reader.aget(timeout=STD_TIMEOUT)).job_id in {"0", "1", "2"}
    first = await reader.next(flush=False, timeout=STD_TIMEOUT)
    assert first.job_id == "0"
    while reader.nqueued < 2:
        await asyncio.sleep(0.01)
    reader.flush()
    assert reader.nqueued == 0
    assert reader.get().job_id == "2"

    seen: list[str] = []

    async def callback(data: sal.Sample) -> None:
        seen.append(data.job_id)

    reader.callback = callback
    with pytest.raises(RuntimeError, match="has a callback"):
        await reader.next(flush=False, timeout=0.1)
    await controller.evt_job_result.set_write(job_id="3")
    await controller.evt_job_result.set_write(job_id="4")
    while len(seen) < 2:
        await asyncio.sleep(0.01)
    assert seen == ["3", "4"]


@pytest.mark.usefixtures("sal_env")
async def test_write_topic_api(controller: Controller, remote: Remote) -> None:
    evt = controller.evt_job_result
    assert not evt.has_data
    assert evt.set(job_id="a")
    assert not evt.set(job_id="a")
    result = await evt.set_write(job_id="a")
    assert result.was_written and not result.did_change
    result = await evt.set_write(job_id="a")
    assert not result.was_written
    result = await evt.set_write(job_id="a", force_output=True)
    assert result.was_written
    assert result.data.private_seqNum == 2
    with pytest.raises(ValueError, match="no fields"):
        evt.set(nonsense=1)
    evt.set(exit_code="not an int")
    with pytest.raises(ValueError, match="exit_code"):
        await evt.write()


@pytest.mark.usefixtures("sal_env")
async def test_seq_num_ranges() -> None:
    domain = Domain()
    salinfo = SalInfo(domain, "OCPS", 1)
    reader = AckCmdReader(salinfo=salinfo, topic_info=salinfo.component.ackcmd)
    commands = sorted(salinfo.component.commands)
    span = (2**31 - 1) // len(commands)
    for position, sal_name in enumerate(commands):
        command = RemoteCommand(
            salinfo=salinfo, topic_info=salinfo.topic_info(sal_name), ack_reader=reader
        )
        numbers = {command._next_seq_num() for _ in range(5)}
        assert len(numbers) == 5
        assert all(position * span < n <= (position + 1) * span for n in numbers)
    assert commands.index("command_execute") == 3
    await domain.close()


@pytest.mark.usefixtures("sal_env")
async def test_remote_include_exclude() -> None:
    async with Remote(None, "OCPS", 1, include=["summaryState"], readonly=True) as r:
        assert isinstance(r.evt_summaryState, ReadTopic)
        assert not hasattr(r, "evt_heartbeat")
        assert not hasattr(r, "cmd_execute")
    async with Remote(None, "OCPS", 1, exclude=["heartbeat"]) as r:
        assert not hasattr(r, "evt_heartbeat")
        assert isinstance(r.cmd_execute, RemoteCommand)
    with pytest.raises(ValueError, match="no events"):
        Remote(None, "OCPS", 1, include=["nope"])
    with pytest.raises(ValueError, match="not both"):
        Remote(None, "OCPS", 1, include=[], exclude=[])


@pytest.mark.usefixtures("sal_env")
async def test_controller_command_needs_a_command_topic() -> None:
    async with Domain("OCPS:1") as domain:
        salinfo = SalInfo(domain, "OCPS", 1)
        with pytest.raises(ValueError, match="^logevent_heartbeat is not a command"):
            ControllerCommand(
                salinfo=salinfo,
                topic_info=salinfo.topic_info("logevent_heartbeat"),
                ackcmd_info=salinfo.component.ackcmd,
            )
