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

"""Run jobs as local processes, each under a supervisor that outlives
OCPS.

Design: re-adopt, not kill. The runner keeps one launcher process
(``supervisor.py``, stdlib only; see that module), which forks a
supervisor per job. A supervisor runs in its own session, runs the job's
argv in its own process group, caps its logs, enforces its time limit and
writes the job's exit status to ``<work_dir>/.ocps/exit.json``. The
runner keeps no durable state: `LocalRunner.launch` returns the
supervisor's pid and start time (field 22 of ``/proc/<pid>/stat``),
which the job manager journals. If the OCPS server dies, even by kill -9,
the supervisors and their jobs run on; the next server calls
`LocalRunner.reattach`, which recognises a supervisor by pid and start
time, waits for it to end through a pidfd watched by the event loop (no
polling) and reads the job's real exit code from ``exit.json``. A
supervisor that is gone without an exit file means the job was lost.

Known shortcoming: if something other than OCPS kills a supervisor, its
job runs on unsupervised (no time limit, no log copy) while the job
manager reports the job lost. Removing it would need a second watcher of
the job's process group, which is not worth a process per job as long as
only OCPS signals its supervisors.
"""

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
import sys
from typing import Any

from . import supervisor
from .base import LaunchSpec, Runner, RunOutcome, RunStatus

PRIVATE_DIR_NAME = ".ocps"
"""Directory inside a job's work dir for files OCPS itself writes."""

EXIT_FILE_NAME = "exit.json"
"""File in the private directory where the supervisor writes the exit."""

_SUPERVISOR_PATH = pathlib.Path(supervisor.__file__).resolve()

_Key = tuple[int, int | None]

_NO_NOTICE = "no notice"
"""Result of an end notice that will not come: the launcher ended."""

_RUN_STATUS = {
    supervisor.STATUS_EXITED: RunStatus.EXITED,
    supervisor.STATUS_TIMEOUT: RunStatus.TIMEOUT,
    supervisor.STATUS_CANCELLED: RunStatus.CANCELLED,
}


