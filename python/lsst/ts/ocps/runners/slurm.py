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

"""A runner that submits jobs to Slurm and follows them through its CLI."""

# The errors are re-exported: everything a user of the runner catches.
__all__ = [
    "SlurmCommandError",
    "SlurmRunner",
    "SlurmSpecError",
    "SlurmUnavailableError",
]

import asyncio
import collections.abc
import dataclasses
import logging
import time
from typing import Any

from .base import LaunchSpec, Runner, RunOutcome, RunStatus
from .slurm_cli import (
    SlurmCli,
    SlurmCommandError,
    SlurmUnavailableError,
    parse_exit_code,
)
from .slurm_job import (
    JOB_NAME_PREFIX,
    SLURM_STATES,
    SlurmSpecError,
    check_extra_options,
    check_options,
    make_sbatch_options,
    make_script,
    map_outcome,
)

MAX_BACKOFF = 10.0  # seconds between polls while the controller is away


@dataclasses.dataclass
class _Tracked:
    """What the runner knows of one submitted job."""

    job_id: str
    slurm_id: str
    since: float
    started: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    finished: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    state: str = ""
    outcome: RunOutcome | None = None
    cancel_requested: bool = False
    cancel_sent: bool = False


class SlurmRunner(Runner):
    """Runs jobs as Slurm batch jobs.

    Each job becomes one ``sbatch`` submission of a generated batch script
    that exports the job's environment and ``exec`` s its argv (every word
    quoted with `shlex.quote`). One ``squeue`` call per poll interval
    follows all jobs; the exit code of an ended job comes from
    ``scontrol show job``, or from ``sacct`` once Slurm has forgotten the
    job.

    Parameters
    ----------
    partition : `str` or `None`
        Default partition; a job type's ``partition`` option wins.
    account : `str` or `None`
        Default account; a job type's ``account`` option wins.
    sbatch_options : `collections.abc.Sequence` [`str`]
        Extra ``sbatch`` options for every job, e.g. ``["--qos=normal"]``.
    poll_interval : `float`
        Seconds between two ``squeue`` calls while jobs are followed.
    cli_timeout : `float`
        Seconds any one Slurm command may take.
    binaries : `collections.abc.Mapping` [`str`, `str`] or `None`
        Paths of ``sbatch``, ``squeue``, ``scontrol``, ``scancel`` and
        ``sacct``; the others are found on ``PATH``.
    slurm_conf : `str` or `None`
        ``SLURM_CONF`` for the commands; None to inherit it.
    log : `logging.Logger` or `None`
        Logger; "ocps.runner.slurm" by default.

    Notes
    -----
    Slurm enforces the time limit itself (`enforces_time_limit` is True):
    it is given to ``sbatch --time`` in whole minutes, rounded up, and
    Slurm checks it about every 30 s, then allows ``KillWait`` seconds
    between SIGTERM and SIGKILL. A job may therefore run up to a minute
    and a half longer than asked. Such a job ends with
    `RunStatus.TIMEOUT`.

    The job sees exactly the environment of its `LaunchSpec` plus the
    ``SLURM_*`` variables Slurm sets: it is submitted with
    ``--export=NONE`` (nothing of the manager's environment is stored by
    Slurm) and the batch script unsets what Slurm's login environment
    added before it exports the job's variables. Values may hold any
    character (commas included); names must be shell identifiers.

    The work dir and the output paths must be the same paths on the
    submit host and the compute nodes (a shared file system), as at
    USDF/S3DF. ``squeue`` is asked for the caller's own jobs (``--me``):
    run OCPS under the account that owns its Slurm jobs.

    Known shortcoming: `LaunchSpec.log_limit` is not enforced; Slurm
    writes the whole stdout and stderr of a job itself. Remove this note
    once the batch script pipes the streams through a size limiter (it
    must then keep the job's exit code and signals).
    """

    name = "slurm"

    enforces_time_limit = True
    """Slurm stops jobs at their time limit; no manager timer is needed."""

    def __init__(
        self,
        *,
        partition: str | None = None,
        account: str | None = None,
        sbatch_options: collections.abc.Sequence[str] = (),
        poll_interval: float = 0.5,
        cli_timeout: float = 30.0,
        binaries: collections.abc.Mapping[str, str] | None = None,
        slurm_conf: str | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"{poll_interval=} must be positive")
        self.log = log or logging.getLogger("ocps.runner.slurm")
        self.partition = partition
        self.account = account
        self.sbatch_options = check_extra_options(sbatch_options)
        self.poll_interval = poll_interval
        self.cli = SlurmCli(
            slurm_conf=slurm_conf,
            binaries=binaries,
            timeout=cli_timeout,
            log=self.log,
        )
        self._tracked: dict[str, _Tracked] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unreachable_since: float | None = None
        self._closed = False
        self._idle = False

    @classmethod
    def check_options(cls, options: collections.abc.Mapping[str, Any]) -> None:
        """Check the ``runner_options`` of a job type.

        The keys and values are those of `slurm_job.check_options`.

        Raises
        ------
        ValueError
            Raised if an option is unknown or has a wrong value.
        """
        check_options(options)

    def make_script(self, spec: LaunchSpec) -> str:
        """Write the batch script of a job; see `slurm_job.make_script`."""
        return make_script(spec)

    def make_sbatch_options(self, spec: LaunchSpec) -> list[str]:
        """Build the ``sbatch`` options of a job with this runner's defaults.

        Raises
        ------
        ValueError
            Raised if ``spec.options`` are invalid.
        """
        return make_sbatch_options(
            spec,
            partition=self.partition,
            account=self.account,
            extra_options=self.sbatch_options,
        )

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._poll_task is not None:
            self._poll_task.cancel()
            try:
                await self._poll_task
            except asyncio.CancelledError:
                pass
            self._poll_task = None

    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        """Submit the job with ``sbatch``.

        Returns
        -------
        runner_state : `dict` [`str`, `typing.Any`]
            ``slurm_job_id`` (str), ``cluster`` (str or None) and
            ``job_name``.

        Raises
        ------
        SlurmSpecError
            Raised (an `OSError` and a `ValueError`) if the spec cannot be
            expressed as a Slurm job (see `make_script` and
            `check_options`).
        SlurmUnavailableError
            Raised (an `OSError`, ``transient`` True) if the controller
            cannot be reached.
        SlurmCommandError
            Raised (an `OSError`) if Slurm rejected the job.
        """
        try:
            script = self.make_script(spec)
            options = self.make_sbatch_options(spec)
        except ValueError as e:
            raise SlurmSpecError(f"not a valid Slurm job: {e}") from e
        # Slurm does not create missing directories of the output files.
        for path in (spec.stdout_path, spec.stderr_path):
            path.parent.mkdir(parents=True, exist_ok=True)
        slurm_id, cluster = await self.cli.sbatch(options, script)
        self.log.info("job_id=%s submitted as Slurm job %s", spec.job_id, slurm_id)
        self._track(spec.job_id, slurm_id)
        return {
            "slurm_job_id": slurm_id,
            "cluster": cluster,
            "job_name": f"{JOB_NAME_PREFIX}{spec.job_id}",
        }

    async def wait_started(self, job_id: str, runner_state: dict[str, Any]) -> None:
        tracked = self._track(job_id, _slurm_id(job_id, runner_state))
        await tracked.started.wait()

    async def wait_finished(
        self, job_id: str, runner_state: dict[str, Any]
    ) -> RunOutcome:
        tracked = self._track(job_id, _slurm_id(job_id, runner_state))
        await tracked.finished.wait()
        assert tracked.outcome is not None
        if self._tracked.get(tracked.slurm_id) is tracked:
            # Delivered: forget the job (a later call asks Slurm again).
            del self._tracked[tracked.slurm_id]
        return tracked.outcome

    async def terminate(self, job_id: str, runner_state: dict[str, Any]) -> None:
        """Cancel the job with ``scancel``.

        If the controller cannot be reached the cancellation is retried at
        every poll until it goes through or the job ended.
        """
        tracked = self._track(job_id, _slurm_id(job_id, runner_state))
        tracked.cancel_requested = True
        if tracked.finished.is_set():
            return
        try:
            await self.cli.scancel(tracked.slurm_id)
        except SlurmUnavailableError as e:
            self.log.warning(
                "job_id=%s aborted; scancel will be retried: %s", job_id, e
            )
        else:
            tracked.cancel_sent = True
        self._wake.set()

    async def reattach(self, job_id: str, runner_state: dict[str, Any]) -> bool:
        """Find a job submitted before a restart.

        Returns
        -------
        found : `bool`
            True if Slurm (or its accounting) knows the job under its
            name, or if the controller cannot be asked now (it is then
            followed until it answers); False if the job is gone.
        """
        slurm_id = _slurm_id(job_id, runner_state)
        if self._unreachable_since is not None:
            # Asking would take the client's full retry time again.
            self.log.warning(
                "job_id=%s recovered without check of Slurm job %s: "
                "controller unreachable",
                job_id,
                slurm_id,
            )
            self._track(job_id, slurm_id)
            return True
        try:
            fields = await self.cli.show_job(slurm_id)
        except SlurmUnavailableError as e:
            self._unreachable_since = time.monotonic()
            self.log.warning(
                "job_id=%s recovered without check of Slurm job %s: %s",
                job_id,
                slurm_id,
                e,
            )
            self._track(job_id, slurm_id)
            return True
        if fields is not None and fields.get("JobName") == JOB_NAME_PREFIX + job_id:
            self._track(job_id, slurm_id)
            self.log.info("job_id=%s recovered as Slurm job %s", job_id, slurm_id)
            return True
        outcome = await self.accounting_outcome(job_id, slurm_id)
        if outcome is None:
            self.log.warning(
                "job_id=%s failed: Slurm job %s is unknown after restart",
                job_id,
                slurm_id,
            )
            return False
        tracked = self._track(job_id, slurm_id)
        self._finish(tracked, outcome)
        self.log.info("job_id=%s recovered from Slurm accounting", job_id)
        return True

    async def accounting_outcome(self, job_id: str, slurm_id: str) -> RunOutcome | None:
        """Read how a job ended from ``sacct`` (database, then job log).

        Parameters
        ----------
        job_id : `str`
            ts_ocps job id, to tell the job from others with a reused id.
        slurm_id : `str`
            Slurm job id.

        Returns
        -------
        outcome : `RunOutcome` or `None`
            None if neither knows an ended job of that id and name.
        """
        name = JOB_NAME_PREFIX + job_id
        for completion in (False, True):
            records = await self.cli.accounting(slurm_id, completion=completion)
            for record in reversed(records):
                if record.name == name and SLURM_STATES.get(record.state) == "ended":
                    return map_outcome(record.state, record.exit_code, "")
        return None

    def followed_jobs(self) -> dict[str, str]:
        """Return the followed jobs that have not ended.

        Returns
        -------
        jobs : `dict` [`str`, `str`]
            Slurm job ids by ts_ocps job id.
        """
        return {
            tracked.job_id: tracked.slurm_id
            for tracked in self._tracked.values()
            if not tracked.finished.is_set()
        }

    def _track(self, job_id: str, slurm_id: str) -> _Tracked:
        """Follow a job (if not yet followed) and make sure polling runs."""
        tracked = self._tracked.get(slurm_id)
        if tracked is None or tracked.job_id != job_id:
            tracked = _Tracked(job_id=job_id, slurm_id=slurm_id, since=time.monotonic())
            self._tracked[slurm_id] = tracked
            if self._idle:
                self._wake.set()
        if self._poll_task is None or self._poll_task.done():
            if self._closed:
                raise RuntimeError("SlurmRunner is closed")
            self._poll_task = asyncio.create_task(self._poll_loop())
        return tracked

    def _finish(self, tracked: _Tracked, outcome: RunOutcome) -> None:
        """Record the end of a job and wake its waiters."""
        tracked.outcome = outcome
        tracked.started.set()
        tracked.finished.set()

    async def _poll_loop(self) -> None:
        """Poll Slurm while any followed job has not ended."""
        delay = self.poll_interval
        while not self._closed:
            if all(t.finished.is_set() for t in self._tracked.values()):
                # Nothing to follow: sleep until a job is tracked.
                self._idle = True
                await self._wake.wait()
                self._idle = False
                delay = self.poll_interval
            else:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            if self._closed:
                break

            try:
                await self._poll_once()
            except Exception as e:
                if self._unreachable_since is None:
                    self._unreachable_since = time.monotonic()
                    self.log.warning(
                        "Slurm poll failed; retrying with backoff: %s",
                        e,
                        exc_info=not isinstance(e, SlurmCommandError),
                    )
                delay = min(MAX_BACKOFF, delay * 2)
                continue
            if self._unreachable_since is not None:
                self.log.info(
                    "Slurm reachable again after %.1f s",
                    time.monotonic() - self._unreachable_since,
                )
                self._unreachable_since = None
            delay = self.poll_interval

    async def _poll_once(self) -> None:
        """Update every followed job from one ``squeue`` call."""
        poll_start = time.monotonic()
        entries = await self.cli.squeue()
        for tracked in list(self._tracked.values()):
            if tracked.finished.is_set():
                continue
            entry = entries.get(tracked.slurm_id)
            if entry is None:
                if tracked.since < poll_start:
                    await self._resolve(tracked, None)
                continue
            meaning = SLURM_STATES.get(entry.state, "queued")
            if entry.state != tracked.state:
                tracked.state = entry.state
                self.log.debug(
                    "job_id=%s Slurm state %s (%s)",
                    tracked.job_id,
                    entry.state,
                    entry.reason,
                )
            if meaning == "running" and not tracked.started.is_set():
                self.log.debug(
                    "job_id=%s started as Slurm job %s",
                    tracked.job_id,
                    tracked.slurm_id,
                )
                tracked.started.set()
            elif meaning == "ended":
                await self._resolve(tracked, entry.state)
            elif tracked.cancel_requested and not tracked.cancel_sent:
                await self._retry_cancel(tracked)

    async def _retry_cancel(self, tracked: _Tracked) -> None:
        """Cancel again a job whose cancellation may not have arrived."""
        try:
            await self.cli.scancel(tracked.slurm_id)
        except SlurmCommandError as e:
            self.log.debug("job_id=%s scancel failed: %s", tracked.job_id, e)
        else:
            tracked.cancel_sent = True

    async def _resolve(self, tracked: _Tracked, state: str | None) -> None:
        """Find out how an ended (or vanished) job ended."""
        fields = await self.cli.show_job(tracked.slurm_id)
        if (
            fields is not None
            and fields.get("JobName") == JOB_NAME_PREFIX + tracked.job_id
        ):
            state = fields.get("JobState", state)
            if state is None or SLURM_STATES.get(state) != "ended":
                return
            outcome = map_outcome(
                state,
                parse_exit_code(fields.get("ExitCode", "")),
                fields.get("Reason", ""),
            )
        else:
            found = await self.accounting_outcome(tracked.job_id, tracked.slurm_id)
            outcome = found or RunOutcome(
                status=RunStatus.LOST,
                message=f"Slurm job {tracked.slurm_id} vanished without a record",
            )
        self._log_end(tracked, outcome)
        self._finish(tracked, outcome)

    def _log_end(self, tracked: _Tracked, outcome: RunOutcome) -> None:
        """Log the end of a job with the fixed verbs."""
        if outcome.status == RunStatus.CANCELLED:
            verb = "aborted"
        elif outcome.status == RunStatus.EXITED and outcome.exit_code == 0:
            verb = "finished"
        else:
            verb = "failed"
        self.log.info(
            "job_id=%s %s: Slurm job %s %s exit_code=%s %s",
            tracked.job_id,
            verb,
            tracked.slurm_id,
            outcome.status,
            outcome.exit_code,
            outcome.message,
        )


def _slurm_id(job_id: str, runner_state: dict[str, Any]) -> str:
    """Read the Slurm job id from a runner state.

    Raises
    ------
    ValueError
        Raised if the state has no valid Slurm job id.
    """
    slurm_id = str(runner_state.get("slurm_job_id", ""))
    if not slurm_id.isdigit():
        raise ValueError(f"job_id={job_id} has no Slurm job id in {runner_state!r}")
    return slurm_id
