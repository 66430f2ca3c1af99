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

"""The job launcher and the per-job supervisors that outlive OCPS.

`LocalRunner` starts this file once as a plain script
(``python -I -S supervisor.py``, standard library only) and keeps it as
its launcher: it reads one JSON launch request per line on stdin and
answers each with one JSON line on stdout, ``{"pid": N, "start_ticks":
T}`` or ``{"error": "..."}``. For each request it forks a supervisor,
which is cheap because the launcher has its modules loaded already;
starting a fresh interpreter per job would cost more than the job
itself for short jobs. The launcher exits when its stdin closes, for
example when the OCPS server dies; the supervisors it forked live on.

A supervisor starts a new session, runs the job's argv as its child in a
new process group with the given environment and work dir, copies the
child's stdout and stderr into two files (keeping the first ``log_limit``
bytes of each, 0 for all, then one line saying how many bytes were
dropped; a file is created only once its stream has a byte to keep, so
a silent job leaves neither), stops the child's group on SIGTERM or
after ``time_limit`` seconds (SIGTERM, then SIGKILL after ``kill_grace``
seconds), and when the child has ended writes ``exit_file``::

    {"status": "exited" | "timeout" | "cancelled", "exit_code": N}

where N is negative for a child killed by a signal. Whatever the job left
running in its process group is killed when its main process ends, so
that nothing holds the output pipes open.
"""

__all__ = [
    "STATUS_CANCELLED",
    "STATUS_EXITED",
    "STATUS_TIMEOUT",
    "find_program",
    "main",
    "read_start_ticks",
    "supervise",
]

import errno
import json
import os
import select
import signal
import sys
import time
from typing import Any

STATUS_EXITED = "exited"
"""Exit-file status of a job that ended on its own."""

STATUS_TIMEOUT = "timeout"
"""Exit-file status of a job stopped for exceeding its time limit."""

STATUS_CANCELLED = "cancelled"
"""Exit-file status of a job stopped by SIGTERM to its supervisor."""

_CHUNK = 65536


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
        if self.dropped:
            note = f"\n[ocps: output limit of {self.limit} bytes reached; "
            note += f"{self.dropped} more bytes dropped]\n"
            self.write(note.encode())
        if self.file_fd >= 0:
            os.close(self.file_fd)
        os.close(self.read_fd)


def _open_append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def _kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _write_exit_file(path: str, status: str, exit_code: int) -> None:
    """Write the exit file.

    No temporary file and rename: the runner reads the file only once this
    process has ended, so it never sees a write in progress; a supervisor
    killed mid-write leaves a file that does not parse, which the runner
    reports as a lost job. No fsync either: like the journal (WAL,
    synchronous=NORMAL), this survives a crash of any process, not a
    power loss.
    """
    text = f'{{"status": "{status}", "exit_code": {int(exit_code)}}}'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def supervise(request: dict[str, Any]) -> None:
    """Run one job to its end and write its exit file.

    Parameters
    ----------
    request : `dict` [`str`, `typing.Any`]
        The launch request: ``path`` (resolved executable), ``argv``,
        ``env``, ``work_dir``, ``stdout``, ``stderr``, ``log_limit``,
        ``time_limit``, ``kill_grace`` and ``exit_file``.

    Notes
    -----
    Runs with SIGTERM blocked on entry (inherited from the launcher), so
    that a stop request arriving before the handler is set is kept, not
    fatal.
    """
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])

    out_read, out_write = os.pipe2(os.O_CLOEXEC)
    err_read, err_write = os.pipe2(os.O_CLOEXEC)
    limit = int(request["log_limit"])
    captures = {
        out_read: _Capture(out_read, request["stdout"], limit),
        err_read: _Capture(err_read, request["stderr"], limit),
    }
    exit_path = request["exit_file"]
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_write, 1),
        (os.POSIX_SPAWN_DUP2, err_write, 2),
    ]
    try:
        pid = os.posix_spawn(
            request["path"],
            request["argv"],
            request["env"],
            file_actions=file_actions,
            setpgroup=0,
            setsigmask=(),
            setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE),
        )
    except OSError as e:
        message = f"ocps: cannot run {request['argv'][0]!r}: {e}\n"
        captures[err_read].write(message.encode())
        captures[err_read].close()
        captures[out_read].close()
        _write_exit_file(exit_path, STATUS_EXITED, 127)
        return
    finally:
        os.close(out_write)
        os.close(err_write)
    pidfd = os.pidfd_open(pid)

    poller = select.poll()
    for fd in (wake_read, pidfd, out_read, err_read):
        poller.register(fd, select.POLLIN)
    status = STATUS_EXITED
    time_limit = float(request["time_limit"])
    deadline = time.monotonic() + time_limit if time_limit > 0 else None
    kill_at: float | None = None
    exit_code: int | None = None
    while exit_code is None or captures:
        # Sleep until output, a signal, the child's end or a deadline.
        due = [t for t in (deadline, kill_at) if t is not None and exit_code is None]
        timeout_ms = None
        if due:
            timeout_ms = max(0, int((min(due) - time.monotonic()) * 1000) + 1)
        events = poller.poll(timeout_ms)
        now = time.monotonic()

        stop = False
        for fd, _ in events:
            if fd == wake_read:
                stop = stop or signal.SIGTERM in os.read(wake_read, 64)
            elif fd == pidfd:
                # End the group before reaping, so that its id stays ours.
                _kill_group(pid, signal.SIGKILL)
                exit_code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                poller.unregister(pidfd)
                os.close(pidfd)
            elif fd in captures and not captures[fd].copy():
                poller.unregister(fd)
                captures.pop(fd).close()
        if exit_code is not None:
            continue

        if deadline is not None and now >= deadline and kill_at is None:
            status = STATUS_TIMEOUT
            stop = True
        if stop and kill_at is None:
            if status == STATUS_EXITED:
                status = STATUS_CANCELLED
            _kill_group(pid, signal.SIGTERM)
            kill_at = now + float(request["kill_grace"])
        elif kill_at is not None and now >= kill_at:
            _kill_group(pid, signal.SIGKILL)
            kill_at = deadline = None
    _write_exit_file(exit_path, status, exit_code)


