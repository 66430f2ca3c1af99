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

"""Run jobs as local processes under a supervisor that outlives OCPS.

Design: re-adopt, not kill. The runner starts one supervisor process
(``supervisor.py``, stdlib only; see that module) in a session of its
own. The supervisor spawns every job in its own process group, caps its
logs, enforces its time limit and writes the job's exit status to
``<work_dir>/.ocps/exit.json``. The runner keeps no durable state:
`LocalRunner.launch` returns the job's pid and start time (field 22 of
``/proc/<pid>/stat``) and its supervisor's, which the job manager
journals.

While both live, the supervisor reports each job's end on its stdout, so
the server waits for nothing else. If the OCPS server dies, even by
kill -9, the supervisor and its jobs run on; the next server calls
`LocalRunner.reattach`, which recognises the job by pid and start time,
waits for it to end through a pidfd watched by the event loop and then
reads the job's real exit code from ``exit.json``. A job that is gone
without an exit file, whose supervisor is gone too, was lost.

Known shortcomings: the supervisor writes the exit file just after it
reaps the job, and a re-adopted job's end is known from its pidfd, so
between the two a new server checks for the file every
``_EXIT_FILE_POLL`` seconds (for at most ``_EXIT_FILE_WAIT``); removing
that needs a notice from an earlier supervisor to a later server, which
only matters after a restart. If something other than OCPS kills the
supervisor, its jobs run on unsupervised (no time limit, no log copy)
while the job manager reports them lost; `supervisor` explains why one
process supervises every job. A supervisor that still runs jobs when its
runner closes is not waited for; if this process lives on, it reaps it
only at its next `subprocess.Popen` (a zombie until then), which a
server restarting its job manager in-process may leave for a while.
"""

from __future__ import annotations

__all__ = ["EXIT_FILE_NAME", "PRIVATE_DIR_NAME", "LocalRunner"]

import asyncio
import collections
import errno
import json
import logging
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from . import supervisor
from .base import LaunchSpec, Runner, RunOutcome, RunStatus

PRIVATE_DIR_NAME = ".ocps"
"""Directory inside a job's work dir for files OCPS itself writes."""

EXIT_FILE_NAME = "exit.json"
"""File in the private directory where the supervisor writes the exit."""

_SUPERVISOR_PATH = pathlib.Path(supervisor.__file__).resolve()

_EXIT_FILE_POLL = 0.01
"""Seconds between checks for the exit file of a re-adopted job."""

_EXIT_FILE_WAIT = 2.0
"""Seconds to wait for the exit file of an ended job before calling it
lost, while its supervisor lives."""

_Key = tuple[int, int | None]

_NO_NOTICE = "no notice"
"""Result of an end notice that will not come: the supervisor ended."""

_RUN_STATUS = {
    supervisor.STATUS_EXITED: RunStatus.EXITED,
    supervisor.STATUS_TIMEOUT: RunStatus.TIMEOUT,
    supervisor.STATUS_CANCELLED: RunStatus.CANCELLED,
}


