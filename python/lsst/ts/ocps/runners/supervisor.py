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

"""The job supervisor: one process that runs and watches every job of a
`LocalRunner`, and outlives OCPS.

`LocalRunner` starts this file as a plain script (``python -I -S
supervisor.py``, standard library only) in a session of its own. It reads
one JSON launch request per line on stdin and answers each with one JSON
line on stdout, ``{"pid": N, "start_ticks": T}`` for the started job or
``{"error": "...", "errno": E}``. When a job has ended and its output is
copied, it writes ``{"ended": N, "start_ticks": T, "exit": TEXT}`` on
stdout, where TEXT is what it wrote into the job's exit file.

For each job it spawns the argv (``posix_spawn``, so no copy of this
process) in the job's work dir, in a new process group, with the given
environment; copies the job's stdout and stderr into two files (keeping
the first ``log_limit`` bytes of each, 0 for all, then one line saying
how many bytes were dropped; a file is created only once its stream has
a byte to keep, so a silent job leaves neither); stops the group after
``time_limit`` seconds or on a stop request (SIGTERM, then SIGKILL after
``kill_grace`` seconds); kills whatever the job left running in its group
when its main process ends, so that nothing holds the output pipes open;
and writes the exit file, atomically, as soon as it has reaped the job::

    {"status": "exited" | "timeout" | "cancelled", "exit_code": N}

where N is negative for a job killed by a signal.

Stop requests come as datagrams ``stop PID START_TICKS`` on an abstract
Unix socket named by `control_address`, from any process of this user
(the kernel vouches for the sender's uid), so that an OCPS started after
a crash can stop the jobs it re-adopted.

When stdin closes (OCPS ended, even by kill -9) the supervisor takes no
new jobs but supervises the ones it has, writing their exit files, and
exits after the last one.

Why one process for all jobs: forking a Python supervisor per job cost
about 1.2 ms of CPU per job (the fork and the copy-on-write faults of
both processes), more than running a trivial job itself. The price is a
shared fate: if this process is killed, every job it runs loses its
supervision (no time limit, no log copy, no exit file) and is reported
lost, where a supervisor per job confined that to one job. Nothing in
OCPS signals this process, which ignores SIGTERM, SIGINT and SIGHUP.
"""

__all__ = [
    "STATUS_CANCELLED",
    "STATUS_EXITED",
    "STATUS_TIMEOUT",
    "control_address",
    "find_program",
    "main",
    "read_start_ticks",
]

import errno
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

STATUS_EXITED = "exited"
"""Exit-file status of a job that ended on its own."""

STATUS_TIMEOUT = "timeout"
"""Exit-file status of a job stopped for exceeding its time limit."""

STATUS_CANCELLED = "cancelled"
"""Exit-file status of a job stopped by a stop request."""

_CHUNK = 65536

_UCRED = struct.Struct("3i")


