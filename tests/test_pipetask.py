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

"""The pipetask job type end to end: real pipetask runs through the manager.

Each test submits jobs of the shipped ``config/job_types/pipetask.yaml`` to
a real `JobManager` that runs the wrapper as a subprocess against a private
copy of a tiny real Butler repo (see ``tests/support/butler.py``).
"""

import asyncio
import json
import os
import pathlib
import subprocess
import sys

import pytest
from lsst.ts.ocps import ExecutionPhase, Job, ParameterError
from lsst.ts.ocps.jobs.triggers import wait_for_paths
from support.butler import DETECTORS, PipetaskSetup, input_array, read_arrays

STD_TIMEOUT = 120
"""Seconds a test waits for a pipetask job (a run takes about 3 s)."""

ADDEND0 = 1
ADDEND1 = 100
"""The addends of task0 and task1 in ``tests/data/pipelines/pipeline.yaml``."""


async def run_job(setup: PipetaskSetup, **kwargs: object) -> Job:
    """Submit a pipetask job and wait for it to end."""
    options = {
        name: kwargs.pop(name)
        for name in ("prereq_jobs", "prereq_success")
        if name in kwargs
    }
    job = await setup.manager.submit(
        "pipetask", setup.parameters(**kwargs), **options  # type: ignore[arg-type]
    )
    return await asyncio.wait_for(setup.manager.wait_terminal(job.job_id), STD_TIMEOUT)


def result_of(job: Job) -> dict:
    """The wrapper's result JSON of a finished job."""
    assert "result" in job.job_info, job.job_info
    return job.job_info["result"]


def datasets_of(job: Job) -> list[dict]:
    """The job's results that are Butler datasets, as JSON.

    The wrapper lists them in its result file; the job manager moves them
    to the job's results, with nothing left behind.
    """
    assert "results" not in result_of(job), result_of(job)["results"]
    return [r.to_dict() for r in job.results if "datasetType" in r.details]


def error_of(job: Job) -> str:
    """The wrapper's error message, checked to be the job's summary."""
    message = result_of(job)["error"]["message"]
    assert job.error_summary is not None
    assert job.error_summary.message == f"{message} (exit code {job.exit_code})"
    return message


