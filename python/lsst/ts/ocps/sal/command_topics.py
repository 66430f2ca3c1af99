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

"""Command topics and the ack protocol, for the CSC and the Remote side."""

from __future__ import annotations

__all__ = [
    "DEFAULT_TIMEOUT",
    "AckCmdReader",
    "ControllerCommand",
    "RemoteCommand",
]

import asyncio
import collections
import inspect
import random
from typing import TYPE_CHECKING, Any

from .enums import FAILED_ACK_CODES, FINAL_ACK_CODES, SalRetCode
from .errors import AckError, AckTimeoutError, ExpectedError
from .sal_info import MAX_SEQ_NUM
from .topics import ReadTopic, Sample, WriteTopic

if TYPE_CHECKING:
    from .interface import TopicInfo
    from .sal_info import SalInfo

DEFAULT_TIMEOUT = 3600.0
"""Seconds a Remote waits for a command's final ack by default."""

_ACK_VALUES = frozenset(int(code) for code in SalRetCode)
"""Ack values a Remote turns into `SalRetCode` members."""


class ControllerCommand(ReadTopic):
    """A command topic read by a CSC, which runs a handler and acks it.

    The handler (set as `callback`) is awaited per command. Its outcome
    becomes the final ack: ``CMD_COMPLETE`` "Done" when it returns,
    ``CMD_FAILED`` "Failed: <msg>" when it raises, ``CMD_TIMEOUT`` for a
    `TimeoutError`, ``CMD_ABORTED`` when it is cancelled. No ``CMD_ACK``
    is ever sent. Commands of one topic run one at a time unless
    `allow_multiple_callbacks` is set.

    Parameters
    ----------
    salinfo : `SalInfo`
        The CSC's endpoint.
    topic_info : `TopicInfo`
        The command topic.
    ackcmd_info : `TopicInfo`
        The component's ackcmd topic (a write topic of ``salinfo``).
    """

    def __init__(
        self, *, salinfo: SalInfo, topic_info: TopicInfo, ackcmd_info: TopicInfo
    ) -> None:
        if topic_info.cmdtype is None:
            raise ValueError(f"{topic_info.sal_name} is not a command topic")
        super().__init__(salinfo=salinfo, topic_info=topic_info, max_history=0)
        self.ackcmd_info = ackcmd_info
        self.cmdtype = topic_info.cmdtype
        self.allow_multiple_callbacks = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._callback_task = asyncio.create_task(self._callback_loop())

    def _uses_callback(self) -> bool:
        # Every command is acked, even with no handler (it then fails).
        return True

    async def ack(
        self,
        data: Sample,
        ack: SalRetCode,
        error: int = 0,
        result: str = "",
        timeout: float = 0.0,
    ) -> None:
        """Write an ack for a command.

        Parameters
        ----------
        data : `Sample`
            The command; its seqNum, identity and origin are echoed.
        ack : `SalRetCode`
            Ack code.
        error : `int`, optional
            Error number, 0 on success.
        result : `str`, optional
            Free text.
        timeout : `float`, optional
            Expected remaining duration (seconds), for ``CMD_INPROGRESS``.
        """
        record = self.ackcmd_info.make_data(
            ack=int(ack),
            error=error,
            result=result,
            identity=data.private_identity,
            origin=data.private_origin,
            cmdtype=self.cmdtype,
            timeout=float(timeout),
        )
        record["private_seqNum"] = data.private_seqNum
        await self.salinfo.write(self.ackcmd_info, record)

    async def ack_in_progress(
        self, data: Sample, timeout: float, result: str = ""
    ) -> None:
        """Tell the commander the command is running and how long it may take.

        Parameters
        ----------
        data : `Sample`
            The command.
        timeout : `float`
            Expected remaining duration (seconds); the Remote extends its
            wait by this much.
        result : `str`, optional
            Free text, e.g. JSON with a job id.
        """
        await self.ack(data, SalRetCode.CMD_INPROGRESS, result=result, timeout=timeout)

    async def _handle_callback(self, sample: Sample) -> None:
        if not self.allow_multiple_callbacks:
            await self._run_command(sample)
            return
        task = asyncio.create_task(self._run_command(sample))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_command(self, data: Sample) -> None:
        """Run the handler on one command and write its final ack."""
        handler = self._callback
        seq = data.private_seqNum
        try:
            if handler is None:
                raise ExpectedError("This command is not supported")
            result = handler(data)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            await self._final_ack(data, SalRetCode.CMD_ABORTED, "Aborted")
            raise
        except ExpectedError as e:
            self.log.warning("%s seqNum=%s failed: %s", self.name, seq, e)
            await self._final_ack(data, SalRetCode.CMD_FAILED, f"Failed: {e}")
        except TimeoutError:
            self.log.exception("%s seqNum=%s timed out", self.name, seq)
            await self._final_ack(data, SalRetCode.CMD_TIMEOUT, "Timeout")
        except Exception as e:
            self.log.exception("%s seqNum=%s failed", self.name, seq)
            await self._final_ack(data, SalRetCode.CMD_FAILED, f"Failed: {e}")
        else:
            if isinstance(result, Sample) and hasattr(result, "ack"):
                await self._final_ack(
                    data, SalRetCode(result.ack), result.result, error=result.error
                )
            else:
                await self._final_ack(data, SalRetCode.CMD_COMPLETE, "Done")

    async def _final_ack(
        self, data: Sample, ack: SalRetCode, result: str, error: int | None = None
    ) -> None:
        if error is None:
            error = 0 if ack == SalRetCode.CMD_COMPLETE else 1
        try:
            await self.ack(data, ack, error=error, result=result)
        except Exception:
            self.log.exception(
                "Could not write %s ack for %s seqNum=%s",
                ack.name,
                self.name,
                data.private_seqNum,
            )

    async def close(self) -> None:
        """Cancel running handlers (they ack ``CMD_ABORTED``), then close."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await super().close()


class _CommandWait:
    """Acks received for one command a Remote sent."""

    def __init__(self, seq_num: int) -> None:
        self.seq_num = seq_num
        self.acks: collections.deque[Sample] = collections.deque()
        self.last_ack: Sample | None = None
        self.event = asyncio.Event()
        self.done = False

    def add_ack(self, ack: Sample) -> None:
        self.acks.append(ack)
        self.event.set()


class AckCmdReader(ReadTopic):
    """A Remote's ackcmd reader: routes acks to the commands waiting.

    Only acks whose ``identity`` and ``origin`` match this endpoint are
    kept; they are routed by ``private_seqNum``, and acks for unknown
    commands are ignored.
    """

    def __init__(self, *, salinfo: SalInfo, topic_info: TopicInfo) -> None:
        super().__init__(salinfo=salinfo, topic_info=topic_info, max_history=0)
        # Known shortcoming: a command that times out and never gets a
        # final ack stays here (so next_ackcmd can keep waiting for it)
        # until the Remote closes. Bound it if long-lived Remotes send many
        # commands to CSCs that drop them.
        self._waits: dict[int, _CommandWait] = {}

    def add_wait(self, seq_num: int) -> _CommandWait:
        """Start collecting acks for a command about to be sent."""
        wait = _CommandWait(seq_num)
        self._waits[seq_num] = wait
        return wait

    def get_wait(self, seq_num: int) -> _CommandWait | None:
        """The acks of a command not finished yet, or `None`."""
        return self._waits.get(seq_num)

    def remove_wait(self, seq_num: int) -> None:
        """Forget a command."""
        self._waits.pop(seq_num, None)

    def _deliver(self, data: dict[str, Any], is_history: bool) -> None:
        if (
            data["identity"] != self.salinfo.identity
            or data["origin"] != self.salinfo.origin
        ):
            return
        sample = Sample(**data)
        sample.ack = SalRetCode(sample.ack) if sample.ack in _ACK_VALUES else sample.ack
        self._current = sample
        wait = self._waits.get(sample.private_seqNum)
        if wait is not None:
            wait.add_ack(sample)


class RemoteCommand(WriteTopic):
    """A command topic written by a Remote, with ack tracking.

    Parameters
    ----------
    salinfo : `SalInfo`
        The Remote's endpoint.
    topic_info : `TopicInfo`
        The command topic.
    ack_reader : `AckCmdReader`
        The Remote's ackcmd reader.
    """

    def __init__(
        self, *, salinfo: SalInfo, topic_info: TopicInfo, ack_reader: AckCmdReader
    ) -> None:
        super().__init__(salinfo=salinfo, topic_info=topic_info)
        self.ack_reader = ack_reader

        # Each command topic owns a slice of the int32 range, so ids are
        # unique per (identity, origin) across the component's commands.
        commands = sorted(salinfo.component.commands)
        position = commands.index(topic_info.sal_name)
        span = MAX_SEQ_NUM // len(commands)
        self._min_seq_num = position * span + 1
        self._max_seq_num = (position + 1) * span
        self._seq_num = random.randint(self._min_seq_num, self._max_seq_num)

    def _next_seq_num(self) -> int:
        self._seq_num += 1
        if self._seq_num > self._max_seq_num:
            self._seq_num = self._min_seq_num
        return self._seq_num

    async def set_start(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        wait_done: bool = True,
        **kwargs: Any,
    ) -> Sample:
        """Send the command with the given fields (others at defaults).

        Parameters
        ----------
        timeout : `float`, optional
            Seconds to wait for an ack (extended by in-progress acks).
        wait_done : `bool`, optional
            `True` returns the final ack; `False` the first ack.
        **kwargs : `~typing.Any`
            Command fields.

        Returns
        -------
        ackcmd : `Sample`
            The ack.

        Raises
        ------
        AckError
            If the command failed.
        AckTimeoutError
            If no (final) ack arrived in time.
        ValueError
            If a field name is unknown.
        """
        self._data = Sample(**self.topic_info.make_data())
        self.set(**kwargs)
        return await self.start(timeout=timeout, wait_done=wait_done)

    async def start(
        self,
        data: Sample | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        wait_done: bool = True,
    ) -> Sample:
        """Send the current data (or ``data``) as a command.

        See `set_start` for the parameters, return value and errors.
        """
        if data is not None:
            self._data = Sample(**data.get_vars())
        seq_num = self._next_seq_num()
        self._data.private_seqNum = seq_num
        wait = self.ack_reader.add_wait(seq_num)
        try:
            await self.write()
        except BaseException:
            self.ack_reader.remove_wait(seq_num)
            raise
        return await self._next_ack(wait, timeout=timeout, wait_done=wait_done)

    async def next_ackcmd(
        self,
        ackcmd: Sample,
        timeout: float = DEFAULT_TIMEOUT,
        wait_done: bool = True,
    ) -> Sample:
        """Wait for the next ack of a command sent earlier.

        Parameters
        ----------
        ackcmd : `Sample`
            An ack of that command (its ``private_seqNum`` identifies it).
        timeout : `float`, optional
            Seconds to wait.
        wait_done : `bool`, optional
            `True` returns the final ack; `False` the next ack.

        Raises
        ------
        RuntimeError
            If the command is unknown or its final ack was already
            returned.
        AckError, AckTimeoutError
            As for `set_start`.
        """
        wait = self.ack_reader.get_wait(ackcmd.private_seqNum)
        if wait is None:
            raise RuntimeError(
                f"{self.name} command with seqNum={ackcmd.private_seqNum} "
                "is unknown or finished"
            )
        return await self._next_ack(wait, timeout=timeout, wait_done=wait_done)

    async def _next_ack(
        self, wait: _CommandWait, *, timeout: float, wait_done: bool
    ) -> Sample:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while wait.acks:
                ack = wait.acks.popleft()
                wait.last_ack = ack
                if ack.ack in FINAL_ACK_CODES:
                    self.ack_reader.remove_wait(wait.seq_num)
                    if ack.ack in FAILED_ACK_CODES:
                        raise AckError("Command failed", ack)
                    return ack
                if ack.ack == SalRetCode.CMD_INPROGRESS:
                    deadline += ack.timeout
                if not wait_done:
                    return ack
            remaining = deadline - loop.time()
            wait.event.clear()
            try:
                if remaining <= 0:
                    raise TimeoutError()
                await asyncio.wait_for(wait.event.wait(), remaining)
            except TimeoutError:
                last = wait.last_ack
                if last is None:
                    last = Sample(
                        private_seqNum=wait.seq_num,
                        ack=SalRetCode.CMD_NOACK,
                        error=0,
                        result="No command acknowledgement seen",
                    )
                raise AckTimeoutError(
                    "Timed out waiting for command acknowledgement", last
                ) from None