class LocalRunner(Runner):
    """Run each job as a local process group under a supervisor.

    Parameters
    ----------
    kill_grace : `float`
        Seconds between SIGTERM and SIGKILL when a job is stopped.
    python : `str`
        Interpreter that runs the launcher.
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
        self._launcher: asyncio.subprocess.Process | None = None
        self._launch_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        # Futures of the launcher's replies, in request order.
        self._replies: collections.deque[asyncio.Future[dict[str, Any]]] = (
            collections.deque()
        )
        # End notices of supervisors of the current launcher, by pid and
        # start time: the exit file's text, None if it left none, or
        # _NO_NOTICE if the launcher ended first.
        self._notices: dict[_Key, asyncio.Future[str | None]] = {}

    async def close(self) -> None:
        """Stop the launcher; supervisors and their jobs run on."""
        launcher, self._launcher = self._launcher, None
        if launcher is not None and launcher.returncode is None:
            assert launcher.stdin is not None
            launcher.stdin.close()
            try:
                await asyncio.wait_for(launcher.wait(), 5)
            except TimeoutError:
                launcher.kill()
                await launcher.wait()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            self._launcher_gone()

    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        """Start the job under a new supervisor; see `Runner.launch`.

        Raises
        ------
        OSError
            Raised if the command is not found or not executable, or the
            supervisor cannot be started.
        """
        if not spec.argv:
            raise OSError(errno.EINVAL, "empty command")
        # The launcher resolves the command and prepares the private
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
        reply = await self._request(request)
        if "error" in reply:
            raise OSError(reply.get("errno", errno.EAGAIN), reply["error"])
        return {
            "pid": reply["pid"],
            "start_ticks": reply["start_ticks"],
            "exit_file": str(exit_path),
        }

    async def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one launch request to the launcher and return its reply.

        Requests are written in turn but not answered in lock step: the
        launcher answers in order, so replies match the queued futures.
        """
        loop = asyncio.get_running_loop()
        async with self._launch_lock:
            launcher = self._launcher
            if launcher is None or launcher.returncode is not None:
                launcher = await self._start_launcher()
            assert launcher.stdin is not None
            reply: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._replies.append(reply)
            try:
                launcher.stdin.write(json.dumps(request).encode() + b"\n")
                await launcher.stdin.drain()
            except (ConnectionError, BrokenPipeError) as e:
                if reply in self._replies:
                    self._replies.remove(reply)
                raise OSError(errno.EPIPE, f"the job launcher ended: {e}") from e
        return await reply

    async def _start_launcher(self) -> asyncio.subprocess.Process:
        """Start a launcher and the task that reads its output."""
        if self._reader is not None:
            # The previous launcher ended; its reader has seen the end.
            await asyncio.gather(self._reader, return_exceptions=True)
        launcher = await asyncio.create_subprocess_exec(
            self.python,
            "-I",
            "-S",
            str(_SUPERVISOR_PATH),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._launcher = launcher
        self._reader = asyncio.create_task(self._read_launcher(launcher))
        return launcher

    async def _read_launcher(self, launcher: asyncio.subprocess.Process) -> None:
        """Hand the launcher's replies and end notices to their futures
        until its output ends."""
        assert launcher.stdout is not None
        try:
            while line := await launcher.stdout.readline():
                try:
                    message = json.loads(line)
                    if "ended" in message:
                        key = (message["ended"], message["start_ticks"])
                        notice = self._notices.get(key)
                        if notice is not None and not notice.done():
                            notice.set_result(message["exit"])
                        continue
                    if "pid" in message:
                        key = (message["pid"], message["start_ticks"])
                        loop = asyncio.get_running_loop()
                        self._notices[key] = loop.create_future()
                    reply = self._replies.popleft()
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    self.log.error(f"unexpected output of the job launcher: {e!r}")
                    continue
                if not reply.done():
                    reply.set_result(message)
        finally:
            self._launcher_gone()

    def _launcher_gone(self) -> None:
        """Fail waiting requests; waiting jobs fall back to their pidfd."""
        while self._replies:
            reply = self._replies.popleft()
            if not reply.done():
                reply.set_exception(OSError(errno.EPIPE, "the job launcher ended"))
        for notice in self._notices.values():
            if not notice.done():
                notice.set_result(_NO_NOTICE)

    async def wait_started(self, job_id: str, runner_state: dict[str, Any]) -> None:
        """Return at once: a local job runs as soon as it is launched."""

    async def wait_finished(
        self, job_id: str, runner_state: dict[str, Any]
    ) -> RunOutcome:
        """Wait for the supervisor to end, then read the job's exit.

        A job of the current launcher ends with the launcher's notice,
        which carries the exit file's text; any other job, or one whose
        launcher ended first, through a pidfd of its supervisor and its
        exit file.
        """
        key = (runner_state["pid"], runner_state["start_ticks"])
        notice = self._notices.get(key)
        if notice is not None:
            text = await asyncio.shield(notice)
            self._notices.pop(key, None)
            if text is not _NO_NOTICE:
                return self._parse_exit(runner_state, text)

        pidfd = self._open_pidfd(runner_state)
        if pidfd is not None:
            try:
                loop = asyncio.get_running_loop()
                ended = loop.create_future()
                loop.add_reader(pidfd, ended.set_result, None)
                try:
                    await ended
                finally:
                    loop.remove_reader(pidfd)
            finally:
                os.close(pidfd)
        return self._read_outcome(job_id, runner_state)

    async def terminate(self, job_id: str, runner_state: dict[str, Any]) -> None:
        """Ask the supervisor to stop the job's process group.

        The supervisor sends SIGTERM to the group, then SIGKILL after
        ``kill_grace`` seconds, and records the job as cancelled.
        """
        pidfd = self._open_pidfd(runner_state)
        if pidfd is None:
            return
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)

    async def reattach(self, job_id: str, runner_state: dict[str, Any]) -> bool:
        """Is the supervisor still ours and running, or did it leave an
        exit file?"""
        pidfd = self._open_pidfd(runner_state)
        if pidfd is not None:
            try:
                # A readable pidfd means the supervisor has ended.
                if not select.select([pidfd], [], [], 0)[0]:
                    return True
            finally:
                os.close(pidfd)
        return pathlib.Path(runner_state["exit_file"]).is_file()

    def _open_pidfd(self, runner_state: dict[str, Any]) -> int | None:
        """Return a pidfd of the job's supervisor, or None if it is gone.

        The pidfd pins the process, so checking the start time after
        opening it rules out a reused pid.
        """
        pid = runner_state["pid"]
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if supervisor.read_start_ticks(pid) != runner_state["start_ticks"]:
            os.close(pidfd)
            return None
        return pidfd

    def _read_outcome(self, job_id: str, runner_state: dict[str, Any]) -> RunOutcome:
        """Return the outcome recorded in the job's exit file."""
        try:
            text: str | None = pathlib.Path(runner_state["exit_file"]).read_text()
        except FileNotFoundError:
            text = None
        return self._parse_exit(runner_state, text)

    def _parse_exit(self, runner_state: dict[str, Any], text: str | None) -> RunOutcome:
        """Return the outcome that an exit file's text records."""
        exit_path = runner_state["exit_file"]
        if text is None:
            return RunOutcome(
                RunStatus.LOST,
                message="job process lost during a restart of OCPS "
                "(its supervisor ended without recording an exit status)",
            )
        try:
            data = json.loads(text)
            run_status = _RUN_STATUS[data["status"]]
            exit_code = int(data["exit_code"])
        except (ValueError, KeyError, TypeError) as e:
            return RunOutcome(RunStatus.LOST, message=f"unreadable {exit_path}: {e}")
        return RunOutcome(run_status, exit_code=exit_code)
