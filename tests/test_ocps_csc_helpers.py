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

"""Tests of the CSC's helpers: settings, field mapping, reports, simulator."""

import asyncio
import datetime
import json
import pathlib
import types

import jsonschema
import pytest
import yaml
from lsst.ts.ocps.csc.config_schema import CONFIG_SCHEMA
from lsst.ts.ocps.csc.execute_request import (
    ExecuteRequest,
    build_parameters,
    split_list,
)
from lsst.ts.ocps.csc.job_report import exit_code_for, make_job_report
from lsst.ts.ocps.csc.settings import (
    DEFAULT_CONFIG_DIR,
    CscSettings,
    SalIndex,
    select_instance,
)
from lsst.ts.ocps.csc.simulator import SimulatedJobs
from lsst.ts.ocps.exceptions import JobNotFoundError, JobStateError, ParameterError
from lsst.ts.ocps.jobs.job_types import JobTypeRegistry
from lsst.ts.ocps.models import ErrorSummary, ExecutionPhase, Job, JobResult
from lsst.ts.ocps.paths import DEFAULT_JOB_TYPES_DIR

DATA_DIR = pathlib.Path(__file__).parent / "data"
CONFIGS_DIR = DATA_DIR / "csc_configs"


def load(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text())


def command(**fields: str) -> types.SimpleNamespace:
    data = dict(
        pipeline="",
        version="",
        config="",
        data_query="",
        prereq_jobs="",
        output_dataset_types="",
    )
    data.update(fields)
    return types.SimpleNamespace(**data)


def test_sal_index() -> None:
    assert [(i.name, i.value) for i in SalIndex] == [
        ("LATISS", 1),
        ("LSSTComCam", 2),
        ("LSSTCam", 3),
        ("RA", 101),
    ]


@pytest.mark.parametrize(
    "path",
    [
        DEFAULT_CONFIG_DIR / "_init.yaml",
        CONFIGS_DIR / "good" / "_init.yaml",
        CONFIGS_DIR / "v4" / "_init.yaml",
    ],
)
def test_shipped_configs_validate(path: pathlib.Path) -> None:
    jsonschema.Draft7Validator(CONFIG_SCHEMA).validate(load(path))


def test_default_config_dir() -> None:
    config = load(DEFAULT_CONFIG_DIR / "_init.yaml")
    for index in (1, 2, 3):
        settings = CscSettings.from_config(config, index, DEFAULT_CONFIG_DIR, {})
        assert settings.instance is not None
        assert settings.instance.instance == SalIndex(index).name
        assert settings.instance.job_type == "pipetask"
        assert settings.rest.port == 8080 + index
    assert settings.manager.job_types_dir == DEFAULT_JOB_TYPES_DIR
    settings = CscSettings.from_config(config, 101, DEFAULT_CONFIG_DIR, {})
    assert settings.instance is None
    assert settings.rest.port == 8080


def test_settings_defaults_and_environment(tmp_path: pathlib.Path) -> None:
    config = load(CONFIGS_DIR / "v4" / "_init.yaml")
    settings = CscSettings.from_config(
        types.SimpleNamespace(**config),
        2,
        CONFIGS_DIR / "v4",
        {"OCPS_STATE_DIR": str(tmp_path), "OCPS_API_TOKEN": "secret"},
    )
    assert settings.manager.state_dir == tmp_path / "2"
    assert settings.manager.max_concurrent == 4
    assert settings.manager.retention == 604800
    assert settings.manager.log_limit == 10485760
    assert settings.rest.host == "127.0.0.1"
    assert settings.rest.port == 8080
    assert settings.rest.token == "secret"
    assert "secret" not in repr(settings.rest)
    assert settings.simulation_duration == 10
    assert settings.instance is not None
    assert settings.instance.unused_keys == ("url", "poll_interval")
    assert settings.instance.input_collection == ""
    assert settings.instance.job_type == "pipetask"

    settings = CscSettings.from_config(config, 2, CONFIGS_DIR / "v4", {})
    expected = pathlib.Path("~/.local/state/ocps/2").expanduser()
    assert settings.manager.state_dir == expected
    assert settings.rest.token is None


def test_settings_all_fields(tmp_path: pathlib.Path) -> None:
    config = load(CONFIGS_DIR / "good" / "_init.yaml")
    config.update(load(CONFIGS_DIR / "good" / "all_fields.yaml"))
    (tmp_path / "token").write_text("tok\n")
    config["rest_token_file"] = str(tmp_path / "token")
    config["state_dir"] = str(tmp_path / "state")
    settings = CscSettings.from_config(config, 1, CONFIGS_DIR / "good", {})
    assert settings.instance is not None
    assert settings.instance.environment == {"OCPS_TEST_SITE": "all_fields"}
    assert settings.instance.input_collection == "LATISS/raw/all,LATISS/calib"
    assert settings.manager.state_dir == tmp_path / "state"
    assert settings.manager.job_types_dir.resolve() == DATA_DIR / "csc_job_types"
    assert settings.manager.max_concurrent == 2
    assert settings.rest.token == "tok"
    assert settings.simulation_duration == 0.3

    config["rest_token_file"] = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="cannot read rest_token_file"):
        CscSettings.from_config(config, 1, CONFIGS_DIR / "good", {})


