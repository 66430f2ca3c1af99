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

"""The Slurm runner selected from configuration: ocps serve and the CSC."""

__all__ = ["csc_env"]

import json
import pathlib
import sys
from typing import Any

import pytest
import yaml
from lsst.ts.ocps import sal
from lsst.ts.ocps.csc.ocps_csc import OcpsCsc
from lsst.ts.ocps.csc.settings import CscSettings
from lsst.ts.ocps.runners.local import LocalRunner
from lsst.ts.ocps.runners.registry import (
    RunnerSettings,
    SlurmSettings,
    make_runners,
)
from lsst.ts.ocps.runners.slurm import SlurmRunner
from support.csc import DATA_DIR, STD_TIMEOUT, csc_env, make_ocps, run_execute
from support.rest import run_ocps
from support.slurm import POLL_INTERVAL, SlurmCluster

# Prints the Slurm job id it runs under (null outside Slurm) as its result.
_REPORT_SLURM_ID = (
    (
        "import json, os\n"
        "with open(os.environ['OCPS_RESULT_FILE'], 'w') as stream:\n"
        "    json.dump({'slurm_job_id': os.environ.get('SLURM_JOB_ID')}, stream)\n"
        "print('hello from', os.environ['OCPS_JOB_ID'])\n"
    )
    .replace("{", "{{")
    .replace("}", "}}")
)


def write_types(directory: pathlib.Path) -> pathlib.Path:
    """Write job types: one per runner, and one naming no runner."""
    directory.mkdir(parents=True)
    base: dict[str, Any] = {
        "description": "Report the Slurm job id.",
        "version": "1.0",
        "command": [sys.executable, "-c", _REPORT_SLURM_ID],
        "parameters": {"type": "object", "properties": {}},
    }
    types: dict[str, dict[str, Any]] = {
        "on_slurm": {"runner": "slurm", "runner_options": {"cpus": 1}},
        "on_local": {"runner": "local"},
        "by_default": {},
    }
    for name, keys in types.items():
        document = {**base, "name": name, **keys}
        (directory / f"{name}.yaml").write_text(json.dumps(document))
    return directory


async def submit_and_wait(url: str, type_name: str) -> dict[str, Any]:
    """``ocps submit TYPE --wait --json``; return the finished job."""
    status, out, err = await run_ocps(
        "submit", type_name, "--wait", "--json", "--url", url
    )
    job = json.loads(out)
    assert status == 0, (job, err)
    return job


async def test_serve_runs_slurm_jobs(
    slurm_cluster: SlurmCluster, make_ocps_serve: Any, tmp_path: pathlib.Path
) -> None:
    types_dir = write_types(tmp_path / "types")
    server = await make_ocps_serve(
        "--job-types",
        str(types_dir),
        "--slurm",
        "--slurm-conf",
        slurm_cluster.conf,
        "--slurm-poll-interval",
        str(POLL_INTERVAL),
        "--slurm-option=--nice=0",
        "--default-runner",
        "slurm",
    )
    assert "runners: local, slurm (default slurm)" in server.log_text

    status, out, err = await run_ocps("types", "--json", "--url", server.url)
    runners = {job_type["name"]: job_type["runner"] for job_type in json.loads(out)}
    assert runners == {"on_slurm": "slurm", "on_local": "local", "by_default": "slurm"}

    for name, on_slurm in (
        ("on_slurm", True),
        ("by_default", True),
        ("on_local", False),
    ):
        job = await submit_and_wait(server.url, name)
        assert job["phase"] == "COMPLETED"
        assert job["exitCode"] == 0
        slurm_id = job["jobInfo"]["result"]["slurm_job_id"]
        if on_slurm:
            assert slurm_id and slurm_id.isdigit(), job
        else:
            assert slurm_id is None
        status, out, err = await run_ocps("logs", job["jobId"], "--url", server.url)
        assert (status, out) == (0, f"hello from {job['jobId']}\n")
    assert await server.stop() == 0
    assert "Traceback" not in server.log_text


def write_csc_config(
    config_dir: pathlib.Path, types_dir: pathlib.Path, **top: Any
) -> pathlib.Path:
    """Write a CSC config set for index 1 running ``slurm_pipetask``."""
    config_dir.mkdir(parents=True)
    config = {
        "instances": [
            {
                "sal_index": 1,
                "instance": "LATISS",
                "butler": "/repo/test/LATISS",
                "job_type": "slurm_pipetask",
            }
        ],
        "job_types_dir": str(types_dir),
        "rest_port": -1,
        **top,
    }
    (config_dir / "_init.yaml").write_text(yaml.safe_dump(config))
    return config_dir


