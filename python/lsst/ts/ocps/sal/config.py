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

"""Reading a CSC configuration directory: files, overrides, git refs."""

from __future__ import annotations

__all__ = [
    "LoadedConfig",
    "git_describe",
    "list_overrides",
    "load_config",
    "merge_dicts",
    "parse_override",
    "schema_version",
]

import asyncio
import copy
import dataclasses
import pathlib
from typing import Any

import jsonschema
import yaml

from .errors import ExpectedError

GIT_TIMEOUT = 10.0
"""Seconds a ``git`` subprocess may take before it is killed."""


@dataclasses.dataclass
class LoadedConfig:
    """A merged, validated configuration and where it came from.

    Attributes
    ----------
    config : `dict` [`str`, `~typing.Any`]
        The merged configuration, ``metadata`` removed.
    files : `list` [`str`]
        Names of the files read, in order.
    """

    config: dict[str, Any]
    files: list[str]


def parse_override(override: str) -> tuple[str, str]:
    """Split ``[file][:gitref]`` into the file name and the git ref.

    Parameters
    ----------
    override : `str`
        A ``configurationOverride``.

    Returns
    -------
    name : `str`
        The file name, or "".
    gitref : `str`
        The git ref, or "".

    Raises
    ------
    ExpectedError
        If the file name starts with ``_`` or contains a path separator.
    """
    name, _, gitref = override.partition(":")
    if name.startswith("_"):
        raise ExpectedError(
            f"configurationOverride filename={name!r} must not start with '_'"
        )
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ExpectedError(
            f"configurationOverride filename={name!r} must be a plain file name"
        )
    if gitref.startswith("-"):
        raise ExpectedError(f"configurationOverride git ref {gitref!r} is invalid")
    return name, gitref


def schema_version(schema: dict[str, Any]) -> str:
    """The last word of the schema title, e.g. ``v4`` for ``OCPS v4``.

    Parameters
    ----------
    schema : `dict` [`str`, `~typing.Any`]
        A configuration schema.

    Returns
    -------
    version : `str`
        ``v<N>``.

    Raises
    ------
    ValueError
        If the title is missing or does not end with ``v<N>``.
    """
    words = str(schema.get("title", "")).split()
    if not words or not words[-1].startswith("v") or not words[-1][1:].isdigit():
        raise ValueError(
            f"Schema title {schema.get('title')!r} must end with ' v<version>'"
        )
    return words[-1]


def list_overrides(config_dir: pathlib.Path) -> list[str]:
    """Sorted override file names: ``*.yaml`` not starting with ``_``.

    Parameters
    ----------
    config_dir : `pathlib.Path`
        The configuration directory; a missing one has no overrides.

    Returns
    -------
    names : `list` [`str`]
        The file names.
    """
    if not config_dir.is_dir():
        return []
    return sorted(
        path.name
        for path in config_dir.glob("*.yaml")
        if not path.name.startswith("_") and path.is_file()
    )


async def _run_git(config_dir: pathlib.Path, *args: str) -> tuple[int, bytes]:
    """Run ``git <args>`` in a directory; return exit code and output."""
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=config_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), GIT_TIMEOUT)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output


async def git_describe(config_dir: pathlib.Path) -> str:
    """Describe the git state of a configuration directory.

    Parameters
    ----------
    config_dir : `pathlib.Path`
        The configuration directory.

    Returns
    -------
    version : `str`
        The output of ``git describe --all --long --always --dirty``, or
        "" if git fails, is missing or takes too long.
    """
    try:
        code, output = await _run_git(
            config_dir, "describe", "--all", "--long", "--always", "--dirty"
        )
    except (OSError, TimeoutError):
        return ""
    return output.decode(errors="replace").strip() if code == 0 else ""


def merge_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``, recursing into dicts.

    Parameters
    ----------
    base : `dict` [`str`, `~typing.Any`]
        The values to start from; not changed.
    update : `dict` [`str`, `~typing.Any`]
        The values that win; not changed.

    Returns
    -------
    merged : `dict` [`str`, `~typing.Any`]
        A deep copy holding both.
    """
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


async def _read_file(
    config_dir: pathlib.Path, name: str, gitref: str
) -> dict[str, Any]:
    """Read one YAML file (at a git ref if given) as a dict."""
    path = config_dir / name
    if not path.is_file():
        raise ExpectedError(f"Config file '{path.resolve()}' does not exist")
    if gitref:
        code, output = await _run_git(config_dir, "show", f"{gitref}:./{name}")
        if code != 0:
            raise ExpectedError(
                f"Could not read config file {path} with git hash {gitref}: {output!r}"
            )
        text = output.decode(errors="replace")
    else:
        text = path.read_text()
    try:
        data = yaml.safe_load(text)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise TypeError(f"top level is a {type(data).__name__}")
    except Exception as e:
        raise ExpectedError(f"Could not parse data in {path} as a dict: {e!r}") from e
    return data


async def load_config(
    *,
    config_dir: pathlib.Path,
    override: str,
    site: str,
    schema: dict[str, Any],
) -> LoadedConfig:
    """Read, merge and validate a configuration.

    Files read, each overriding the previous: ``_init.yaml`` (required),
    ``_<site>.yaml`` (if present), then the override file (if given). With
    ``:gitref`` every file is read at that git ref.

    Parameters
    ----------
    config_dir : `pathlib.Path`
        The configuration directory.
    override : `str`
        ``[file][:gitref]``, or "".
    site : `str`
        Site name (``LSST_SITE``).
    schema : `dict` [`str`, `~typing.Any`]
        JSON Schema (draft 7) of the merged configuration.

    Returns
    -------
    loaded : `LoadedConfig`
        The configuration and the files read.

    Raises
    ------
    ExpectedError
        If a file is missing or unreadable, or validation fails.
    """
    name, gitref = parse_override(override)
    names = ["_init.yaml"]
    if (config_dir / f"_{site}.yaml").is_file():
        names.append(f"_{site}.yaml")
    if name:
        names.append(name)
    config: dict[str, Any] = {}
    for file_name in names:
        config = merge_dicts(config, await _read_file(config_dir, file_name, gitref))
    config.pop("metadata", None)
    try:
        jsonschema.Draft7Validator(schema).validate(config)
    except jsonschema.ValidationError as e:
        raise ExpectedError(f"Configuration failed validation: {e.message}") from e
    return LoadedConfig(config=config, files=names)
