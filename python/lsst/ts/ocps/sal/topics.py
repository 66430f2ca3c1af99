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

"""Read and write topics: the ``evt_*`` attributes of CSCs and Remotes."""

from __future__ import annotations

__all__ = ["ReadTopic", "Sample", "SetWriteResult", "WriteTopic"]

import asyncio
import collections
import copy
import dataclasses
import inspect
import types
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .interface import TopicInfo
    from .sal_info import SalInfo

DEFAULT_QUEUE_LEN = 100
"""Samples a read topic queues before it drops the oldest."""

Callback = Callable[["Sample"], Awaitable[Any] | Any]


class Sample(types.SimpleNamespace):
    """One record of a topic, with its fields as attributes."""

    def get_vars(self) -> dict[str, Any]:
        """A copy of the fields as a dict."""
        return copy.deepcopy(vars(self))


@dataclasses.dataclass
class SetWriteResult:
    """What `WriteTopic.set_write` did.

    Attributes
    ----------
    did_change : `bool`
        Did any field change?
    was_written : `bool`
        Was the record written?
    data : `Sample`
        The data after the call (a copy).
    """

    did_change: bool
    was_written: bool
    data: Sample


class _Topic:
    """What read and write topics share: their endpoint and interface.

    Parameters
    ----------
    salinfo : `SalInfo`
        The endpoint.
    topic_info : `TopicInfo`
        The topic's interface.
    """

    def __init__(self, *, salinfo: SalInfo, topic_info: TopicInfo) -> None:
        self.salinfo = salinfo
        self.topic_info = topic_info
        self.log = salinfo.log.getChild(topic_info.sal_name)

    @property
    def name(self) -> str:
        """The topic's ``sal_name``."""
        return self.topic_info.sal_name