class LocalRunner(Runner):
    """Run each job as a local process group under the supervisor.

    Parameters
    ----------
    kill_grace : `float`
        Seconds between SIGTERM and SIGKILL when a job is stopped.
    python : `str`
        Interpreter that runs the supervisor.
    log : `logging.Logger` or `None`
        Parent logger; a child ``local_runner`` of it is used.
    """

    name = "local"

    def __init__(
        self,
        *,
        kill_grace: float = 5.0,
        python: str = sys.executable,
        log: logging.Logger | None = None,
    ) -> None:
        self.kill_grace = kill_grace
        self.python = python
        parent_log = log if log is not None else logging.getLogger("ocps")
        self.log = parent_log.getChild("local_runner")
        self._supervisor: _SupervisorProcess | None = None
        self._launch_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        # Futures of the supervisor's replies, in request order.
        self._replies: collections.deque[asyncio.Future[dict[str, Any]]] = (
            collections.deque()
        )
        # End notices of jobs of the current supervisor, by pid and start
        # time: the exit file's text, or _NO_NOTICE if the supervisor
        # ended first.
        self._notices: dict[_Key, asyncio.Future[str | None]] = {}

    async def close(self) -> None:
        """Close the supervisor's stdin; it runs on until its jobs end.

        If none of its jobs runs, wait (up to 5 seconds) for it to exit.
        """
        process, self._supervisor = self._supervisor, None
        if process is not None:
            process.writer.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            if all(notice.done() for notice in self._notices.values()):
                try:
                    await asyncio.wait_for(asyncio.shield(reader), 5)
                except TimeoutError:
                    pass
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        self._supervisor_gone()

    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        """Start the job under the supervisor; see `Runner.launch`.

        Raises
        ------
        OSError
            Raised if the command is not found or not executable, or the
            job cannot be started.
        """
        if not spec.argv:
            raise OSError(errno.EINVAL, "empty command")
        # The supervisor resolves the command and prepares the private
        # directory: file system calls there keep this event loop free.
        exit_path = spec.work_dir / PRIVATE_DIR_NAME / EXIT_FILE_NAME
        request = {
            "argv": list(spec.argv),
            "env": dict(spec.env),
            "work_dir": str(spec.work_dir),
            "stdout": str(spec.stdout_path),
            "stderr": str(spec.stderr_path),
            "log_limit": spec.log_limit,
            "time_limit": spec.time_limit,
            "kill_grace": self.kill_grace,
            "exit_file": str(exit_path),
        }
        reply, supervisor_pid, supervisor_ticks = await self._request(request)
        if "error" in reply:
            raise OSError(reply.get("errno", errno.EAGAIN), reply["error"])
        return {
            "pid": reply["pid"],
            "start_ticks": reply["start_ticks"],
            "supervisor_pid": supervisor_pid,
            "supervisor_start_ticks": supervisor_ticks,
            "exit_file": str(exit_path),
        }

    async def _request(
        self, request: dict[str, Any]
    ) -> tuple[dict[str, Any], int, int | None]:
        """Send one launch request; return the reply and the pid and start
        time of the supervisor that answered.

        Requests are written in turn but not answered in lock step: the
        supervisor answers in order, so replies match the queued futures.
        """
        loop = asyncio.get_running_loop()
        async with self._launch_lock:
            process = self._supervisor
            if process is None or process.popen.poll() is not None:
                process = await self._start_supervisor()
            reply: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._replies.append(reply)
            try:
                process.writer.write(json.dumps(request).encode() + b"\n")
                await process.writer.drain()
            except (ConnectionError, BrokenPipeError) as e:
                if reply in self._replies:
                    self._replies.remove(reply)
                raise OSError(errno.EPIPE, f"the job supervisor ended: {e}") from e
        return await reply, process.popen.pid, process.start_ticks

    async def _start_supervisor(self) -> _SupervisorProcess:
        """Start a supervisor and the task that reads its output."""
        if self._reader is not None:
            # The previous supervisor ended; its reader has seen the end.
            await asyncio.gather(self._reader, return_exceptions=True)
        process = await _SupervisorProcess.start(self.python)
        self._supervisor = process
        self._reader = asyncio.create_task(self._read_supervisor(process))
        return process

    async def _read_supervisor(self, process: _SupervisorProcess) -> None:
        """Hand the supervisor's replies and end notices to their futures
        until its output ends."""
        loop = asyncio.get_running_loop()
        try:
            while line := await process.reader.readline():
                try:
                    message = json.loads(line)
                    if "log" in message:
                        self.log.error(message["log"])
                        continue
                    if "ended" in message:
                        key = (message["ended"], message["start_ticks"])
                        notice = self._notices.get(key)
                        if notice is not None and not notice.done():
                            notice.set_result(message["exit"])
                        continue
                    if "pid" in message:
                        key = (message["pid"], message["start_ticks"])
                        self._notices[key] = loop.create_future()
                    reply = self._replies.popleft()
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    self.log.error(f"unexpected output of the job supervisor: {e!r}")
                    continue
                if not reply.done():
                    reply.set_result(message)
        finally:
            self._supervisor_gone()
        # Its output has ended, so it is ending too.
        await process.wait()

    def _supervisor_gone(self) -> None:
        """Fail waiting requests; waiting jobs fall back to their pidfd."""
        while self._replies:
            reply = self._replies.popleft()
            if not reply.done():
                reply.set_exception(OSError(errno.EPIPE, "the job supervisor ended"))
        for notice in self._notices.values():
            if not notice.done():
                notice.set_result(_NO_NOTICE)

    async def wait_started(self, job_id: str, runner_state: dict[str, Any]) -> None:
        """Return at once: a local job runs as soon as it is launched."""

    async def wait_finished(
        self, job_id: str, runner_state: dict[str, Any]
    ) -> RunOutcome:
        """Wait for the job to end, then read its exit.

        A job of the current supervisor ends with the supervisor's notice,
        which carries the exit file's text; any other job (re-adopted, or
        whose supervisor ended first) through a pidfd and its exit file.
        """
        key = (runner_state["pid"], runner_state["start_ticks"])
        notice = self._notices.get(key)
        if notice is not None:
            text = await asyncio.shield(notice)
            self._notices.pop(key, None)
            if text is not _NO_NOTICE:
                return self._parse_exit(runner_state, text)

        pidfd = self._open_pidfd(runner_state["pid"], runner_state["start_ticks"])
        if pidfd is not None:
            try:
                await _readable(pidfd)
            finally:
                os.close(pidfd)
        return await self._wait_exit_file(runner_state)

    async def _wait_exit_file(self, runner_state: dict[str, Any]) -> RunOutcome:
        """Read the exit file of an ended job, waiting for it while its
        supervisor lives (it writes the file just after reaping)."""
        exit_path = pathlib.Path(runner_state["exit_file"])
        give_up = time.monotonic() + _EXIT_FILE_WAIT
        while True:
            try:
                text = exit_path.read_text()
            except FileNotFoundError:
                if time.monotonic() < give_up and self._supervisor_alive(runner_state):
                    await asyncio.sleep(_EXIT_FILE_POLL)
                    continue
                return self._parse_exit(runner_state, None)
            return self._parse_exit(runner_state, text)

    async def terminate(self, job_id: str, runner_state: dict[str, Any]) -> None:
        """Ask the job's supervisor to stop the job's process group.

        The supervisor sends SIGTERM to the group, then SIGKILL after
        ``kill_grace`` seconds, and records the job as cancelled. Nothing
        happens if the supervisor is gone.
        """
        if "supervisor_pid" not in runner_state:
            # Journaled by a per-job supervisor (before ts_ocps had one
            # for all jobs), which stops its job on SIGTERM.
            pidfd = self._open_pidfd(runner_state["pid"], runner_state["start_ticks"])
            if pidfd is not None:
                try:
                    signal.pidfd_send_signal(pidfd, signal.SIGTERM)
                finally:
                    os.close(pidfd)
            return
        address = supervisor.control_address(
            runner_state["supervisor_pid"], runner_state["supervisor_start_ticks"]
        )
        message = f"stop {runner_state['pid']} {runner_state['start_ticks']}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(message.encode(), address)
            except (ConnectionRefusedError, FileNotFoundError) as e:
                self.log.warning(
                    f"job_id={job_id} aborted but its supervisor is gone: {e}"
                )

    async def reattach(self, job_id: str, runner_state: dict[str, Any]) -> bool:
        """Is the job still ours and running, or did it leave an exit
        file?"""
        pidfd = self._open_pidfd(runner_state["pid"], runner_state["start_ticks"])
        if pidfd is not None:
            os.close(pidfd)
            return True
        return pathlib.Path(runner_state["exit_file"]).is_file()

    def _supervisor_alive(self, runner_state: dict[str, Any]) -> bool:
        if "supervisor_pid" not in runner_state:
            # A per-job supervisor of old, whose pid was the job's "pid":
            # it wrote the exit file before it ended.
            return False
        pidfd = self._open_pidfd(
            runner_state["supervisor_pid"], runner_state["supervisor_start_ticks"]
        )
        if pidfd is None:
            return False
        try:
            # A readable pidfd means the process has ended.
            return not select.select([pidfd], [], [], 0)[0]
        finally:
            os.close(pidfd)

    def _open_pidfd(self, pid: int, start_ticks: int | None) -> int | None:
        """Return a pidfd of a process, or None if it is gone.

        The pidfd pins the process, so checking the start time after
        opening it rules out a reused pid.
        """
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if supervisor.read_start_ticks(pid) != start_ticks:
            os.close(pidfd)
            return None
        return pidfd

    def _parse_exit(self, runner_state: dict[str, Any], text: str | None) -> RunOutcome:
        """Return the outcome that an exit file's text records."""
        exit_path = runner_state["exit_file"]
        if text is None:
            return RunOutcome(
                RunStatus.LOST,
                message="job process lost during a restart of OCPS "
                "(it ended without a recorded exit status)",
            )
        try:
            data = json.loads(text)
            run_status = _RUN_STATUS[data["status"]]
            exit_code = int(data["exit_code"])
        except (ValueError, KeyError, TypeError) as e:
            return RunOutcome(RunStatus.LOST, message=f"unreadable {exit_path}: {e}")
        return RunOutcome(run_status, exit_code=exit_code)


class _SupervisorProcess:
    """The supervisor process and asyncio streams on its stdin and stdout.

    Not an `asyncio.subprocess.Process`: its transport kills a child that
    still runs when it is closed or collected, and the supervisor must
    outlive the runner.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.popen = popen
        self.reader = reader
        self.writer = writer
        self.start_ticks = supervisor.read_start_ticks(popen.pid)

    @classmethod
    async def start(cls, python: str) -> _SupervisorProcess:
        """Start a supervisor in a session of its own."""
        popen = subprocess.Popen(
            [python, "-I", "-S", str(_SUPERVISOR_PATH)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert popen.stdin is not None and popen.stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), popen.stdout
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, popen.stdin
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return cls(popen, reader, writer)

    async def wait(self) -> None:
        """Wait for the process to end and reap it."""
        try:
            pidfd = os.pidfd_open(self.popen.pid)
        except ProcessLookupError:
            pass
        else:
            try:
                await _readable(pidfd)
            finally:
                os.close(pidfd)
        self.popen.wait()


async def _readable(fd: int) -> None:
    """Wait until the event loop sees ``fd`` readable."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, ready.set_result, None)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
