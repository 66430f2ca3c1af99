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

"""Configuration loading by the start command, from the config sets."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import subprocess

import pytest
from lsst.ts.ocps.sal import AckError, State, config
from support.sal import CONFIGS_DIR, STD_TIMEOUT, make_harness, sal_env  # noqa: F401

GOOD = CONFIGS_DIR / "good"
BAD = CONFIGS_DIR / "bad_overrides"


@pytest.mark.parametrize(
    "override, files, label, duration",
    [
        ("", "_init.yaml,_test.yaml", "site", 0.2),
        ("fast.yaml", "_init.yaml,_test.yaml,fast.yaml", "fast", 0.05),
        ("slow.yaml", "_init.yaml,_test.yaml,slow.yaml", "slow", 5),
    ],
)
@pytest.mark.usefixtures("sal_env")
async def test_good_configs(
    override: str, files: str, label: str, duration: float
) -> None:
    async with make_harness() as harness:
        remote = harness.remote
        await harness.assert_next_sample(
            remote.evt_configurationsAvailable, overrides="fast.yaml,slow.yaml"
        )
        await remote.cmd_start.set_start(
            configurationOverride=override, timeout=STD_TIMEOUT
        )
        applied = await harness.assert_next_sample(
            remote.evt_configurationApplied,
            configurations=files,
            schemaVersion="v1",
            otherInfo="",
        )
        assert applied.url == GOOD.resolve().as_uri()
        assert harness.csc.config is not None
        assert vars(harness.csc.config) == {"job_duration": duration, "label": label}
        assert harness.csc.summary_state == State.DISABLED


@pytest.mark.parametrize(
    "config_dir, override, message",
    [
        (BAD, "wrong_type.yaml", "Configuration failed validation: 'soon' is not"),
        (BAD, "unknown_key.yaml", "Additional properties are not allowed"),
        (BAD, "negative.yaml", "-1 is less than the minimum of 0"),
        (BAD, "not_a_dict.yaml", "as a dict"),
        (BAD, "bad_yaml.yaml", "Could not parse data in"),
        (BAD, "refuse.yaml", "label 'refuse' is refused by configure"),
        (BAD, "missing.yaml", "missing.yaml' does not exist"),
        (GOOD, "_hidden.yaml", "filename='_hidden.yaml' must not start with '_'"),
        (GOOD, "../good/fast.yaml", "must be a plain file name"),
        (GOOD, "fast.yaml:--output=/tmp/x", "git ref '--output=/tmp/x' is invalid"),
        (CONFIGS_DIR / "no_init", "fast.yaml", "_init.yaml' does not exist"),
    ],
)
@pytest.mark.usefixtures("sal_env")
async def test_bad_configs(
    config_dir: pathlib.Path, override: str, message: str
) -> None:
    async with make_harness(config_dir=config_dir) as harness:
        with pytest.raises(AckError, match="Failed: ") as excinfo:
            await harness.remote.cmd_start.set_start(
                configurationOverride=override, timeout=STD_TIMEOUT
            )
        assert message in excinfo.value.ackcmd.result
        assert harness.csc.summary_state == State.STANDBY
        assert harness.csc.config is None
        # Nothing lost: a good start still works afterwards.
        if config_dir == GOOD:
            await harness.remote.cmd_start.set_start(timeout=STD_TIMEOUT)
            assert harness.csc.summary_state == State.DISABLED


def _git(cwd: pathlib.Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def git_config_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the ``good`` set in a git repo, with one later edit."""
    repo = tmp_path / "configs"
    shutil.copytree(GOOD, repo)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "test@example.invalid")
    _git(repo, "config", "user.name", "test")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "fast.yaml").write_text("job_duration: 0.01\nlabel: edited\n")
    return repo


@pytest.mark.usefixtures("sal_env")
async def test_git_ref_override(git_config_dir: pathlib.Path) -> None:
    sha = _git(git_config_dir, "rev-parse", "HEAD")
    async with make_harness(config_dir=git_config_dir) as harness:
        remote = harness.remote
        available = await harness.assert_next_sample(remote.evt_configurationsAvailable)
        assert available.version.startswith("heads/")
        assert available.version.endswith("-dirty")

        await remote.cmd_start.set_start(
            configurationOverride=f"fast.yaml:{sha}", timeout=STD_TIMEOUT
        )
        assert harness.csc.config is not None
        assert harness.csc.config.label == "fast"
        await remote.cmd_standby.set_start(timeout=STD_TIMEOUT)

        await remote.cmd_start.set_start(
            configurationOverride="fast.yaml", timeout=STD_TIMEOUT
        )
        assert harness.csc.config.label == "edited"
        await remote.cmd_standby.set_start(timeout=STD_TIMEOUT)

        with pytest.raises(AckError, match="with git hash nosuchref"):
            await remote.cmd_start.set_start(
                configurationOverride="fast.yaml:nosuchref", timeout=STD_TIMEOUT
            )
        assert harness.csc.summary_state == State.STANDBY


@pytest.mark.usefixtures("sal_env")
async def test_overrides_list_follows_the_directory(tmp_path: pathlib.Path) -> None:
    config_dir = tmp_path / "configs"
    shutil.copytree(GOOD, config_dir)
    async with make_harness(config_dir=config_dir) as harness:
        remote = harness.remote
        available = await harness.assert_next_sample(
            remote.evt_configurationsAvailable, overrides="fast.yaml,slow.yaml"
        )
        assert available.version == ""
        (config_dir / "added.yaml").write_text("label: added\n")
        await harness.assert_next_sample(
            remote.evt_configurationsAvailable,
            overrides="added.yaml,fast.yaml,slow.yaml",
        )


def test_schema_version() -> None:
    assert config.schema_version({"title": "OCPS v4"}) == "v4"
    for title in ("OCPS", "OCPS 4", "", "OCPS vx"):
        with pytest.raises(ValueError, match="must end with"):
            config.schema_version({"title": title})


def test_merge_dicts_recurses() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    merged = config.merge_dicts(base, {"a": {"c": 3}, "d": [2]})
    assert merged == {"a": {"b": 1, "c": 3}, "d": [2]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}


async def test_git_describe_outside_a_repo(tmp_path: pathlib.Path) -> None:
    assert await asyncio.wait_for(config.git_describe(tmp_path), STD_TIMEOUT) == ""