def write_slurm_pipetask(types_dir: pathlib.Path) -> None:
    """The CSC's fake pipetask, naming no runner and reporting its Slurm id."""
    types_dir.mkdir(parents=True)
    text = (DATA_DIR / "csc_job_types" / "fake_pipetask.yaml").read_text()
    for old, new in (
        ("name: fake_pipetask\n", "name: slurm_pipetask\n"),
        ("  - python3\n", f"  - {sys.executable}\n"),
        (
            '{{"pipeline": pipeline, "options": options}}',
            '{{"pipeline": pipeline, "slurm_job_id": os.environ["SLURM_JOB_ID"]}}',
        ),
    ):
        assert old in text
        text = text.replace(old, new)
    (types_dir / "slurm_pipetask.yaml").write_text(text)


async def test_csc_runs_execute_on_slurm(
    slurm_cluster: SlurmCluster, csc_env: str, tmp_path: pathlib.Path
) -> None:
    types_dir = tmp_path / "types"
    write_slurm_pipetask(types_dir)
    config_dir = write_csc_config(
        tmp_path / "config",
        types_dir,
        default_runner="slurm",
        slurm={
            "enabled": True,
            "poll_interval": POLL_INTERVAL,
            "sbatch_options": ["--nice=0"],
            "slurm_conf": slurm_cluster.conf,
        },
    )
    async with make_ocps(
        config_dir=config_dir, initial_state=sal.State.ENABLED
    ) as harness:
        csc = harness.csc
        assert isinstance(csc, OcpsCsc) and csc.manager is not None
        runner = csc.manager.runners["slurm"]
        assert isinstance(runner, SlurmRunner)
        assert runner.sbatch_options == ["--nice=0"]
        assert csc.manager.job_types["slurm_pipetask"].runner == "slurm"

        flow = await run_execute(
            harness.remote, pipeline="p.yaml", data_query="sleep=0.2"
        )
        assert flow.job_result is not None
        assert flow.job_result.exit_code == 0
        assert flow.result["phase"] == "completed"
        job = await csc.manager.get_job(flow.job_id)
        assert job.runner_state["runner"] == "slurm"
        slurm_id = job.runner_state["state"]["slurm_job_id"]
        assert job.job_info["result"] == {
            "pipeline": "p.yaml",
            "slurm_job_id": slurm_id,
        }


@pytest.mark.parametrize(
    "top, match",
    [
        (
            {"default_runner": "slurm"},
            r"default_runner: default runner 'slurm' needs the Slurm runner "
            r"enabled \(set slurm.enabled: true\)",
        ),
        (
            {"slurm": {"enabled": True, "sbatch_options": ["--output=x"]}},
            r"slurm: sbatch option '--output=x' is set by the runner",
        ),
        (
            {"slurm": {"enabled": True, "partition": "a b"}},
            r"slurm: Slurm runner option partition='a b' is not a name",
        ),
        ({"slurm": {"enabled": True, "poll_interval": 0}}, r"0 is less than or equal"),
        ({"slurm": {"enable": True}}, r"'enable' was unexpected"),
    ],
)
async def test_csc_refuses_bad_slurm_config(
    csc_env: str, tmp_path: pathlib.Path, top: dict[str, Any], match: str
) -> None:
    types_dir = tmp_path / "types"
    write_slurm_pipetask(types_dir)
    config_dir = write_csc_config(tmp_path / "config", types_dir)
    (config_dir / "bad.yaml").write_text(yaml.safe_dump(top))
    async with make_ocps(config_dir=config_dir) as harness:
        with pytest.raises(sal.AckError, match=match):
            await harness.remote.cmd_start.set_start(
                configurationOverride="bad.yaml", timeout=STD_TIMEOUT
            )
        assert harness.csc.summary_state == sal.State.STANDBY
        # The base configuration (local runner only) still starts.
        await harness.remote.cmd_start.set_start(timeout=STD_TIMEOUT)
        assert harness.csc.summary_state == sal.State.DISABLED


