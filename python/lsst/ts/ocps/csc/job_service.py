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

"""The job manager and REST job API that the OCPS CSC runs in its process."""

from __future__ import annotations

__all__ = ["JobService"]

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from .. import sal
from ..exceptions import OcpsError
from ..jobs.job_manager import JobManager, ManagerConfig
from ..jobs.job_types import JobTypeRegistry
from ..models import ACTIVE_PHASES, Job
from ..rest.app import create_app, start_server
from ..runners.registry import make_runners
from .settings import CscSettings, ManagerSettings, RestSettings


class JobService:
    """The CSC's embedded job manager and REST job API, kept to settings.

    Parameters
    ----------
    log : `logging.Logger`
        Logger of the manager, its runners and the lifecycle lines (the
        CSC's).
    listener : `~collections.abc.Callable`
        Job manager listener, called with each changed `Job`; added to
        every manager this makes.
    on_started : `~collections.abc.Callable`
        Called with each manager once it has started (the CSC publishes
        the results it has not reported).

    Notes
    -----
    Both live until `close`, whatever the CSC's summary state: `apply`
    starts them, or changes them to new settings, and leaves them running
    when the settings did not change.
    """

    def __init__(
        self,
        log: logging.Logger,
        listener: Callable[[Job], Awaitable[None]],
        on_started: Callable[[JobManager], Awaitable[None]],
    ) -> None:
        self.log = log
        self.manager: JobManager | None = None
        """The running job manager, if any."""
        self.rest_port: int | None = None
        """The port the REST API listens on, if it does."""
        self.started: datetime.datetime | None = None
        """When the current job manager was started (UTC)."""
        self._listener = listener
        self._on_started = on_started
        self._manager_settings: ManagerSettings | None = None
        self._rest_settings: RestSettings | None = None
        self._rest_runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()

    async def apply(self, settings: CscSettings, rest_required: bool) -> None:
        """Make the job manager and the REST API match the settings.

        A change of the manager settings replaces the manager (refused
        while jobs are active) and restarts the REST API; a change of the
        REST settings alone restarts only the REST API.

        Parameters
        ----------
        settings : `CscSettings`
            The settings (with an instance entry).
        rest_required : `bool`
            If True a REST API that cannot listen is an error; else it is
            logged.

        Raises
        ------
        sal.ExpectedError
            Raised if the job types do not load or lack the instance's job
            type, the manager settings change while jobs are active, the
            manager cannot start, or (``rest_required``) the REST API cannot
            listen.
        """
        instance = settings.instance
        assert instance is not None
        async with self._lock:
            replace = self.manager is None or self._manager_settings != settings.manager
            if replace:
                job_types = _load_job_types(settings.manager)
            else:
                assert self.manager is not None
                job_types = self.manager.job_types
            if instance.job_type not in job_types:
                raise sal.ExpectedError(
                    f"job type {instance.job_type!r} of sal_index="
                    f"{instance.sal_index} is not in "
                    f"{str(settings.manager.job_types_dir)!r}; loaded: "
                    f"{', '.join(sorted(job_types)) or 'none'}"
                )
            if instance.environment:
                job_type = job_types[instance.job_type]
                if "environment" not in job_type.parameters_schema.get(
                    "properties", {}
                ):
                    self.log.warning(
                        f"environment of sal_index={instance.sal_index} ignored: "
                        f"job type {job_type.name!r} has no 'environment' parameter"
                    )

            if replace:
                if self.manager is not None:
                    active = await self.manager.list_jobs(phases=ACTIVE_PHASES, limit=1)
                    if active:
                        raise sal.ExpectedError(
                            "cannot change the job manager settings (state_dir, "
                            "job_types_dir, max_concurrent, retention, log_limit, "
                            "default_runner, slurm) while jobs are queued or "
                            "running; wait for them or abort them"
                        )
                    await self._stop_rest()
                    await self._close_manager()
                await self._start_manager(settings.manager, job_types)

            if replace or self._rest_settings != settings.rest:
                await self._stop_rest()
                self._rest_settings = settings.rest
                if settings.rest.enabled:
                    try:
                        await self._start_rest(settings.rest)
                    except OSError as e:
                        message = (
                            f"REST job API cannot listen on {settings.rest.host}:"
                            f"{settings.rest.port}: {e}"
                        )
                        self._rest_settings = None
                        if rest_required:
                            raise sal.ExpectedError(message) from e
                        self.log.warning(message)
                else:
                    self.log.info("REST job API disabled (rest_port=-1)")

    async def _start_manager(
        self, settings: ManagerSettings, job_types: JobTypeRegistry
    ) -> None:
        """Start a job manager, then hand it to ``on_started``."""
        config = ManagerConfig(
            state_dir=settings.state_dir,
            max_concurrent=settings.max_concurrent,
            retention=settings.retention,
            log_limit=settings.log_limit,
        )
        runners = make_runners(
            settings.runners, kill_grace=config.kill_grace, log=self.log
        )
        manager = JobManager(config, job_types, runners=runners, log=self.log)
        manager.add_listener(self._listener)
        self.started = datetime.datetime.now(datetime.UTC)
        try:
            await manager.start()
        except Exception as e:
            manager.remove_listener(self._listener)
            await manager.close()
            raise sal.ExpectedError(
                f"job manager cannot start on {str(settings.state_dir)!r}: {e}"
            ) from e
        self.manager = manager
        self._manager_settings = settings
        self.log.info(
            f"Job manager started: state_dir={str(settings.state_dir)!r}, "
            f"job types {', '.join(sorted(job_types))}, runners "
            f"{', '.join(sorted(runners))} (default "
            f"{settings.runners.default_runner})"
        )
        await self._on_started(manager)

    async def _close_manager(self) -> None:
        manager, self.manager = self.manager, None
        self._manager_settings = None
        if manager is None:
            return
        manager.remove_listener(self._listener)
        await manager.close()

    async def _start_rest(self, settings: RestSettings) -> None:
        assert self.manager is not None
        app = create_app(self.manager, token=settings.token)
        self._rest_runner, self.rest_port = await start_server(
            app, host=settings.host, port=settings.port
        )
        self.log.info(
            f"REST job API listening on http://{settings.host}:{self.rest_port}/api/v1"
        )

    async def _stop_rest(self) -> None:
        runner, self._rest_runner = self._rest_runner, None
        self.rest_port = None
        if runner is not None:
            await runner.cleanup()

    async def close(self) -> None:
        """Stop the REST API, then close the job manager.

        Running jobs keep running under their supervisors; the next
        manager on the same state directory adopts them.
        """
        await self._stop_rest()
        await self._close_manager()


def _load_job_types(settings: ManagerSettings) -> JobTypeRegistry:
    """Load the job-type directory for the configured runners.

    A type naming a runner that is not configured, or runner options its
    runner refuses, is a problem like any other of its file.
    """
    directory = settings.job_types_dir
    try:
        return JobTypeRegistry.from_directory(
            directory,
            default_runner=settings.runners.default_runner,
            runners=settings.runners.available,
        )
    except OcpsError as e:
        raise sal.ExpectedError(f"job types in {str(directory)!r}: {e}") from e