def job_processes(job_id: str) -> list[int]:
    """Pids of live processes whose environment has ``OCPS_JOB_ID=job_id``."""
    marker = f"OCPS_JOB_ID={job_id}".encode()
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def test_server_does_not_import_pipelines() -> None:
    """The OCPS server side imports no Science Pipelines package."""
    modules = [
        "lsst.ts.ocps",
        "lsst.ts.ocps.jobs.job_manager",
        "lsst.ts.ocps.jobs.job_types",
        "lsst.ts.ocps.jobs.journal",
        "lsst.ts.ocps.runners.local",
        "lsst.ts.ocps.jobs.triggers",
        "lsst.ts.ocps.rest.app",
        "lsst.ts.ocps.cli",
        "lsst.ts.ocps.pipetask",
        "lsst.ts.ocps.pipetask.options",
    ]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(\n"
        "    ('lsst.daf', 'lsst.pipe', 'lsst.ctrl', 'lsst.pex', 'lsst.resources'))\n"
        ")))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output) == []


async def test_two_task_pipeline(pipetask_manager: PipetaskSetup) -> None:
    setup = pipetask_manager
    job = await run_job(setup, output_dataset_types="add_dataset2, add2_dataset1")

    assert job.phase is ExecutionPhase.COMPLETED, job.error_summary
    assert job.exit_code == 0
    result = result_of(job)
    assert result["outputCollection"] == f"u/ocps/{job.job_id}"
    assert result["outputRun"] == f"u/ocps/{job.job_id}/run"
    assert result["pipeline"] == os.path.join(
        setup.environment["CP_PIPE_DIR"], "pipelines", "pipeline.yaml"
    )
    assert result["summary"]["status"] == "success"
    assert result["summary"]["quanta"]["total"] == 2 * DETECTORS
    assert result["summary"]["quanta"]["byTask"] == {
        "task0": {"success": DETECTORS},
        "task1": {"success": DETECTORS},
    }
    assert "error" not in result

    # Outputs of both requested types are listed, nothing else.
    listed = datasets_of(job)
    assert sorted({r["datasetType"] for r in listed}) == [
        "add2_dataset1",
        "add_dataset2",
    ]
    assert len(listed) == 2 * DETECTORS == result["resultsTotal"]
    for entry in listed:
        assert entry["uri"].startswith("file://")
        assert entry["run"] == result["outputRun"]
        path = pathlib.Path(entry["uri"].removeprefix("file://"))
        assert entry["size"] == path.stat().st_size
    detectors = sorted(
        r["dataId"]["detector"] for r in listed if r["datasetType"] == "add_dataset2"
    )
    assert detectors == list(range(DETECTORS))

    # The values in the output collection are the pipeline's arithmetic.
    values = read_arrays(setup.repo, result["outputCollection"], "add_dataset2")
    assert values == {
        det: [v + ADDEND0 + ADDEND1 for v in input_array(det)]
        for det in range(DETECTORS)
    }

    # The JSON log and the summary are kept with the job as results.
    files = {r.id: r for r in job.results if r.uri.startswith("file://")}
    assert {"pipetask.json", "summary.json"} <= set(files)
    log_path = setup.manager.work_dir(job.job_id) / "pipetask.json"
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert any(r["name"].startswith("lsst.") for r in records)

    # The wrapper's own lines lead with the job id.
    stderr = setup.manager.log_path(job.job_id, "stderr").read_text()
    assert f"job_id={job.job_id} started pipetask " in stderr
    assert f"job_id={job.job_id} finished exit_code=0 outputs={len(listed)}" in stderr


async def test_subset_and_output_glob(pipetask_manager: PipetaskSetup) -> None:
    """A ``#subset`` suffix is kept; output_glob applies by default."""
    setup = pipetask_manager
    job = await run_job(
        setup,
        pipeline="${CP_PIPE_DIR}/pipelines/pipeline.yaml#first",
        data_query="instrument='INSTRU' AND detector IN (0, 2)",
        output_glob="add_dataset*",
    )
    assert job.phase is ExecutionPhase.COMPLETED, job.error_summary
    result = result_of(job)
    assert result["summary"]["quanta"]["byTask"] == {"task0": {"success": 2}}
    assert {r["datasetType"] for r in datasets_of(job)} == {"add_dataset1"}
    values = read_arrays(setup.repo, result["outputCollection"], "add_dataset1")
    assert values == {det: [v + ADDEND0 for v in input_array(det)] for det in (0, 2)}


async def test_processes_and_log_level(pipetask_manager: PipetaskSetup) -> None:
    """``-j 2`` and ``--log-level`` work through the wrapper.

    The spawned processes find the job's environment (``PYTHONPATH`` for
    the task module), and the log level goes before ``run``.
    """
    setup = pipetask_manager
    job = await run_job(
        setup,
        pipeline="${CP_PIPE_DIR}/pipelines/pipeline_custom.yaml",
        config="-j 2 --log-level ocps_test_tasks=INFO",
        data_query="instrument='INSTRU' AND detector=2",
        output_dataset_types="scaled_dataset",
    )
    assert job.phase is ExecutionPhase.COMPLETED, job.job_info
    command = result_of(job)["command"]
    assert command.index("--log-level") < command.index("run")
    assert command[command.index("--processes") + 1] == "2"
    expected = [2 * (v + ADDEND0 + ADDEND1) for v in input_array(2)]
    assert read_arrays(setup.repo, f"u/ocps/{job.job_id}", "scaled_dataset") == {
        2: expected
    }
    log_path = setup.manager.work_dir(job.job_id) / "pipetask.json"
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    task_lines = [r["message"] for r in records if r["name"] == "ocps_test_tasks"]
    scale_input = " ".join(str(v + ADDEND0 + ADDEND1) for v in input_array(2))
    scale_output = " ".join(map(str, expected))
    assert task_lines == [f"detector=2 input=[{scale_input}] output=[{scale_output}]"]


async def test_prerequisite_outputs_feed_next_job(
    pipetask_manager: PipetaskSetup,
) -> None:
    """A follow-on job reads a first job's outputs with ``-i u/ocps/<id>``."""
    setup = pipetask_manager
    first = await setup.manager.submit("pipetask", setup.parameters())
    second = await setup.manager.submit(
        "pipetask",
        setup.parameters(
            pipeline="${CP_PIPE_DIR}/pipelines/pipeline_chained.yaml",
            input_collection="",
            config=f"-j 1 -i u/ocps/{first.job_id}",
            output_dataset_types="scaled_dataset",
        ),
        prereq_jobs=[first.job_id],
        prereq_success=True,
    )
    assert second.phase is ExecutionPhase.HELD

    second = await asyncio.wait_for(
        setup.manager.wait_terminal(second.job_id), STD_TIMEOUT
    )
    first = await setup.manager.get_job(first.job_id)
    assert first.phase is ExecutionPhase.COMPLETED, first.error_summary
    assert second.phase is ExecutionPhase.COMPLETED, second.error_summary
    assert result_of(second)["inputCollections"] == [f"u/ocps/{first.job_id}"]
    values = read_arrays(setup.repo, f"u/ocps/{second.job_id}", "scaled_dataset")
    assert values == {
        det: [10 * (v + ADDEND0 + ADDEND1) for v in input_array(det)]
        for det in range(DETECTORS)
    }
    assert len(datasets_of(second)) == DETECTORS


async def test_concurrent_jobs_share_repo(pipetask_manager: PipetaskSetup) -> None:
    """Several executes at once: each job writes its own collection."""
    setup = pipetask_manager
    jobs = [
        await setup.manager.submit(
            "pipetask",
            setup.parameters(
                data_query=f"instrument='INSTRU' AND detector={det}",
                output_dataset_types="add_dataset2",
            ),
        )
        for det in (1, 2)
    ]
    ended = await asyncio.wait_for(
        asyncio.gather(*(setup.manager.wait_terminal(j.job_id) for j in jobs)),
        STD_TIMEOUT,
    )
    for job, det in zip(ended, (1, 2)):
        assert job.phase is ExecutionPhase.COMPLETED, job.job_info
        [listed] = datasets_of(job)
        assert listed["dataId"]["detector"] == det
        assert f"/u/ocps/{job.job_id}/run/" in listed["uri"]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        pytest.param(
            {"data_query": "instrument='INSTRU' AND detector = 99"},
            ["QuantumGraph was empty", "no rows"],
            id="empty-graph",
        ),
        pytest.param(
            {"data_query": "detector ==== 1"},
            ["InvalidQueryError", "detector ==== 1"],
            id="bad-query",
        ),
        pytest.param(
            {"input_collection": "nosuch"},
            ["MissingCollectionError", "nosuch"],
            id="unknown-input",
        ),
        pytest.param(
            {"config": "-j 1 -c task0:addend=abc"},
            ["FieldValidationError", "addend"],
            id="bad-config-value",
        ),
        pytest.param(
            {
                "pipeline": "${CP_PIPE_DIR}/pipelines/pipeline_custom.yaml",
                "config": "-j 1 -c scale:fail_detectors=[1]",
            },
            ["1 of 12 quanta failed", "'scale'", "detector: 1", "ScaleFailure"],
            id="task-raises",
        ),
    ],
)
async def test_failures(
    pipetask_manager: PipetaskSetup, overrides: dict, expected: list[str]
) -> None:
    job = await run_job(pipetask_manager, **overrides)
    assert job.phase is ExecutionPhase.ERROR
    assert job.exit_code == 1
    message = error_of(job)
    assert message.startswith("pipetask failed: ")
    for text in expected:
        assert text in message
    stderr = pipetask_manager.manager.log_path(job.job_id, "stderr").read_text()
    assert f"job_id={job.job_id} failed exit_code=1 {message}" in stderr


