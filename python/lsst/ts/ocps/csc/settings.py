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

"""Settings of the OCPS CSC, read from its validated configuration."""

from __future__ import annotations

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "CscSettings",
    "InstanceSettings",
    "ManagerSettings",
    "RestSettings",
    "SalIndex",
    "select_instance",
]

import dataclasses
import enum
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from ..paths import CONFIG_DIR, DEFAULT_JOB_TYPES_DIR
from ..runners.registry import RunnerSettings, SlurmSettings
from .config_schema import CONFIG_SCHEMA, UNUSED_INSTANCE_KEYS

DEFAULT_CONFIG_DIR = CONFIG_DIR / "csc"
"""Configuration directory used when ``--configdir`` is not given.

The package is installed in editable mode, so this is the ``config/csc``
directory of the source tree.
"""

STATE_DIR_ENV_VAR = "OCPS_STATE_DIR"
"""Environment variable naming the parent of per-index state dirs."""

TOKEN_ENV_VAR = "OCPS_API_TOKEN"
"""Environment variable holding the REST bearer token (if no file)."""


class SalIndex(enum.IntEnum):
    """SAL indices of the OCPS CSC, as ts_xml names them."""

    LATISS = 1
    LSSTComCam = 2
    LSSTCam = 3
    RA = 101


@dataclasses.dataclass(frozen=True)
class InstanceSettings:
    """The ``instances`` entry of one SAL index.

    Parameters
    ----------
    sal_index : `int`
        SAL index the entry configures.
    instance : `str`
        Name of the index, e.g. ``LATISS``.
    butler : `str`
        Butler repository the jobs run against.
    input_collection : `str`
        Default input collections (comma-separated); may be empty.
    output_glob : `str`
        Dataset-type glob reported as results when an ``execute`` gives
        no ``output_dataset_types``; may be empty.
    job_type : `str`
        Job type that ``execute`` runs.
    environment : `dict` [`str`, `str`]
        Extra environment variables for this instance's jobs.
    rest_port : `int` or `None`
        Port of the REST API for this index, if it overrides the
        top-level ``rest_port``.
    unused_keys : `tuple` [`str`, ...]
        Keys present in the entry that only the old UWS backend used.
    """

    sal_index: int
    instance: str
    butler: str
    input_collection: str = ""
    output_glob: str = ""
    job_type: str = "pipetask"
    environment: dict[str, str] = dataclasses.field(default_factory=dict)
    rest_port: int | None = None
    unused_keys: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ManagerSettings:
    """What the embedded job manager is built from.

    Two equal instances mean the running job manager can be kept.

    Parameters
    ----------
    state_dir : `pathlib.Path`
        Journal and job work directories.
    job_types_dir : `pathlib.Path`
        Directory of job-type YAML files.
    max_concurrent : `int`
        Most jobs executing at once; 0 means no limit.
    retention : `float`
        Seconds a finished job and its files are kept.
    log_limit : `int`
        Bytes of stdout and of stderr kept per job; 0 means no limit.
    runners : `RunnerSettings`
        The runners and the default runner of job types.
    """

    state_dir: pathlib.Path
    job_types_dir: pathlib.Path
    max_concurrent: int
    retention: float
    log_limit: int
    runners: RunnerSettings = RunnerSettings()


@dataclasses.dataclass(frozen=True)
class RestSettings:
    """Where and how the REST job API listens.

    Parameters
    ----------
    host : `str`
        Address to bind.
    port : `int`
        TCP port; 0 picks a free port; -1 disables the API.
    token : `str` or `None`
        Bearer token required for mutating calls, if any.
    """

    host: str
    port: int
    token: str | None = dataclasses.field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        """Is the REST API wanted?"""
        return self.port >= 0


@dataclasses.dataclass(frozen=True)
class CscSettings:
    """Everything the CSC takes from one validated configuration.

    Parameters
    ----------
    instance : `InstanceSettings` or `None`
        The entry for the CSC's index; None for index 101.
    manager : `ManagerSettings`
        Job manager settings.
    rest : `RestSettings`
        REST API settings.
    simulation_duration : `float`
        Seconds a simulated job runs.
    """

    instance: InstanceSettings | None
    manager: ManagerSettings
    rest: RestSettings
    simulation_duration: float

    @classmethod
    def from_config(
        cls,
        config: Any,
        index: int,
        config_dir: pathlib.Path,
        environ: Mapping[str, str] = os.environ,
    ) -> CscSettings:
        """Read the settings from a configuration validated by the schema.

        Parameters
        ----------
        config : `typing.Any`
            The configuration: a mapping or a namespace whose attributes
            are the top-level keys. Schema defaults need not be filled in.
        index : `int`
            SAL index of the CSC.
        config_dir : `pathlib.Path`
            Configuration directory; relative ``job_types_dir`` values
            are taken relative to it.
        environ : `~collections.abc.Mapping` [`str`, `str`]
            Environment (for ``OCPS_STATE_DIR`` and ``OCPS_API_TOKEN``).

        Returns
        -------
        settings : `CscSettings`
            The settings.

        Raises
        ------
        ValueError
            Raised if the ``instances`` entry for ``index`` is missing,
            duplicated or names another index, or if the token file
            cannot be read.
        """
        values = _with_defaults(config)
        instance = (
            None
            if index == SalIndex.RA
            else select_instance(values["instances"], index)
        )

        state_dir_text = values["state_dir"]
        if state_dir_text:
            state_dir = pathlib.Path(state_dir_text).expanduser()
        elif environ.get(STATE_DIR_ENV_VAR):
            state_dir = pathlib.Path(environ[STATE_DIR_ENV_VAR]) / str(index)
        else:
            state_dir = pathlib.Path("~/.local/state/ocps").expanduser() / str(index)

        job_types_text = values["job_types_dir"]
        if job_types_text:
            job_types_dir = config_dir / pathlib.Path(job_types_text).expanduser()
        else:
            job_types_dir = DEFAULT_JOB_TYPES_DIR

        manager = ManagerSettings(
            state_dir=state_dir.absolute(),
            job_types_dir=job_types_dir.absolute(),
            max_concurrent=values["max_concurrent"],
            retention=float(values["retention"]),
            log_limit=values["log_limit"],
            runners=_read_runners(values, config_dir),
        )
        rest_port = values["rest_port"]
        if instance is not None and instance.rest_port is not None:
            rest_port = instance.rest_port
        rest = RestSettings(
            host=values["rest_host"],
            port=rest_port,
            token=_read_token(values["rest_token_file"], config_dir, environ),
        )
        return cls(
            instance=instance,
            manager=manager,
            rest=rest,
            simulation_duration=float(values["simulation_duration"]),
        )