@pytest.mark.parametrize(
    "instances, index, match",
    [
        ([], 1, r"no instances entry has sal_index=1; configured: \[\]"),
        (
            [{"sal_index": 2, "instance": "LSSTComCam", "butler": "b"}],
            1,
            r"configured: \[2\]",
        ),
        (
            [{"sal_index": 1, "instance": "LATISS", "butler": "b"}] * 2,
            1,
            "2 instances entries have sal_index=1",
        ),
        (
            [{"sal_index": 1, "instance": "LSSTCam", "butler": "b"}],
            1,
            "instance='LSSTCam'; expected 'LATISS'",
        ),
        (
            [{"sal_index": 7, "instance": "X", "butler": "b"}],
            7,
            "sal_index=7 is not an OCPS SAL index",
        ),
    ],
)
def test_select_instance_rejects(instances: list, index: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_instance(instances, index)


def test_split_list() -> None:
    assert split_list("") == ()
    assert split_list(" a, b ,,c ") == ("a", "b", "c")


def test_execute_request() -> None:
    request = ExecuteRequest.from_command(
        command(
            pipeline=" ${CP_PIPE_DIR}/pipelines/cpBias.yaml#isr ",
            config="-j 2 -c isr:doBias=False",
            prereq_jobs="abc, def0",
            output_dataset_types="*Bias, cpBiasProc",
        )
    )
    assert request.pipeline == "${CP_PIPE_DIR}/pipelines/cpBias.yaml#isr"
    assert request.version == ""
    assert request.prereq_jobs == ("abc", "def0")
    assert request.output_dataset_types == ("*Bias", "cpBiasProc")

    for bad in ("../x", "a b", "UPPER", "a..b"):
        with pytest.raises(ParameterError, match="is not a job id"):
            ExecuteRequest.from_command(command(prereq_jobs=f"ok,{bad}"))


def test_build_parameters() -> None:
    registry = JobTypeRegistry.from_directory(DATA_DIR / "csc_job_types")
    job_type = registry.get_type("fake_pipetask")
    declared = job_type.parameters_schema["properties"]
    config = load(CONFIGS_DIR / "good" / "_init.yaml")
    instance = select_instance(config["instances"], 1)
    request = ExecuteRequest.from_command(
        command(
            pipeline="p.yaml",
            data_query="exposure=1",
            output_dataset_types="a*,b",
        )
    )
    parameters = build_parameters(request, instance, declared, job_type="fake")
    assert parameters == {
        "pipeline": "p.yaml",
        "data_query": "exposure=1",
        "output_dataset_types": "a*,b",
        "butler": "/repo/test/LATISS",
        "input_collection": "LATISS/defaults",
        "output_glob": "*_metricvalue",
    }
    validated = job_type.validate_parameters(parameters)
    assert validated["version"] == ""

    # A job type that takes fewer parameters: site settings are dropped,
    # request fields it does not take are refused.
    small = {"pipeline": {"type": "string"}}
    assert build_parameters(
        ExecuteRequest(pipeline="p"), instance, small, job_type="small"
    ) == {"pipeline": "p"}
    with pytest.raises(ParameterError, match="job type 'small' does not take 'config'"):
        build_parameters(
            ExecuteRequest(pipeline="p", config="-j 1"),
            instance,
            small,
            job_type="small",
        )
    assert build_parameters(
        ExecuteRequest(pipeline="p", config="-j 1"),
        instance,
        small,
        job_type="small",
        allows_extra=True,
    ) == {"pipeline": "p", "config": "-j 1"}


def make_job(phase: ExecutionPhase, exit_code: int | None = None) -> Job:
    now = datetime.datetime.now(datetime.UTC)
    return Job(
        job_id="0123abcd",
        type="fake_pipetask",
        version="1.0",
        parameters={"pipeline": "p.yaml", "butler": "/repo/x"},
        run_id="42",
        phase=phase,
        start_time=now,
        end_time=now,
        exit_code=exit_code,
        results=[JobResult(id="output.out", uri="file:///tmp/output.out")],
    )


@pytest.mark.parametrize(
    "phase, process_code, expected",
    [
        (ExecutionPhase.COMPLETED, 0, 0),
        (ExecutionPhase.ABORTED, None, 255),
        (ExecutionPhase.ABORTED, -15, 255),
        (ExecutionPhase.ERROR, 3, 3),
        (ExecutionPhase.ERROR, None, 1),
        (ExecutionPhase.ERROR, 0, 1),
        (ExecutionPhase.ERROR, -9, 137),
        (ExecutionPhase.UNKNOWN, None, 1),
    ],
)
def test_exit_code_for(
    phase: ExecutionPhase, process_code: int | None, expected: int
) -> None:
    assert exit_code_for(make_job(phase, process_code)) == expected


def test_make_job_report() -> None:
    job = make_job(ExecutionPhase.COMPLETED, 0)
    report = make_job_report(
        job,
        command=["python3", "run.py"],
        environment={"X": "1"},
        butler="/repo/x",
    )
    assert report.job_id == "0123abcd"
    assert report.exit_code == 0
    result = json.loads(report.result_text)
    assert result["jobId"] == result["job_id"] == "0123abcd"
    assert result["phase"] == "completed"
    assert result["runId"] == "42"
    assert result["errorSummary"] == {"message": ""}
    assert result["results"][0]["uri"] == "file:///tmp/output.out"
    assert result["parameters"]["pipeline"] == "p.yaml"
    assert result["parameters"]["command"] == ["python3", "run.py"]
    assert result["parameters"]["environment"] == [
        {"name": "X", "value": "1"},
        {"name": "BUTLER_REPO", "value": "/repo/x"},
    ]
    for key in ("creationTime", "startTime", "endTime", "executionDuration"):
        assert key in result

    job = make_job(ExecutionPhase.ERROR, 2)
    job.error_summary = ErrorSummary("process exited with code 2")
    report = make_job_report(job, environment={"BUTLER_REPO": "/other"})
    assert report.exit_code == 2
    assert report.result["phase"] == "error"
    assert report.result["errorSummary"]["message"] == "process exited with code 2"
    assert report.result["parameters"]["environment"] == [
        {"name": "BUTLER_REPO", "value": "/other"}
    ]


async def test_simulator() -> None:
    clock = iter(range(1000, 2000)).__next__
    simulator = SimulatedJobs(duration=0.05, clock=lambda: float(clock()))

    job_id = simulator.submit("true.yaml")
    assert job_id.startswith("true.yaml-")
    outcome = await simulator.wait(job_id)
    assert not outcome.fault
    assert outcome.report.exit_code == 0
    assert outcome.report.result == {
        "result": True,
        "jobId": job_id,
        "job_id": job_id,
        "phase": "completed",
    }
    with pytest.raises(JobStateError):
        simulator.abort(job_id)

    outcome = await simulator.wait(simulator.submit("false.yaml"))
    assert outcome.report.exit_code == 0
    assert outcome.report.result["result"] is False

    outcome = await simulator.wait(simulator.submit("fault.yaml"))
    assert outcome.fault
    assert outcome.report.exit_code == 1
    assert outcome.report.result["phase"] == "error"

    with pytest.raises(ParameterError, match="Unknown \\(simulated\\) pipeline"):
        simulator.submit("other.yaml")
    with pytest.raises(JobNotFoundError):
        simulator.abort("nope")

    slow = SimulatedJobs(duration=60)
    job_id = slow.submit("true.yaml")
    task = asyncio.create_task(slow.wait(job_id))
    await asyncio.sleep(0)
    slow.abort(job_id)
    outcome = await asyncio.wait_for(task, timeout=10)
    assert outcome.report.exit_code == 255
    assert outcome.report.result["phase"] == "aborted"
    assert outcome.report.result["jobId"] == job_id
    assert outcome.report.result["abort_time"] > 0
    with pytest.raises(JobStateError):
        slow.abort(job_id)


def test_job_report_limits_size() -> None:
    job = make_job(ExecutionPhase.COMPLETED, 0)
    job.results = [
        JobResult(id=f"r{i}", uri=f"file:///data/{'x' * 50}/{i}") for i in range(1000)
    ]
    report = make_job_report(job, max_chars=10_000)
    assert len(report.result_text) <= 10_000
    kept = len(report.result["results"])
    assert 0 < kept < 1000
    assert report.result["resultsOmitted"] == 1000 - kept
    assert report.result["results"][0]["id"] == "r0"
    assert "resultsOmitted" not in make_job_report(job).result


def test_job_report_lists_datasets() -> None:
    """Results carry their details; jobInfo is not read for results."""
    job = make_job(ExecutionPhase.COMPLETED, 0)
    job.results.append(
        JobResult(
            id="abc",
            uri="file:///repo/u/ocps/x/run/verifyBiasStats_1.json",
            size=120,
            details={"datasetType": "verifyBiasStats", "dataId": {"detector": 1}},
        )
    )
    # Entries the job manager did not take stay in jobInfo, and only there.
    job.job_info = {"result": {"results": [{"id": "no-uri", "uri": None}]}}
    result = json.loads(make_job_report(job).result_text)
    assert result["results"] == [
        {
            "id": "output.out",
            "uri": "file:///tmp/output.out",
            "size": None,
            "mimeType": None,
        },
        {
            "id": "abc",
            "uri": "file:///repo/u/ocps/x/run/verifyBiasStats_1.json",
            "size": 120,
            "mimeType": None,
            "datasetType": "verifyBiasStats",
            "dataId": {"detector": 1},
        },
    ]
    assert result["jobInfo"] == job.job_info
