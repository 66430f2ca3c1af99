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

"""Asynchronous calls of the Slurm command-line tools and their parsing."""

__all__ = [
    "AccountingRecord",
    "QueueEntry",
    "SlurmCli",
    "SlurmCommandError",
    "SlurmUnavailableError",
    "parse_exit_code",
    "parse_show_job",
    "parse_squeue",
]

import asyncio
import collections.abc
import dataclasses
import logging
import os
import re

UNREACHABLE_PATTERNS = (
    "unable to contact slurm controller",
    "connection refused",
    "socket timed out",
    "zero bytes were transmitted",
    "communication connection failure",
    "slurm_receive_msg",
    "could not establish a configuration source",
    "unable to establish a connection",
)
"""Lower-case fragments of Slurm client errors that mean "try later"."""

FORMAT_ENV_VARS = (
    "SACCT_FORMAT",
    "SQUEUE_FORMAT",
    "SQUEUE_FORMAT2",
    "SQUEUE_SORT",
    "SLURM_TIME_FORMAT",
)
"""Variables that change the clients' output; removed from their env."""

TOOLS = ("sacct", "sbatch", "scancel", "scontrol", "squeue")
"""The Slurm client programs this module runs."""


class SlurmCommandError(OSError):
    """Raised if a Slurm client command failed for a lasting reason.

    Parameters
    ----------
    message : `str`
        What failed, with the command's own error text.
    stderr : `str`
        The command's standard error.
    """

    transient = False
    """Retrying the same request is not expected to help."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class SlurmUnavailableError(SlurmCommandError, ConnectionError):
    """Raised if the Slurm controller cannot be reached (or timed out).

    The job manager should report a job that failed this way as a
    transient error: the same request may succeed later.
    """

    transient = True
    """Retrying later may succeed."""


@dataclasses.dataclass(frozen=True)
class QueueEntry:
    """One job as ``squeue`` lists it.

    Parameters
    ----------
    slurm_id : `str`
        Slurm job id.
    state : `str`
        Long state name, e.g. ``PENDING`` or ``COMPLETED``.
    reason : `str`
        Why the job is in that state, e.g. ``Priority`` or ``None``.
    """

    slurm_id: str
    state: str
    reason: str


@dataclasses.dataclass(frozen=True)
class AccountingRecord:
    """One finished job as ``sacct`` reports it.

    Parameters
    ----------
    slurm_id : `str`
        Slurm job id.
    name : `str`
        Job name.
    state : `str`
        Final state, e.g. ``FAILED``; qualifiers such as ``by 0`` removed.
    exit_code : `int` or `None`
        Exit code; negative for the number of a killing signal.
    """

    slurm_id: str
    name: str
    state: str
    exit_code: int | None


def parse_exit_code(text: str) -> int | None:
    """Turn Slurm's ``code:signal`` exit code into one number.

    Parameters
    ----------
    text : `str`
        E.g. ``7:0`` (exit code 7) or ``0:15`` (killed by SIGTERM).

    Returns
    -------
    exit_code : `int` or `None`
        The exit code, minus the signal number if a signal ended the job
        and the code is 0, or None if ``text`` is not of that form.
    """
    match = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if match is None:
        return None
    code, signal = int(match.group(1)), int(match.group(2))
    if code == 0 and signal != 0:
        return -signal
    return code


def parse_squeue(text: str) -> dict[str, QueueEntry]:
    """Parse ``squeue --noheader --format=%i|%T|%r`` output.

    Parameters
    ----------
    text : `str`
        The command's standard output.

    Returns
    -------
    entries : `dict` [`str`, `QueueEntry`]
        The jobs by Slurm id; lines of another form are ignored.
    """
    entries: dict[str, QueueEntry] = {}
    for line in text.splitlines():
        fields = line.strip().split("|", 2)
        if len(fields) != 3 or not fields[0]:
            continue
        entry = QueueEntry(slurm_id=fields[0], state=fields[1], reason=fields[2])
        entries[entry.slurm_id] = entry
    return entries


def parse_show_job(text: str) -> dict[str, str]:
    """Read the fields the runner uses from ``scontrol -o show job ID``.

    Parameters
    ----------
    text : `str`
        One line of ``key=value`` pairs.

    Returns
    -------
    fields : `dict` [`str`, `str`]
        ``JobId``, ``JobName``, ``JobState``, ``Reason`` and ``ExitCode``
        where present. Values are taken up to the next blank, which
        holds for these fields (job names of ts_ocps have no blanks).
    """
    fields: dict[str, str] = {}
    for key in ("JobId", "JobName", "JobState", "Reason", "ExitCode"):
        match = re.search(rf"(?:^|\s){key}=(\S*)", text)
        if match is not None:
            fields[key] = match.group(1)
    return fields


class SlurmCli:
    """Runs the Slurm client programs as asyncio subprocesses.

    Parameters
    ----------
    slurm_conf : `str` or `None`
        Value of ``SLURM_CONF`` for the commands; None to inherit it.
    binaries : `collections.abc.Mapping` [`str`, `str`] or `None`
        Paths of the programs by name (``sbatch``, ``squeue``,
        ``scontrol``, ``scancel``, ``sacct``); missing ones are looked up
        on ``PATH``.
    timeout : `float`
        Seconds a command may take before it is killed and the controller
        is taken as unreachable.
    log : `logging.Logger` or `None`
        Logger; a child of "ocps" by default.
    """

    def __init__(
        self,
        *,
        slurm_conf: str | None = None,
        binaries: collections.abc.Mapping[str, str] | None = None,
        timeout: float = 30.0,
        log: logging.Logger | None = None,
    ) -> None:
        binaries = dict(binaries or {})
        unknown = sorted(set(binaries) - set(TOOLS))
        if unknown:
            raise ValueError(f"unknown Slurm programs {unknown}; known: {TOOLS}")
        self.binaries = {tool: binaries.get(tool, tool) for tool in TOOLS}
        self.timeout = timeout
        self.log = log or logging.getLogger("ocps.slurm")
        self.env = {
            name: value
            for name, value in os.environ.items()
            if name not in FORMAT_ENV_VARS
        }
        if slurm_conf is not None:
            self.env["SLURM_CONF"] = str(slurm_conf)

    async def run(
        self, tool: str, args: collections.abc.Sequence[str], stdin: str | None = None
    ) -> tuple[int, str, str]:
        """Run one Slurm program.

        Parameters
        ----------
        tool : `str`
            Program name, a key of ``binaries``.
        args : `collections.abc.Sequence` [`str`]
            Its arguments (an argv list; no shell).
        stdin : `str` or `None`
            Text for its standard input, if any.

        Returns
        -------
        returncode : `int`
            Exit code.
        stdout : `str`
            Standard output.
        stderr : `str`
            Standard error.

        Raises
        ------
        SlurmUnavailableError
            Raised if the program did not end within ``timeout``.
        SlurmCommandError
            Raised if the program cannot be started.
        """
        argv = [self.binaries[tool], *args]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else None,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
            )
        except OSError as e:
            raise SlurmCommandError(f"cannot run {argv[0]!r}: {e}") from e
        data = None if stdin is None else stdin.encode()
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await process.communicate(data)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SlurmUnavailableError(
                f"Slurm controller unreachable: {tool} took longer than "
                f"{self.timeout} s"
            ) from None
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        assert process.returncode is not None
        return (
            process.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )

    def _failure(self, tool: str, stderr: str) -> SlurmCommandError:
        """Make the error for a failed command from its standard error."""
        text = " ".join(stderr.split()) or "no error message"
        lowered = text.lower()
        if any(pattern in lowered for pattern in UNREACHABLE_PATTERNS):
            return SlurmUnavailableError(
                f"Slurm controller unreachable: {tool}: {text}", stderr
            )
        return SlurmCommandError(f"{tool} failed: {text}", stderr)

    async def sbatch(
        self, options: collections.abc.Sequence[str], script: str
    ) -> tuple[str, str | None]:
        """Submit a batch script given on standard input.

        Parameters
        ----------
        options : `collections.abc.Sequence` [`str`]
            ``sbatch`` options; ``--parsable`` is added.
        script : `str`
            The batch script.

        Returns
        -------
        slurm_id : `str`
            The new job's id.
        cluster : `str` or `None`
            The cluster name, if ``sbatch`` printed one.

        Raises
        ------
        SlurmUnavailableError
            Raised if the controller cannot be reached.
        SlurmCommandError
            Raised if Slurm rejected the job.
        """
        returncode, out, err = await self.run(
            "sbatch", ["--parsable", *options], stdin=script
        )
        lines = out.strip().splitlines()
        if returncode != 0 or not lines:
            raise self._failure("sbatch", err)
        slurm_id, _, cluster = lines[-1].strip().partition(";")
        if not slurm_id.isdigit():
            raise SlurmCommandError(f"sbatch printed no job id: {out!r}", err)
        return slurm_id, cluster or None

    async def squeue(self) -> dict[str, QueueEntry]:
        """List the caller's jobs in every state (one ``squeue`` call).

        Returns
        -------
        entries : `dict` [`str`, `QueueEntry`]
            The jobs by Slurm id, finished ones included until Slurm
            forgets them (``MinJobAge``).

        Raises
        ------
        SlurmUnavailableError
            Raised if the controller cannot be reached.
        SlurmCommandError
            Raised if ``squeue`` failed otherwise.
        """
        returncode, out, err = await self.run(
            "squeue", ["--noheader", "--me", "--states=all", "--format=%i|%T|%r"]
        )
        if returncode != 0:
            raise self._failure("squeue", err)
        return parse_squeue(out)

    async def show_job(self, slurm_id: str) -> dict[str, str] | None:
        """Read one job with ``scontrol -o show job``.

        Parameters
        ----------
        slurm_id : `str`
            Slurm job id.

        Returns
        -------
        fields : `dict` [`str`, `str`] or `None`
            See `parse_show_job`; None if Slurm does not know the job (any
            more).

        Raises
        ------
        SlurmUnavailableError
            Raised if the controller cannot be reached.
        SlurmCommandError
            Raised if ``scontrol`` failed otherwise.
        """
        returncode, out, err = await self.run(
            "scontrol", ["--oneliner", "show", "job", slurm_id]
        )
        if returncode != 0:
            if "invalid job id" in err.lower():
                return None
            raise self._failure("scontrol", err)
        fields = parse_show_job(out)
        if fields.get("JobId") != slurm_id:
            return None
        return fields

    async def scancel(self, slurm_id: str) -> bool:
        """Cancel one job.

        Parameters
        ----------
        slurm_id : `str`
            Slurm job id.

        Returns
        -------
        cancelled : `bool`
            False if the job had already ended or is unknown.

        Raises
        ------
        SlurmUnavailableError
            Raised if the controller cannot be reached.
        SlurmCommandError
            Raised if ``scancel`` failed otherwise.
        """
        returncode, _, err = await self.run("scancel", [slurm_id])
        lowered = err.lower()
        if "already completing or completed" in lowered or "invalid job id" in lowered:
            return False
        if returncode != 0:
            raise self._failure("scancel", err)
        return True

    async def accounting(
        self, slurm_id: str, *, completion: bool
    ) -> list[AccountingRecord]:
        """Read a finished job from ``sacct``.

        Parameters
        ----------
        slurm_id : `str`
            Slurm job id.
        completion : `bool`
            If True read the job-completion log (``sacct -c``, for a
            cluster with ``JobCompType=jobcomp/filetxt`` and no slurmdbd);
            else the accounting database.

        Returns
        -------
        records : `list` [`AccountingRecord`]
            The job's records (more than one if Slurm reused the id); the
            job's steps are left out. Empty if ``sacct`` knows nothing,
            has no accounting or failed.
        """
        args = ["--noheader", "--parsable2", "--jobs", slurm_id]
        args += ["--format=jobid,jobname,state,exitcode"]
        if completion:
            args.insert(0, "--completion")
        else:
            args.insert(0, "--allocations")
        try:
            returncode, out, err = await self.run("sacct", args)
        except SlurmCommandError as e:
            self.log.debug("sacct failed: %s", e)
            return []
        if returncode != 0:
            self.log.debug("sacct failed: %s", err.strip())
            return []
        records = []
        for line in out.splitlines():
            fields = line.strip().split("|")
            if len(fields) != 4 or fields[0] != slurm_id:
                continue
            records.append(
                AccountingRecord(
                    slurm_id=fields[0],
                    name=fields[1],
                    state=fields[2].split()[0] if fields[2] else "",
                    exit_code=parse_exit_code(fields[3]),
                )
            )
        return records