def select_instance(instances: Any, index: int) -> InstanceSettings:
    """Pick the ``instances`` entry of one SAL index.

    Parameters
    ----------
    instances : `list` [`dict`]
        The ``instances`` value of a validated configuration.
    index : `int`
        SAL index of the CSC.

    Returns
    -------
    instance : `InstanceSettings`
        The one entry whose ``sal_index`` is ``index``.

    Raises
    ------
    ValueError
        Raised if no entry or several entries have ``sal_index=index``,
        or if the entry's ``instance`` is not the name of ``index``.
    """
    entries = [entry for entry in instances if entry["sal_index"] == index]
    if not entries:
        known = sorted(entry["sal_index"] for entry in instances)
        raise ValueError(
            f"no instances entry has sal_index={index}; configured: {known}"
        )
    if len(entries) > 1:
        raise ValueError(f"{len(entries)} instances entries have sal_index={index}")
    entry = entries[0]

    try:
        expected_name = SalIndex(index).name
    except ValueError:
        raise ValueError(f"sal_index={index} is not an OCPS SAL index") from None
    if entry["instance"] != expected_name:
        raise ValueError(
            f"instances entry for sal_index={index} has "
            f"instance={entry['instance']!r}; expected {expected_name!r}"
        )

    instance_schema = CONFIG_SCHEMA["properties"]["instances"]["items"]
    return InstanceSettings(
        sal_index=index,
        instance=entry["instance"],
        butler=entry["butler"],
        input_collection=entry.get("input_collection", ""),
        output_glob=entry.get("output_glob", ""),
        job_type=entry.get(
            "job_type", instance_schema["properties"]["job_type"]["default"]
        ),
        environment=dict(entry.get("environment", {})),
        rest_port=entry.get("rest_port"),
        unused_keys=tuple(key for key in UNUSED_INSTANCE_KEYS if key in entry),
    )


def _with_defaults(config: Any) -> dict[str, Any]:
    """Return the top-level configuration values with schema defaults."""
    if isinstance(config, Mapping):
        given = dict(config)
    else:
        given = dict(vars(config))
    values = {
        name: prop["default"]
        for name, prop in CONFIG_SCHEMA["properties"].items()
        if "default" in prop
    }
    values.update(given)
    return values


def _read_runners(
    values: Mapping[str, Any], config_dir: pathlib.Path
) -> RunnerSettings:
    """Read ``default_runner`` and the ``slurm`` section."""
    slurm_schema = CONFIG_SCHEMA["properties"]["slurm"]["properties"]
    section = {name: prop["default"] for name, prop in slurm_schema.items()}
    section.update(values.get("slurm") or {})
    slurm = None
    if section["enabled"]:
        slurm_conf = None
        if section["slurm_conf"]:
            path = config_dir / pathlib.Path(section["slurm_conf"]).expanduser()
            slurm_conf = str(path.absolute())
        try:
            slurm = SlurmSettings(
                partition=section["partition"] or None,
                account=section["account"] or None,
                sbatch_options=tuple(section["sbatch_options"]),
                poll_interval=float(section["poll_interval"]),
                cli_timeout=float(section["cli_timeout"]),
                slurm_conf=slurm_conf,
            )
        except ValueError as e:
            raise ValueError(f"slurm: {e}") from e
    try:
        return RunnerSettings(default_runner=values["default_runner"], slurm=slurm)
    except ValueError as e:
        raise ValueError(f"default_runner: {e} (set slurm.enabled: true)") from e


def _read_token(
    token_file: str, config_dir: pathlib.Path, environ: Mapping[str, str]
) -> str | None:
    """Read the REST token from its file, else from the environment."""
    if not token_file:
        return environ.get(TOKEN_ENV_VAR) or None
    path = config_dir / pathlib.Path(token_file).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise ValueError(f"cannot read rest_token_file {str(path)!r}: {e}") from e
    if not token:
        raise ValueError(f"rest_token_file {str(path)!r} is empty")
    return token
