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


"""Test fixtures: a tiny real Butler repo and a job manager for pipetask.

The repo is built once per session (``butler create`` plus
``tests/data/pipelines/make_repo.py``, about 3 s) and copied for each test
that uses `butler_repo`, so tests never see each other's outputs. Every
Butler access runs in a subprocess of the test's own Python, which keeps
``lsst.daf.butler`` out of the test process like out of the OCPS server.
"""

__all__ = [
    "BIN_DIR",
    "DATA_DIR",
    "DETECTORS",
    "JOB_TYPES_DIR",
    "PIPELINES_DIR",
    "PipetaskSetup",
    "butler_repo",
    "butler_repo_template",
    "input_array",
    "pipelines_on_path",
    "pipetask_environment",
    "pipetask_manager",
    "read_arrays",
]

import dataclasses
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from lsst.ts.ocps.jobs.job_manager import JobManager, ManagerConfig
from lsst.ts.ocps.jobs.job_types import JobTypeRegistry

from .rest import abort_active_and_close

DATA_DIR = pathlib.Path(__file__).resolve().parents[1] / "data"
"""``tests/data``; stands in for ``$CP_PIPE_DIR`` in the tests."""

PIPELINES_DIR = DATA_DIR / "pipelines"
"""Test pipelines, the repo script and the ``ocps_test_tasks`` module."""

JOB_TYPES_DIR = pathlib.Path(__file__).resolve().parents[2] / "config" / "job_types"
"""The shipped job types, pipetask among them."""

DETECTORS = 4
"""Detectors 0..3 have an input array in the test repo."""

BIN_DIR = pathlib.Path(sys.executable).parent
"""Where this Python's ``butler`` command and ``python3`` are."""

_READ_CODE = """
import json, sys
from lsst.daf.butler import Butler
repo, collection, dataset_type = sys.argv[1:4]
butler = Butler.from_config(repo, writeable=False)
refs = butler.query_datasets(dataset_type, collections=collection, explain=False)
print(json.dumps({
    str(ref.dataId["detector"]): butler.get(ref).tolist() for ref in refs
}))
"""


def input_array(detector: int) -> list[int]:
    """Return the input array that ``make_repo.py`` stores for a detector."""
    return [value + 10 * detector for value in range(4)]


def _run(argv: list[str]) -> str:
    """Run a pipelines command; fail the test if it fails."""
    process = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if process.returncode != 0:
        pytest.fail(f"{argv[:3]} exited {process.returncode}: {process.stderr[-2000:]}")
    return process.stdout


@pytest.fixture(scope="session")
def butler_repo_template(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A Butler repo with instrument INSTRU, 4 detectors and inputs.

    Session-scoped and never written to; copy it (`butler_repo`) to use it.
    Fails, not skips, when the pipelines are missing: ``dev/setup.sh``
    installs ``requirements-pipelines.txt``.
    """
    butler = BIN_DIR / "butler"
    if not butler.exists():
        pytest.fail(f"{butler} is missing; run dev/setup.sh")
    repo = tmp_path_factory.mktemp("butler") / "repo"
    _run([str(butler), "create", str(repo)])
    _run(
        [
            sys.executable,
            str(PIPELINES_DIR / "make_repo.py"),
            str(repo),
            "--detectors",
            str(DETECTORS),
        ]
    )
    return repo


@pytest.fixture
def butler_repo(butler_repo_template: pathlib.Path, tmp_path: pathlib.Path) -> str:
    """A private copy of the test repo; returns its path."""
    repo = tmp_path / "repo"
    shutil.copytree(butler_repo_template, repo)
    return str(repo)


def read_arrays(repo: str, collection: str, dataset_type: str) -> dict[int, list]:
    """Read every array of one dataset type in a collection, by detector.

    Runs in a subprocess (see the module docstring).
    """
    output = _run([sys.executable, "-c", _READ_CODE, repo, collection, dataset_type])
    return {int(key): value for key, value in json.loads(output).items()}


@pytest.fixture
def pipetask_environment() -> dict[str, str]:
    """The ``environment`` parameter the tests' pipetask jobs need.

    ``CP_PIPE_DIR`` points at ``tests/data``, so that callers' usual
    ``${CP_PIPE_DIR}/pipelines/...`` form finds the test pipelines, and
    ``PYTHONPATH`` finds ``ocps_test_tasks``.
    """
    return {"CP_PIPE_DIR": str(DATA_DIR), "PYTHONPATH": str(PIPELINES_DIR)}


@dataclasses.dataclass
class PipetaskSetup:
    """What a pipetask test needs: a manager, a repo and parameters."""

    manager: JobManager
    repo: str
    environment: dict[str, str]

    def parameters(self, **overrides: object) -> dict[str, object]:
        """Parameters of a pipetask job on the test repo (all detectors)."""
        parameters: dict[str, object] = {
            "pipeline": "${CP_PIPE_DIR}/pipelines/pipeline.yaml",
            "butler": self.repo,
            "input_collection": "inputs",
            "data_query": "instrument='INSTRU'",
            "config": "-j 1",
            "environment": self.environment,
        }
        parameters.update(overrides)
        return parameters


@pytest.fixture
def pipelines_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put this Python's directory first on ``PATH`` for the test.

    The pipetask job type runs ``python3``, found on the ``PATH`` that jobs
    inherit from the server; it must be this Python, which has ts_ocps and
    the pipelines (an activated venv, as at a site).
    """
    monkeypatch.setenv("PATH", f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture
async def pipetask_manager(
    tmp_path: pathlib.Path,
    butler_repo: str,
    pipetask_environment: dict[str, str],
    pipelines_on_path: None,
) -> AsyncIterator[PipetaskSetup]:
    """A started `JobManager` with the shipped job types and a test repo."""
    registry = JobTypeRegistry.from_directory(JOB_TYPES_DIR)
    config = ManagerConfig(state_dir=tmp_path / "state", kill_grace=2.0)
    manager = JobManager(config, registry, log=logging.getLogger("ocps.test.pipetask"))
    await manager.start()
    try:
        yield PipetaskSetup(manager, butler_repo, pipetask_environment)
    finally:
        await abort_active_and_close(manager)
