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

"""The OCPS CSC running real pipetask jobs on a test Butler repo."""

import asyncio
import json
import pathlib

import pytest
import yaml
from lsst.ts.ocps import sal
from support.butler import DETECTORS, JOB_TYPES_DIR, input_array, read_arrays
from support.csc import STD_TIMEOUT, csc_env, make_ocps, run_execute

__all__ = ["csc_env"]

PIPELINE_TIMEOUT = 300.0
"""Seconds a pipetask job through the CSC may take on a busy machine."""

ADDENDS = (1, 100)
"""What the two tasks of ``pipeline.yaml`` add."""


@pytest.fixture
def pipetask_config_dir(
    tmp_path: pathlib.Path,
    butler_repo: str,
    pipetask_environment: dict[str, str],
    pipelines_on_path: None,
) -> pathlib.Path:
    """A CSC config dir whose LATISS instance runs pipetask on the repo."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    config = {
        "instances": [
            {
                "sal_index": 1,
                "instance": "LATISS",
                "butler": butler_repo,
                "input_collection": "inputs",
                "output_glob": "add_dataset*",
                "job_type": "pipetask",
                "environment": pipetask_environment,
            }
        ],
        "job_types_dir": str(JOB_TYPES_DIR),
        "rest_port": 0,
    }
    (config_dir / "_init.yaml").write_text(yaml.safe_dump(config))
    return config_dir


async def test_calibration_flow(
    csc_env: str, pipetask_config_dir: pathlib.Path
) -> None:
    """Generate and verify at once, as make_*_calibrations do."""
    async with make_ocps(
        initial_state=sal.State.ENABLED, config_dir=pipetask_config_dir
    ) as harness:
        remote = harness.remote
        repo = harness.csc.settings.instance.butler

        # Refused at submit, before any ack in progress.
        with pytest.raises(sal.AckError, match="-b"):
            await remote.cmd_execute.set_start(
                pipeline="${CP_PIPE_DIR}/pipelines/pipeline.yaml",
                config="-j 1 -b /elsewhere",
                timeout=STD_TIMEOUT,
            )

        generate = await run_execute(
            remote,
            timeout=PIPELINE_TIMEOUT,
            pipeline="${CP_PIPE_DIR}/pipelines/pipeline.yaml",
            version="",
            config="-j 1 --register-dataset-types",
            data_query="instrument='INSTRU'",
            output_dataset_types="add_dataset2",
        )
        assert generate.job_result is not None
        assert generate.job_result.exit_code == 0, generate.job_result.result
        result = generate.result
        assert result["phase"] == "completed"
        assert {"name": "BUTLER_REPO", "value": repo} in result["parameters"][
            "environment"
        ]
        datasets = [r for r in result["results"] if r.get("datasetType")]
        assert len(datasets) == DETECTORS
        assert all("add_dataset2" in r["uri"] for r in datasets)
        assert sorted(r["dataId"]["detector"] for r in datasets) == list(
            range(DETECTORS)
        )
        # The datasets are reported once: as results, not in jobInfo too.
        assert "results" not in result["jobInfo"]["result"]
        assert result["jobInfo"]["result"]["outputCollection"] == (
            f"u/ocps/{generate.job_id}"
        )
        values = read_arrays(repo, f"u/ocps/{generate.job_id}", "add_dataset2")
        assert values == {
            det: [v + sum(ADDENDS) for v in input_array(det)]
            for det in range(DETECTORS)
        }

        # A verify job chained on the first one's outputs, and a failing
        # job, in flight together.
        verify, failing = await asyncio.gather(
            run_execute(
                remote,
                timeout=PIPELINE_TIMEOUT,
                pipeline="${CP_PIPE_DIR}/pipelines/pipeline_chained.yaml",
                config=f"-j 1 -i u/ocps/{generate.job_id}",
                data_query="instrument='INSTRU'",
                prereq_jobs=generate.job_id,
                output_dataset_types="scaled_dataset",
            ),
            run_execute(
                remote,
                timeout=PIPELINE_TIMEOUT,
                pipeline="${CP_PIPE_DIR}/pipelines/pipeline.yaml",
                config="-j 1",
                data_query="instrument='NO_SUCH_INSTRUMENT'",
            ),
        )
        assert verify.job_result is not None
        assert verify.job_result.exit_code == 0, verify.job_result.result
        scaled = read_arrays(repo, f"u/ocps/{verify.job_id}", "scaled_dataset")
        assert scaled == {
            det: [10 * (v + sum(ADDENDS)) for v in input_array(det)]
            for det in range(DETECTORS)
        }

        assert failing.final_ack is not None
        assert failing.final_ack.ack == sal.SalRetCode.CMD_COMPLETE
        assert failing.job_result is not None
        assert failing.job_result.exit_code == 1
        assert failing.result["phase"] == "error"
        # The summary is the wrapper's own reason, with the exit code.
        reason = failing.result["jobInfo"]["result"]["error"]["message"]
        assert reason.startswith("pipetask failed: ")
        assert failing.result["errorSummary"]["message"] == f"{reason} (exit code 1)"
        assert json.loads(failing.job_result.result)["jobId"] == failing.job_id