def read_start_ticks(pid: int) -> int | None:
    """Return a process's start time in clock ticks after boot, or None if
    there is no such process.

    Together with the pid it identifies a process even if the pid is
    reused later.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces; fields resume after ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


def control_address(pid: int, start_ticks: int | None) -> str:
    """Return the abstract socket address of a supervisor's stop requests.

    Parameters
    ----------
    pid : `int`
        The supervisor's pid.
    start_ticks : `int` or `None`
        Its start time, from `read_start_ticks`.

    Returns
    -------
    address : `str`
        The address, starting with a NUL character (abstract namespace).
    """
    return f"\0ocps-supervisor-{pid}-{start_ticks}"


def find_program(program: str, search_path: str, cwd: str) -> str | None:
    """Return the executable file that runs ``program``, or None.

    Parameters
    ----------
    program : `str`
        A path (if it holds a "/") or a name to look up.
    search_path : `str`
        Directories to look in, as in the PATH environment variable; an
        empty entry is the current directory.
    cwd : `str`
        The directory the program runs in, against which relative paths
        are resolved.

    Returns
    -------
    path : `str` or `None`
        The file, as an absolute path if ``cwd`` is one, or None if there
        is no executable regular file.
    """
    if "/" in program:
        candidates = [program]
    else:
        candidates = [
            os.path.join(directory, program)
            for directory in search_path.split(os.pathsep)
        ]
    for candidate in candidates:
        candidate = os.path.join(cwd, candidate)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class _Capture:
    """Copy one pipe into a file, keeping at most ``limit`` bytes.

    The file is created when there is a first byte to write, so a job
    that writes nothing to a stream costs no file for it.
    """

    def __init__(self, read_fd: int, path: str, limit: int) -> None:
        self.read_fd = read_fd
        self.path = path
        self.file_fd = -1
        self.limit = limit
        self.kept = 0
        self.dropped = 0

    def copy(self) -> bool:
        """Copy what is available; return False at end of file."""
        data = os.read(self.read_fd, _CHUNK)
        if not data:
            return False
        if self.limit > 0:
            room = max(0, self.limit - self.kept)
            self.dropped += max(0, len(data) - room)
            data = data[:room]
        if data:
            self.write(data)
            self.kept += len(data)
        return True

    def write(self, data: bytes) -> None:
        """Append to the file, creating it if needed."""
        if self.file_fd < 0:
            try:
                self.file_fd = _open_append(self.path)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self.file_fd = _open_append(self.path)
        os.write(self.file_fd, data)

    def close(self) -> None:
        """Add the note of dropped bytes, if any, and close both ends."""
        if self.dropped:
            note = f"\n[ocps: output limit of {self.limit} bytes reached; "
            note += f"{self.dropped} more bytes dropped]\n"
            self.write(note.encode())
        if self.file_fd >= 0:
            os.close(self.file_fd)
        os.close(self.read_fd)


class _Job:
    """One running job: its process, output copies, limits and exit."""

    def __init__(self, request: dict[str, Any], pid: int, out_fd: int, err_fd: int):
        self.pid = pid
        self.start_ticks = read_start_ticks(pid)
        self.pidfd = os.pidfd_open(pid)
        limit = int(request["log_limit"])
        self.captures = {
            out_fd: _Capture(out_fd, request["stdout"], limit),
            err_fd: _Capture(err_fd, request["stderr"], limit),
        }
        self.exit_file = request["exit_file"]
        self.kill_grace = float(request["kill_grace"])
        time_limit = float(request["time_limit"])
        self.deadline = time.monotonic() + time_limit if time_limit > 0 else None
        self.kill_at: float | None = None
        self.status = STATUS_EXITED
        self.exit_text: str | None = None

    def stop(self, status: str) -> None:
        """Send SIGTERM to the group, SIGKILL after the grace time."""
        if self.kill_at is None and self.exit_text is None:
            self.status = status
            _kill_group(self.pid, signal.SIGTERM)
            self.kill_at = time.monotonic() + self.kill_grace

    def due(self) -> float | None:
        """Return the next time this job needs attention, if any."""
        if self.exit_text is not None:
            return None
        if self.kill_at is not None:
            return self.kill_at
        return self.deadline

    def tick(self, now: float) -> None:
        """Act on a time limit or grace time that has passed."""
        if self.exit_text is not None:
            return
        if self.kill_at is not None:
            if now >= self.kill_at:
                _kill_group(self.pid, signal.SIGKILL)
                self.kill_at = self.deadline = None
        elif self.deadline is not None and now >= self.deadline:
            self.stop(STATUS_TIMEOUT)

    def reap(self) -> None:
        """Collect the ended job's exit and write the exit file."""
        # End the group before reaping, so that its id stays ours.
        _kill_group(self.pid, signal.SIGKILL)
        exit_code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        os.close(self.pidfd)
        self.exit_text = f'{{"status": "{self.status}", "exit_code": {exit_code}}}'
        _write_exit_file(self.exit_file, self.exit_text)


