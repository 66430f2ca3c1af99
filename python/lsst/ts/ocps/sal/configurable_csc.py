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

"""A CSC configured from a directory of YAML files by the start command."""

from __future__ import annotations

__all__ = ["ConfigurableCsc"]

import abc
import asyncio
import os
import pathlib
import types
from typing import Any

from .base_csc import BaseCsc
from .config import git_describe, list_overrides, load_config, schema_version
from .enums import State
from .topics import Sample

CONFIG_POLL_INTERVAL = 1.0
"""Seconds between re-reads of the config dir while in STANDBY."""


class ConfigurableCsc(BaseCsc, abc.ABC):
    """A CSC whose start command loads and applies a configuration.

    Parameters
    ----------
    name : `str`
        SAL component name.
    index : `int` or `None`
        SAL index.
    config_schema : `dict` [`str`, `~typing.Any`]
        JSON Schema (draft 7) of the configuration; its ``title`` ends with
        `` v<N>``.
    config_dir : `str`, `pathlib.Path` or `None`, optional
        Configuration directory; `None` means
        ``$<CONFIG_PKG>_DIR/<name>/<schema version>``.
    **kwargs : `~typing.Any`
        Passed to `BaseCsc`.

    Raises
    ------
    RuntimeError
        If ``LSST_SITE`` is not set, or ``config_dir`` is `None` and the
        config package variable is not set.
    ValueError
        If the config dir does not exist or the schema title is invalid.
    """

    def __init__(
        self,
        name: str,
        index: int | None,
        config_schema: dict[str, Any],
        config_dir: str | pathlib.Path | None = None,
        **kwargs: Any,
    ) -> None:
        site = os.environ.get("LSST_SITE", "")
        if not site:
            raise RuntimeError("Environment variable $LSST_SITE not defined.")
        self.site = site
        self.config_schema = config_schema
        self.schema_version = schema_version(config_schema)
        if config_dir is None:
            config_dir = self._default_config_dir(name)
        self.config_dir = pathlib.Path(config_dir).resolve()
        if not self.config_dir.is_dir():
            raise ValueError(f"config_dir={str(self.config_dir)!r} is not a directory")
        self._available: tuple[str, str] | None = None
        self._config_version = ""
        self._poll_task: asyncio.Task[None] | None = None
        super().__init__(name, index, **kwargs)

    @staticmethod
    @abc.abstractmethod
    def get_config_pkg() -> str:
        """Name of the configuration package, e.g. ``dm_config_ocps``."""
        raise NotImplementedError()

    @abc.abstractmethod
    async def configure(self, config: types.SimpleNamespace) -> None:
        """Apply a validated configuration.

        Raise `ExpectedError` (or any exception) to refuse it; the start
        command then fails and the CSC stays in STANDBY.

        Parameters
        ----------
        config : `types.SimpleNamespace`
            The merged configuration, its top-level keys as attributes.
        """
        raise NotImplementedError()

    def _default_config_dir(self, name: str) -> pathlib.Path:
        var = f"{self.get_config_pkg().upper()}_DIR"
        root = os.environ.get(var)
        if not root:
            raise RuntimeError(f"Environment variable {var} not defined")
        return pathlib.Path(root) / name / self.schema_version

    @property
    def config_url(self) -> str:
        """The config dir as a ``file://`` URI."""
        return self.config_dir.as_uri()

    async def handle_startup_reported(self) -> None:
        await super().handle_startup_reported()
        await self._report_available()
        self._poll_task = asyncio.create_task(self._poll_config_dir())

    async def handle_summary_state(self) -> None:
        await super().handle_summary_state()
        if self.summary_state == State.STANDBY and self._poll_task is not None:
            await self._report_available()

    async def _report_available(self) -> None:
        """Write configurationsAvailable if overrides or version changed."""
        overrides = ",".join(list_overrides(self.config_dir))
        version = await git_describe(self.config_dir)
        self._config_version = version
        if (overrides, version) == self._available:
            return
        self._available = (overrides, version)
        await self.evt_configurationsAvailable.set_write(
            overrides=overrides,
            version=version,
            url=self.config_url,
            schemaVersion=self.schema_version,
            force_output=True,
        )

    async def _poll_config_dir(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_POLL_INTERVAL)
            if self.summary_state != State.STANDBY:
                continue
            try:
                await self._report_available()
            except Exception:
                self.log.exception("Could not read config dir %s", self.config_dir)

    async def begin_start(self, data: Sample) -> None:
        """Load, validate and apply the configuration before DISABLED.

        Raises
        ------
        ExpectedError
            If the configuration cannot be read or is invalid, or
            `configure` refuses it with an `ExpectedError`.
        """
        await super().begin_start(data)
        await self._report_available()
        loaded = await load_config(
            config_dir=self.config_dir,
            override=data.configurationOverride,
            site=self.site,
            schema=self.config_schema,
        )
        await self.configure(types.SimpleNamespace(**loaded.config))
        await self.evt_configurationApplied.set_write(
            configurations=",".join(loaded.files),
            version=self._config_version,
            url=self.config_url,
            schemaVersion=self.schema_version,
            otherInfo="",
            force_output=True,
        )

    async def close_tasks(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            await asyncio.gather(self._poll_task, return_exceptions=True)
            self._poll_task = None
        await super().close_tasks()