class ReadTopic(_Topic):
    """A topic this endpoint reads: a queue, the latest value, a callback.

    Parameters
    ----------
    salinfo : `SalInfo`
        The endpoint; the topic registers itself with it.
    topic_info : `TopicInfo`
        The topic's interface.
    max_history : `int`
        For events, how many historical samples (0 or 1) a late joiner
        gets; other categories ignore it.
    queue_len : `int`, optional
        Samples queued before the oldest is dropped.
    """

    def __init__(
        self,
        *,
        salinfo: SalInfo,
        topic_info: TopicInfo,
        max_history: int,
        queue_len: int = DEFAULT_QUEUE_LEN,
    ) -> None:
        if max_history < 0:
            raise ValueError(f"{max_history=} must be >= 0")
        if queue_len < 1:
            raise ValueError(f"{queue_len=} must be > 0")
        super().__init__(salinfo=salinfo, topic_info=topic_info)
        self.max_history = max_history if topic_info.category == "event" else 0
        self._queue: collections.deque[Sample] = collections.deque(maxlen=queue_len)
        self._current: Sample | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._callback: Callback | None = None
        self._callback_queue: collections.deque[Sample] = collections.deque(
            maxlen=queue_len
        )
        self._callback_event = asyncio.Event()
        self._callback_task: asyncio.Task[None] | None = None
        self._closed = False
        salinfo.add_reader(self)

    @property
    def has_data(self) -> bool:
        """Has any sample been read?"""
        return self._current is not None

    @property
    def nqueued(self) -> int:
        """Samples waiting in the queue."""
        return len(self._queue)

    @property
    def callback(self) -> Callback | None:
        """Function called with each sample instead of queueing it.

        A coroutine function is awaited; samples go to it one at a time,
        in arrival order. Setting it empties the queue.
        """
        return self._callback

    @callback.setter
    def callback(self, func: Callback | None) -> None:
        if func is not None and not callable(func):
            raise TypeError(f"callback={func!r} is not callable")
        self._callback = func
        self._queue.clear()
        if func is not None and self._callback_task is None and not self._closed:
            self._callback_task = asyncio.create_task(self._callback_loop())

    def get(self) -> Sample | None:
        """The latest sample, or `None`; does not touch the queue."""
        return None if self._current is None else copy.deepcopy(self._current)

    async def aget(self, timeout: float | None = None) -> Sample:
        """The latest sample, waiting for one if none has arrived.

        Parameters
        ----------
        timeout : `float` or `None`, optional
            Seconds to wait; `None` waits forever.

        Returns
        -------
        data : `Sample`
            A copy of the latest sample.

        Raises
        ------
        TimeoutError
            If no sample arrives in time.
        """
        if self._current is not None:
            return copy.deepcopy(self._current)
        await self._wait_for_data(timeout)
        assert self._current is not None
        return copy.deepcopy(self._current)

    async def next(self, *, flush: bool, timeout: float | None = None) -> Sample:
        """Pop the oldest queued sample, waiting for one if needed.

        Parameters
        ----------
        flush : `bool`
            Empty the queue first, so only a new sample is returned.
        timeout : `float` or `None`, optional
            Seconds to wait; `None` waits forever.

        Returns
        -------
        data : `Sample`
            The oldest queued sample.

        Raises
        ------
        RuntimeError
            If a callback is set (samples then never queue).
        TimeoutError
            If no sample arrives in time.
        """
        if self._callback is not None:
            raise RuntimeError(f"{self.name} has a callback; next is not available")
        if flush:
            self.flush()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._queue:
            remaining = None if deadline is None else deadline - loop.time()
            await self._wait_for_data(remaining)
        return self._queue.popleft()

    def flush(self) -> None:
        """Drop every queued sample."""
        self._queue.clear()

    async def _wait_for_data(self, timeout: float | None) -> None:
        if self._closed:
            raise RuntimeError(f"{self.name} reader is closed")
        if timeout is not None and timeout <= 0:
            raise TimeoutError(f"No {self.name} sample in time")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise TimeoutError(f"No {self.name} sample in time") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _deliver(self, data: dict[str, Any], is_history: bool) -> None:
        """Take one checked record from the `SalInfo`."""
        sample = Sample(**data)
        self._current = sample
        if self._uses_callback():
            if len(self._callback_queue) == self._callback_queue.maxlen:
                self.log.warning("Callback queue full; dropping the oldest sample")
            self._callback_queue.append(sample)
            self._callback_event.set()
        else:
            if len(self._queue) == self._queue.maxlen:
                self.log.warning("Queue full; dropping the oldest sample")
            self._queue.append(copy.deepcopy(sample))
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = []

    def _uses_callback(self) -> bool:
        """Do samples go to the callback loop rather than the queue?"""
        return self._callback is not None

    async def _callback_loop(self) -> None:
        while True:
            await self._callback_event.wait()
            self._callback_event.clear()
            while self._callback_queue:
                sample = self._callback_queue.popleft()
                await self._handle_callback(sample)

    async def _handle_callback(self, sample: Sample) -> None:
        """Run the callback on one sample, logging its failure."""
        func = self._callback
        if func is None:
            return
        try:
            result = func(sample)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("Callback %s failed", func)

    async def close(self) -> None:
        """Stop the callback and fail pending waits; safe to call twice."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError(f"{self.name} reader closed"))
        self._waiters = []
        if self._callback_task is not None:
            self._callback_task.cancel()
            await asyncio.gather(self._callback_task, return_exceptions=True)
            self._callback_task = None


class WriteTopic(_Topic):
    """A topic this endpoint writes, holding the data to write next.

    Parameters
    ----------
    salinfo : `SalInfo`
        The endpoint; the topic registers itself with it.
    topic_info : `TopicInfo`
        The topic's interface.
    """

    def __init__(self, *, salinfo: SalInfo, topic_info: TopicInfo) -> None:
        super().__init__(salinfo=salinfo, topic_info=topic_info)
        self._data = Sample(**topic_info.make_data())
        self._field_names = frozenset(field.name for field in topic_info.fields)
        self._has_data = False
        self._written = False
        salinfo.add_writer(topic_info)

    @property
    def data(self) -> Sample:
        """The current data (change it with `set`)."""
        return self._data

    @property
    def has_data(self) -> bool:
        """Has `set` or `write` been called?"""
        return self._has_data

    def set(self, **kwargs: Any) -> bool:
        """Set fields of the data.

        Parameters
        ----------
        **kwargs : `~typing.Any`
            Field values (copied).

        Returns
        -------
        did_change : `bool`
            Did any value change?

        Raises
        ------
        ValueError
            If a name is not a field of this topic.
        """
        unknown = sorted(set(kwargs) - self._field_names)
        if unknown:
            raise ValueError(f"{self.name} has no fields {unknown}")
        did_change = not self._has_data
        for name, value in kwargs.items():
            if getattr(self._data, name) != value:
                did_change = True
            setattr(self._data, name, copy.deepcopy(value))
        self._has_data = True
        return did_change

    async def write(self) -> Sample:
        """Write the current data.

        Returns
        -------
        data : `Sample`
            A copy of what was written, private fields stamped.
        """
        record = await self.salinfo.write(self.topic_info, vars(self._data))
        self._data = Sample(**record)
        self._has_data = True
        self._written = True
        return copy.deepcopy(self._data)

    async def set_write(
        self, *, force_output: bool | None = None, **kwargs: Any
    ) -> SetWriteResult:
        """Set fields and write if anything changed.

        Parameters
        ----------
        force_output : `bool` or `None`, optional
            `True` writes even if nothing changed; `None` writes
            telemetry always and events only when a field changed or
            nothing was written yet.
        **kwargs : `~typing.Any`
            Field values.

        Returns
        -------
        result : `SetWriteResult`
            Whether anything changed and was written, and the data.
        """
        did_change = self.set(**kwargs)
        if force_output is None:
            force_output = self.topic_info.category == "telemetry"
        do_write = force_output or did_change or not self._written
        if do_write:
            await self.write()
        return SetWriteResult(
            did_change=did_change, was_written=do_write, data=copy.deepcopy(self._data)
        )
