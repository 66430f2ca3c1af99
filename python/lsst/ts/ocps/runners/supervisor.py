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

"""A per-job supervisor process that outlives a crash of the OCPS server.

Run as a plain script (``python -I -S supervisor.py ...``) so that it
starts fast and imports nothing but the standard library::

    supervisor.py WORK_DIR STDOUT STDERR LOG_LIMIT TIME_LIMIT KILL_GRACE
        EXIT_FILE -- ARGV...

It runs ARGV as its child in a new process group, copies the child's
stdout and stderr into the two files (keeping the first LOG_LIMIT bytes
of each, 0 for all, then one line saying how many bytes were dropped),
stops the child's group on SIGTERM or after TIME_LIMIT seconds (SIGTERM,
then SIGKILL after KILL_GRACE seconds), and when the child has ended
writes EXIT_FILE atomically::

    {"status": "exited" | "timeout" | "cancelled", "exit_code": N}

where N is negative for a child killed by a signal. Whatever the job left
running in its process group is killed when its main process ends, so
that nothing holds the output pipes open.
"""

__all__ = ["ExitStatus", "main"]

import enum
import json
import os
import select
import signal
import sys
import time

_CHUNK = 65536


class ExitStatus(enum.StrEnum):
    """How the supervised child ended, as written to the exit file."""

    EXITED = "exited"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


class _Capture:
    """Copy one pipe into a file, keeping at most ``limit`` bytes."""

    def __init__(self, read_fd: int, path: str, limit: int) -> None:
        self.read_fd = read_fd
        self.file_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
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
            os.write(self.file_fd, data)
            self.kept += len(data)
        return True

    def close(self) -> None:
        if self.dropped:
            note = f"\n[ocps: output limit of {self.limit} bytes reached; "
            note += f"{self.dropped} more bytes dropped]\n"
            os.write(self.file_fd, note.encode())
        os.close(self.file_fd)
        os.close(self.read_fd)


def _kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _write_exit_file(path: str, status: ExitStatus, exit_code: int) -> None:
    temp_path = f"{path}.tmp"
    with open(temp_path, "w") as file:
        json.dump({"status": str(status), "exit_code": exit_code}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp_path, path)


def _spawn(argv: list[str], stdout_fd: int, stderr_fd: int) -> int:
    """Start the child in its own process group, stdin from /dev/null."""
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, stdout_fd, 1),
        (os.POSIX_SPAWN_DUP2, stderr_fd, 2),
    ]
    return os.posix_spawnp(
        argv[0],
        argv,
        os.environ,
        file_actions=file_actions,
        setpgroup=0,
        setsigmask=(),
        setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE),
    )


def run(
    argv: list[str],
    stdout_path: str,
    stderr_path: str,
    log_limit: int,
    time_limit: float,
    kill_grace: float,
    exit_path: str,
) -> None:
    """Run ``argv`` to its end and write the exit file; see the module
    docstring."""
    # The runner starts this process with SIGTERM blocked, so that a stop
    # request arriving before the handler is set is kept, not fatal.
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])

    out_read, out_write = os.pipe2(os.O_CLOEXEC)
    err_read, err_write = os.pipe2(os.O_CLOEXEC)
    captures = {
        out_read: _Capture(out_read, stdout_path, log_limit),
        err_read: _Capture(err_read, stderr_path, log_limit),
    }
    try:
        pid = _spawn(argv, out_write, err_write)
    except OSError as e:
        os.write(
            captures[err_read].file_fd, f"ocps: cannot run {argv[0]!r}: {e}\n".encode()
        )
        _write_exit_file(exit_path, ExitStatus.EXITED, 127)
        return
    finally:
        os.close(out_write)
        os.close(err_write)
    pidfd = os.pidfd_open(pid)

    poller = select.poll()
    for fd in (wake_read, pidfd, out_read, err_read):
        poller.register(fd, select.POLLIN)
    status = ExitStatus.EXITED
    deadline = time.monotonic() + time_limit if time_limit > 0 else None
    kill_at: float | None = None
    exit_code: int | None = None
    while exit_code is None or captures:
        # Sleep until output, a signal, the child's end or the next deadline.
        due = (
            [t for t in (deadline, kill_at) if t is not None]
            if exit_code is None
            else []
        )
        timeout_ms = None
        if due:
            timeout_ms = max(0, int((min(due) - time.monotonic()) * 1000) + 1)
        try:
            events = poller.poll(timeout_ms)
        except InterruptedError:
            events = []
        now = time.monotonic()

        stop = False
        for fd, _ in events:
            if fd == wake_read:
                signums = os.read(wake_read, 64)
                stop = stop or signal.SIGTERM in signums
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
        if deadline is not None and now >= deadline and status is ExitStatus.EXITED:
            status = ExitStatus.TIMEOUT
            stop = True
        if stop and kill_at is None:
            if status is ExitStatus.EXITED:
                status = ExitStatus.CANCELLED
            _kill_group(pid, signal.SIGTERM)
            kill_at = now + kill_grace
        if kill_at is not None and now >= kill_at:
            _kill_group(pid, signal.SIGKILL)
            kill_at = None
            deadline = None
    _write_exit_file(exit_path, status, exit_code)


def main(args: list[str]) -> int:
    """Parse the command line (see the module docstring) and run."""
    if len(args) < 9 or args[7] != "--":
        sys.stderr.write(f"usage: {__doc__}")
        return 2
    work_dir, stdout_path, stderr_path, log_limit, time_limit, kill_grace = args[:6]
    exit_path = args[6]
    os.chdir(work_dir)
    run(
        argv=args[8:],
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        log_limit=int(log_limit),
        time_limit=float(time_limit),
        kill_grace=float(kill_grace),
        exit_path=exit_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