def _become_supervisor(request: dict[str, Any], launcher_fds: list[int]) -> None:
    """In a freshly forked child: detach from the launcher, supervise the
    job, and exit without returning."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for fd in launcher_fds:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.chdir(request["work_dir"])
        os.makedirs(os.path.dirname(request["exit_file"]), exist_ok=True)
        supervise(request)
        code = 0
    except BaseException:
        # The supervisor's own complaints go to the job's stderr file. The
        # built-in hook prints the traceback without the traceback module,
        # which the launcher does not import: every module it holds makes
        # each fork dearer.
        try:
            log_fd = _open_append(request["stderr"])
            os.dup2(log_fd, 2)
            sys.excepthook(*sys.exc_info())
            sys.stderr.flush()
        except BaseException:
            pass  # Nowhere left to report it; the job is reported lost.
    finally:
        os._exit(code)


def _reap_children() -> list[int]:
    """Reap every ended child; return their pids."""
    reaped: list[int] = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append(pid)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; a signal may cut a pipe write short."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _end_notice(pid: int, start_ticks: int | None, exit_file: str) -> dict[str, Any]:
    """Return the notice of a reaped supervisor: its exit file's text, or
    None if it left none."""
    try:
        with open(exit_file, "rb") as file:
            text: str | None = file.read().decode(errors="replace")
    except OSError:
        text = None
    return {"ended": pid, "start_ticks": start_ticks, "exit": text}


def find_program(program: str, search_path: str) -> str | None:
    """Return the executable file that runs ``program``, or None.

    Parameters
    ----------
    program : `str`
        A path (if it holds a "/") or a name to look up.
    search_path : `str`
        Directories to look in, as in the PATH environment variable; an
        empty entry is the current directory.

    Returns
    -------
    path : `str` or `None`
        The file, or None if there is no executable regular file.
    """
    if "/" in program:
        candidates = [program]
    else:
        candidates = [
            os.path.join(directory or ".", program)
            for directory in search_path.split(os.pathsep)
        ]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _answer(
    request_line: bytes,
    launcher_fds: list[int],
    supervisors: dict[int, tuple[int | None, str]],
) -> dict[str, Any]:
    """Start a supervisor for one request, add it to ``supervisors`` and
    return the reply."""
    try:
        request = json.loads(request_line)
        program = request["argv"][0]
        path = find_program(program, request["env"].get("PATH", os.defpath))
    except (ValueError, LookupError, TypeError, AttributeError) as e:
        return {"error": f"bad launch request: {e!r}", "errno": errno.EINVAL}
    if path is None:
        message = f"command not found or not executable: {program!r}"
        return {"error": message, "errno": errno.ENOENT}
    request["path"] = path

    # An exit file left by an earlier run of the same job must not be read
    # as this run's. The supervisor creates the private directory.
    try:
        os.unlink(request["exit_file"])
    except FileNotFoundError:
        pass
    try:
        pid = os.fork()
    except OSError as e:
        return {"error": f"cannot start a supervisor: {e}", "errno": errno.EAGAIN}
    if pid == 0:
        _become_supervisor(request, launcher_fds)
    # The child cannot be reaped before this read, so the pid is its own.
    start_ticks = read_start_ticks(pid)
    supervisors[pid] = (start_ticks, request["exit_file"])
    return {"pid": pid, "start_ticks": start_ticks}


def main() -> int:
    """Serve launch requests on stdin until it closes."""
    # Children inherit the blocked SIGTERM; see `supervise`.
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    launcher_fds = [wake_read, wake_write]

    # Supervisors started here and not yet reaped: pid -> start time and
    # exit file.
    supervisors: dict[int, tuple[int | None, str]] = {}
    poller = select.poll()
    poller.register(0, select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    pending = b""
    try:
        while True:
            replies = []
            for fd, _ in poller.poll():
                if fd == wake_read:
                    os.read(wake_read, 4096)
                    for pid in _reap_children():
                        if pid in supervisors:
                            start_ticks, exit_file = supervisors.pop(pid)
                            replies.append(_end_notice(pid, start_ticks, exit_file))
                    continue
                data = os.read(0, _CHUNK)
                if not data:
                    return 0
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    replies.append(_answer(line, launcher_fds, supervisors))
            if replies:
                text = "".join(json.dumps(reply) + "\n" for reply in replies)
                _write_all(1, text.encode())
    except BrokenPipeError:
        # The runner is gone; the supervisors live on without notices.
        return 0


if __name__ == "__main__":
    sys.exit(main())