async def test_csc_refuses_job_types_without_their_runner(
    csc_env: str, tmp_path: pathlib.Path
) -> None:
    types_dir = tmp_path / "types"
    write_slurm_pipetask(types_dir)
    text = (types_dir / "slurm_pipetask.yaml").read_text()
    (types_dir / "slurm_pipetask.yaml").write_text(text + "runner: slurm\n")
    config_dir = write_csc_config(tmp_path / "config", types_dir)
    (config_dir / "slurm.yaml").write_text(yaml.safe_dump({"slurm": {"enabled": True}}))
    async with make_ocps(config_dir=config_dir) as harness:
        csc = harness.csc
        assert isinstance(csc, OcpsCsc)
        # Refused at start, not when the first job runs.
        with pytest.raises(
            sal.AckError,
            match=r"slurm_pipetask.yaml: \$.runner: runner 'slurm' is not "
            r"configured; available: local",
        ):
            await harness.remote.cmd_start.set_start(timeout=STD_TIMEOUT)
        assert csc.summary_state == sal.State.STANDBY
        assert csc.manager is None

        # Enabling Slurm in the configuration lets it start. The runner is
        # built, not started against a cluster: no job runs here.
        await harness.remote.cmd_start.set_start(
            configurationOverride="slurm.yaml", timeout=STD_TIMEOUT
        )
        assert csc.manager is not None
        assert sorted(csc.manager.runners) == ["local", "slurm"]


def test_csc_settings(tmp_path: pathlib.Path) -> None:
    config: dict[str, Any] = {
        "instances": [{"sal_index": 1, "instance": "LATISS", "butler": "/repo"}],
    }
    settings = CscSettings.from_config(config, 1, tmp_path, environ={})
    assert settings.manager.runners == RunnerSettings()
    assert settings.manager.runners.available == ("local",)

    # An absent section and a disabled one are the same settings.
    config["slurm"] = {"enabled": False, "partition": "ignored"}
    assert CscSettings.from_config(config, 1, tmp_path, environ={}) == settings

    config["slurm"] = {
        "enabled": True,
        "partition": "normal",
        "account": "rubin",
        "sbatch_options": ["--qos=normal"],
        "poll_interval": 2,
        "cli_timeout": 10,
        "slurm_conf": "slurm/slurm.conf",
    }
    config["default_runner"] = "slurm"
    enabled = CscSettings.from_config(config, 1, tmp_path, environ={})
    assert enabled.manager.runners == RunnerSettings(
        default_runner="slurm",
        slurm=SlurmSettings(
            partition="normal",
            account="rubin",
            sbatch_options=("--qos=normal",),
            poll_interval=2.0,
            cli_timeout=10.0,
            slurm_conf=str(tmp_path / "slurm" / "slurm.conf"),
        ),
    )
    # A change of the runner settings is a change of the manager settings.
    assert enabled.manager != settings.manager


def test_make_runners() -> None:
    runners = make_runners(RunnerSettings(), kill_grace=2.0)
    assert sorted(runners) == ["local"]
    assert isinstance(runners["local"], LocalRunner)
    assert runners["local"].kill_grace == 2.0

    slurm = SlurmSettings(
        partition="normal",
        account="rubin",
        sbatch_options=("--qos=normal",),
        poll_interval=0.3,
        cli_timeout=7.0,
        slurm_conf="/etc/slurm/test.conf",
    )
    runners = make_runners(RunnerSettings(default_runner="slurm", slurm=slurm))
    assert sorted(runners) == ["local", "slurm"]
    runner = runners["slurm"]
    assert isinstance(runner, SlurmRunner)
    assert (runner.partition, runner.account) == ("normal", "rubin")
    assert runner.sbatch_options == ["--qos=normal"]
    assert runner.poll_interval == 0.3
    assert runner.name == "slurm"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"poll_interval": 0.0}, r"poll_interval=0.0 must be positive"),
        ({"cli_timeout": -1.0}, r"cli_timeout=-1.0 must be positive"),
        ({"sbatch_options": ("qos=normal",)}, r"must start with '-'"),
        ({"sbatch_options": ("--export=ALL",)}, r"is set by the runner"),
        ({"account": "a;b"}, r"account='a;b' is not a name"),
    ],
)
def test_bad_slurm_settings(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SlurmSettings(**kwargs)


def test_default_runner_needs_its_runner() -> None:
    with pytest.raises(ValueError, match="needs the Slurm runner enabled"):
        RunnerSettings(default_runner="slurm")
    with pytest.raises(ValueError, match="unknown default runner 'pbs'"):
        RunnerSettings(default_runner="pbs", slurm=SlurmSettings())
