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

"""Tests of `lsst.ts.ocps.jobs.environment`: what a job starts with."""

import json
import os
import pathlib
import sys

import pytest
from lsst.ts.ocps.jobs import job_manager
from lsst.ts.ocps.jobs.environment import (
    BASE_ENV_NAMES,
    job_environment,
    make_launch_spec,
    python_first_on_path,
)
from lsst.ts.ocps.jobs.job_types import JobType, load_job_type
from lsst.ts.ocps.models import Job

PYTHON_DIR = os.path.dirname(sys.executable)


def make_type(directory: pathlib.Path, environment: dict[str, str]) -> JobType:
    document = {
        "name": "greet",
        "description": "Says hello.",
        "version": "2.0",
        "command": ["echo", "{greeting}"],
        "parameters": {
            "type": "object",
            "properties": {"greeting": {"type": "string", "default": "hi"}},
        },
        "environment": environment,
        "runner_options": {"cpus": 1},
    }
    path = directory / "greet.yaml"
    path.write_text(json.dumps(document))
    return load_job_type(path)


def make_job(job_type: JobType) -> Job:
    parameters = job_type.validate_parameters({"greeting": "hello"})
    return Job(
        job_id="j1",
        type=job_type.name,
        version=job_type.version,
        parameters=parameters,
        execution_duration=12.5,
    )


def test_names_still_importable_from_job_manager() -> None:
    assert job_manager.BASE_ENV_NAMES is BASE_ENV_NAMES
    assert "BASE_ENV_NAMES" in job_manager.__all__


@pytest.mark.parametrize(
    "path, expected",
    [
        (None, [PYTHON_DIR, *os.defpath.split(os.pathsep)]),
        (f"/a{os.pathsep}/b", [PYTHON_DIR, "/a", "/b"]),
        (f"{PYTHON_DIR}{os.pathsep}/a", [PYTHON_DIR, "/a"]),
        (f"/a{os.pathsep}{PYTHON_DIR}", [PYTHON_DIR, "/a", PYTHON_DIR]),
    ],
)
def test_python_first_on_path(path: str | None, expected: list[str]) -> None:
    assert python_first_on_path(path).split(os.pathsep) == expected


def test_job_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("OCPS_TEST_SECRET", "not for jobs")
    monkeypatch.delenv("TZ", raising=False)
    job_type = make_type(tmp_path, {"GREETING": "{greeting}", "HOME": "/job"})
    work_dir = tmp_path / "work"

    env = job_environment(make_job(job_type), job_type, work_dir)
    assert env["PATH"] == f"{PYTHON_DIR}{os.pathsep}/usr/bin"
    assert env["HOME"] == "/job"
    assert env["GREETING"] == "hello"
    assert env["OCPS_JOB_ID"] == "j1"
    assert env["OCPS_WORK_DIR"] == str(work_dir)
    assert env["OCPS_RESULT_FILE"] == str(work_dir / "result.json")
    assert "OCPS_TEST_SECRET" not in env and "TZ" not in env
    assert set(env) - set(BASE_ENV_NAMES) == {
        "GREETING",
        "OCPS_JOB_ID",
        "OCPS_WORK_DIR",
        "OCPS_RESULT_FILE",
    }


def test_type_path_replaces_the_python_first_path(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin")
    job_type = make_type(tmp_path, {"PATH": "/opt/tools"})
    env = job_environment(make_job(job_type), job_type, tmp_path)
    assert env["PATH"] == "/opt/tools"


def test_make_launch_spec(tmp_path: pathlib.Path) -> None:
    job_type = make_type(tmp_path, {})
    work_dir = tmp_path / "jobs" / "j1"
    (tmp_path / "jobs").mkdir()
    spec = make_launch_spec(
        make_job(job_type),
        job_type,
        work_dir=work_dir,
        stdout_path=work_dir / "out.log",
        stderr_path=work_dir / "err.log",
        log_limit=1000,
    )
    assert work_dir.is_dir()
    assert spec.job_id == "j1"
    assert spec.argv == ["echo", "hello"]
    assert spec.env["OCPS_WORK_DIR"] == str(work_dir)
    assert (spec.work_dir, spec.stdout_path, spec.stderr_path) == (
        work_dir,
        work_dir / "out.log",
        work_dir / "err.log",
    )
    assert (spec.log_limit, spec.time_limit, spec.options) == (1000, 12.5, {"cpus": 1})
    # The runner gets its own copy of the options.
    assert spec.options is not job_type.runner_options