async def test_task_failure_details(pipetask_manager: PipetaskSetup) -> None:
    """The summary names every failed quantum; other quanta still ran."""
    setup = pipetask_manager
    job = await run_job(
        setup,
        pipeline="${CP_PIPE_DIR}/pipelines/pipeline_custom.yaml",
        config="-j 1 -c scale:fail_detectors=[1,3] -c scale:factor=3",
        output_dataset_types="scaled_dataset",
    )
    assert job.phase is ExecutionPhase.ERROR
    summary = result_of(job)["summary"]
    assert summary["status"] == "failure"
    assert summary["quanta"]["byTask"]["scale"] == {"success": 2, "failure": 2}
    assert [
        (f["taskLabel"], f["dataId"]["detector"], f["exceptionClass"])
        for f in summary["failures"]
    ] == [
        ("scale", 1, "ocps_test_tasks.ScaleFailure"),
        ("scale", 3, "ocps_test_tasks.ScaleFailure"),
    ]
    # The quanta that succeeded wrote their outputs, and they are listed.
    values = read_arrays(setup.repo, f"u/ocps/{job.job_id}", "scaled_dataset")
    assert values == {
        det: [3 * (v + ADDEND0 + ADDEND1) for v in input_array(det)] for det in (0, 2)
    }
    assert sorted(r["dataId"]["detector"] for r in datasets_of(job)) == [0, 2]
    assert error_of(job).startswith("pipetask failed: 2 of ")