def _open_append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def _kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _write_exit_file(path: str, text: str) -> None:
    """Write the exit file atomically (a new file renamed into place).

    A reader never sees a partial file. No fsync: like the journal (WAL,
    synchronous=NORMAL), the file survives a crash of any process, not a
    power loss.
    """
    temporary = path + ".new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.rename(temporary, path)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; a signal may cut a pipe write short."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Supervisor:
    """The poll loop over requests, stop datagrams and every job."""

    def __init__(self) -> None:
        self.jobs: dict[int, _Job] = {}
        # Every fd watched, to the job it belongs to (None for our own).
        self.owners: dict[int, _Job | None] = {}
        self.poller = select.poll()
        self.replies: list[dict[str, Any]] = []
        self.stdin_open = True
        self.stdout_open = True
        self.pending = b""

        self.control = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
        )
        self.control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.control.bind(control_address(os.getpid(), read_start_ticks(os.getpid())))
        for fd in (0, self.control.fileno()):
            self._watch(fd, None)

    def run(self) -> None:
        """Serve until stdin has closed and the last job has ended."""
        while self.stdin_open or self.jobs:
            due = [t for t in map(_Job.due, self.jobs.values()) if t is not None]
            timeout_ms = None
            if due:
                timeout_ms = max(0, int((min(due) - time.monotonic()) * 1000) + 1)
            for fd, _ in self.poller.poll(timeout_ms):
                try:
                    self._on_ready(fd)
                except Exception as e:
                    # Keep supervising the other jobs; tell OCPS.
                    self.replies.append({"log": f"supervisor error: {e!r}"})
            now = time.monotonic()
            for job in self.jobs.values():
                job.tick(now)
            self._flush()

    def _watch(self, fd: int, job: _Job | None) -> None:
        self.owners[fd] = job
        self.poller.register(fd, select.POLLIN)

    def _unwatch(self, fd: int) -> None:
        self.poller.unregister(fd)
        del self.owners[fd]

    def _on_ready(self, fd: int) -> None:
        if fd not in self.owners:
            return
        job = self.owners[fd]
        if job is None:
            if fd == 0:
                self._read_requests()
            else:
                self._read_control()
        elif fd == job.pidfd:
            self._unwatch(fd)
            job.reap()
            self._maybe_done(job)
        elif not job.captures[fd].copy():
            self._unwatch(fd)
            job.captures.pop(fd).close()
            self._maybe_done(job)

    def _maybe_done(self, job: _Job) -> None:
        """Report a job whose exit is known and whose output is copied."""
        if job.exit_text is None or job.captures:
            return
        del self.jobs[job.pid]
        notice = {"ended": job.pid, "start_ticks": job.start_ticks}
        self.replies.append(notice | {"exit": job.exit_text})

    def _read_requests(self) -> None:
        data = os.read(0, _CHUNK)
        if not data:
            self.stdin_open = False
            self._unwatch(0)
            return
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            try:
                reply = self._launch(line)
            except Exception as e:
                reply = {"error": f"supervisor error: {e!r}", "errno": errno.EIO}
            self.replies.append(reply)

    def _read_control(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.control.recvmsg(
                    256, socket.CMSG_SPACE(_UCRED.size)
                )
            except BlockingIOError:
                return
            uid = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    uid = _UCRED.unpack(value[: _UCRED.size])[1]
            words = data.split()
            if uid != os.getuid() or len(words) != 3 or words[0] != b"stop":
                continue
            job = self.jobs.get(int(words[1]))
            if job is not None and str(job.start_ticks).encode() == words[2]:
                job.stop(STATUS_CANCELLED)

    def _launch(self, line: bytes) -> dict[str, Any]:
        """Start one job; return the reply."""
        try:
            request = json.loads(line)
            argv = list(request["argv"])
            env = dict(request["env"])
            work_dir = request["work_dir"]
            path = find_program(argv[0], env.get("PATH", os.defpath), work_dir)
            exit_file = request["exit_file"]
        except (ValueError, LookupError, TypeError, AttributeError) as e:
            return {"error": f"bad launch request: {e!r}", "errno": errno.EINVAL}
        if path is None:
            message = f"command not found or not executable: {argv[0]!r}"
            return {"error": message, "errno": errno.ENOENT}

        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        try:
            os.chdir(work_dir)
            try:
                # An exit file of an earlier run must not pass for this
                # run's.
                os.makedirs(os.path.dirname(exit_file), exist_ok=True)
                try:
                    os.unlink(exit_file)
                except FileNotFoundError:
                    pass
                pid = os.posix_spawn(
                    path,
                    argv,
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_DUP2, out_write, 1),
                        (os.POSIX_SPAWN_DUP2, err_write, 2),
                    ],
                    setpgroup=0,
                    setsigmask=(),
                    setsigdef=_DEFAULT_SIGNALS,
                )
            finally:
                os.chdir("/")
        except OSError as e:
            os.close(out_read)
            os.close(err_read)
            code = e.errno or errno.EIO
            return {"error": f"cannot start {argv[0]!r}: {e}", "errno": code}
        finally:
            os.close(out_write)
            os.close(err_write)

        job = _Job(request, pid, out_read, err_read)
        self.jobs[pid] = job
        for fd in (job.pidfd, out_read, err_read):
            self._watch(fd, job)
        return {"pid": pid, "start_ticks": job.start_ticks}

    def _flush(self) -> None:
        """Send the replies and notices of this round."""
        replies, self.replies = self.replies, []
        if not replies or not self.stdout_open:
            return
        text = "".join(json.dumps(reply) + "\n" for reply in replies)
        try:
            _write_all(1, text.encode())
        except BrokenPipeError:
            # OCPS is gone; the jobs' exit files remain.
            self.stdout_open = False


_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE)
"""Signals a job starts with at their default disposition."""


def main() -> int:
    """Supervise jobs until stdin closes and the last job has ended."""
    for signum in _DEFAULT_SIGNALS[:3]:
        signal.signal(signum, signal.SIG_IGN)
    os.chdir("/")
    _Supervisor().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