async def test_wrapper_refusals_end_in_error(pipetask_manager: PipetaskSetup) -> None:
    """Problems found inside the job end it with exit code 2 and a reason."""
    setup = pipetask_manager
    undefined = await run_job(setup, pipeline="${NO_SUCH_DIR}/pipelines/x.yaml")
    other_release = await run_job(setup, version="w.2099.01")
    for job, text in [(undefined, "'NO_SUCH_DIR'"), (other_release, "w.2099.01")]:
        assert job.phase is ExecutionPhase.ERROR
        assert job.exit_code == 2
        assert text in error_of(job)
    assert not (setup.manager.work_dir(undefined.job_id) / "pipetask.json").exists()


async def test_installed_release_is_accepted(pipetask_manager: PipetaskSetup) -> None:
    from importlib.metadata import version

    installed = version("lsst-pipe-base")
    job = await run_job(
        pipetask_manager,
        version=installed,
        data_query="instrument='INSTRU' AND detector=0",
    )
    assert job.phase is ExecutionPhase.COMPLETED, job.error_summary
    result = result_of(job)
    assert result["version"] == installed
    assert result["pipelines"]["lsst-pipe-base"] == installed


async def test_abort_running_pipetask(pipetask_manager: PipetaskSetup) -> None:
    setup = pipetask_manager
    job = await setup.manager.submit(
        "pipetask",
        setup.parameters(
            pipeline="${CP_PIPE_DIR}/pipelines/pipeline_custom.yaml",
            config="-j 1 -c scale:sleep=600",
            data_query="instrument='INSTRU' AND detector=0",
        ),
    )
    # Once pipetask has written its log, it is running; then abort it.
    log_path = setup.manager.work_dir(job.job_id) / "pipetask.json"
    await asyncio.wait_for(wait_for_paths([str(log_path)], 0), STD_TIMEOUT)
    assert job_processes(job.job_id)

    await setup.manager.abort(job.job_id)
    job = await asyncio.wait_for(setup.manager.wait_terminal(job.job_id), STD_TIMEOUT)
    assert job.phase is ExecutionPhase.ABORTED
    assert job_processes(job.job_id) == []


@pytest.mark.parametrize(
    "config, option",
    [
        ("-o elsewhere", "-o"),
        ("--output=elsewhere", "--output"),
        ("--output-run u/me/run", "--output-run"),
        ("-b /other/repo", "-b"),
        ("-p other.yaml", "-p"),
        ("--data-query x", "--data-query"),
        ("-g saved.qg", "-g"),
        ("-@ options.yaml", "-@"),
        ("-j 1 --prune-replaced purge", "--prune-replaced"),
        ("--frobnicate", "--frobnicate"),
    ],
)
async def test_refused_options(
    pipetask_manager: PipetaskSetup, config: str, option: str
) -> None:
    """Options that would redirect the run are refused at submit."""
    setup = pipetask_manager
    with pytest.raises(ParameterError, match=f"option '{option}'"):
        await setup.manager.submit("pipetask", setup.parameters(config=config))
    assert await setup.manager.list_jobs() == []


async def test_refused_environment(pipetask_manager: PipetaskSetup) -> None:
    setup = pipetask_manager
    with pytest.raises(ParameterError, match="'OCPS_JOB_ID' may not be set"):
        await setup.manager.submit(
            "pipetask", setup.parameters(environment={"OCPS_JOB_ID": "x"})
        )
    assert await setup.manager.list_jobs() == []
