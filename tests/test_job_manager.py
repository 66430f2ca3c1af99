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

"""Tests of JobManager with real job processes."""

import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import pathlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
import yaml
from lsst.ts.ocps.exceptions import (
    JobNotFoundError,
    JobStateError,
    ParameterError,
    UnknownJobTypeError,
)
from lsst.ts.ocps.jobs import job_manager as job_manager_module
from lsst.ts.ocps.jobs.job_manager import JobManager, ManagerConfig
from lsst.ts.ocps.jobs.journal import Journal
from lsst.ts.ocps.jobs.outcomes import outcome_phase
from lsst.ts.ocps.models import ErrorType, ExecutionPhase, Job, JobResult
from lsst.ts.ocps.runners.base import LaunchSpec, Runner, RunOutcome, RunStatus
from lsst.ts.ocps.runners.slurm_cli import SlurmUnavailableError
from support.jobs import STD_TIMEOUT, make_manager, max_overlap, read_spans

Phase = ExecutionPhase

MakeManager = Callable[..., contextlib.AbstractAsyncContextManager[JobManager]]
"""The type of the ``make_started_manager`` fixture."""

OPENAPI_PATH = pathlib.Path(__file__).parents[1] / "schema" / "openapi.yaml"

# A job that notes its start in a span file, waits until the test closes
# its gate (a FIFO), then notes its end.
_GATED_CODE = """
import sys, time
path, label, gate = sys.argv[1:4]
def note(what):
    with open(path, "a") as stream:
        stream.write(label + " " + what + " " + str(time.monotonic_ns()) + "\\n")
note("start")
with open(gate) as stream:
    stream.read()
note("end")
"""

# A job that copies a prepared file to its result file, then exits.
_DECLARE_CODE = """
import os, shutil, sys
shutil.copyfile(sys.argv[1], os.environ["OCPS_RESULT_FILE"])
sys.exit(int(sys.argv[2]))
"""

# A job that writes its interpreter and PATH to its result file.
_INTERPRETER_CODE = """
import json, os, sys
with open(os.environ["OCPS_RESULT_FILE"], "w") as stream:
    found = dict(executable=sys.executable, prefix=sys.prefix)
    json.dump(dict(found, path=os.environ["PATH"]), stream)
"""


def add_job_types(job_types_dir: pathlib.Path) -> None:
    """Add the job types that only these tests use."""
    string = {"type": "string"}
    code = {"type": "integer", "minimum": 0, "maximum": 255, "default": 0}
    gated = ["{path}", "{label}", "{gate}"]
    gated_parameters = {
        "type": "object",
        "properties": {"path": string, "label": string, "gate": string},
    }
    types: list[dict[str, Any]] = [
        {
            "name": "gated",
            "command": [sys.executable, "-c", _GATED_CODE, *gated],
            "parameters": gated_parameters,
        },
        {
            "name": "gated_limited",
            "command": [sys.executable, "-c", _GATED_CODE, *gated],
            "parameters": gated_parameters,
            "max_concurrent": 1,
        },
        {
            "name": "declare",
            "command": [sys.executable, "-c", _DECLARE_CODE, "{source}", "{code}"],
            "parameters": {
                "type": "object",
                "properties": {"source": string, "code": code},
            },
            "output_globs": ["*.txt"],
        },
        {
            "name": "interpreter",
            "command": ["python3", "-c", _INTERPRETER_CODE],
            "parameters": {"type": "object", "properties": {}},
        },
        {
            "name": "own_path",
            "command": [sys.executable, "-c", _INTERPRETER_CODE],
            "parameters": {"type": "object", "properties": {}},
            "environment": {"PATH": "/usr/bin:/bin"},
        },
        {
            "name": "self_signal",
            "command": [sys.executable, "-c", "import os; os.kill(os.getpid(), 53)"],
            "parameters": {"type": "object", "properties": {}},
        },
        {
            "name": "queued_batch",
            "command": ["true"],
            "parameters": {"type": "object", "properties": {}},
            "runner": "queued_batch",
        },
        {
            "name": "unreachable",
            "command": ["true"],
            "parameters": {"type": "object", "properties": {}},
            "runner": "unreachable",
        },
    ]
    for job_type in types:
        job_type.update(description=f"Test job type {job_type['name']}.")
        job_type.update(version="1.0")
        (job_types_dir / f"{job_type['name']}.yaml").write_text(json.dumps(job_type))


class Gate:
    """A FIFO that a gated job reads until the test lets it go on.

    Parameters
    ----------
    path : `pathlib.Path`
        Where to make the FIFO.
    """

    def __init__(self, path: pathlib.Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd: int | None = None

    async def hold(self) -> None:
        """Wait until the job reads the gate (so it has started), and keep
        it waiting there."""
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, os.open, self.path, os.O_WRONLY)
        done, _ = await asyncio.wait({opening}, timeout=STD_TIMEOUT)
        if not done:
            # Opening a reader lets the thread blocked in open() return.
            reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                os.close(await opening)
            finally:
                os.close(reader)
            raise AssertionError(f"no job opened {self.path}")
        self.fd = opening.result()

    def release(self) -> None:
        """Let the job go on: it reads end of file."""
        assert self.fd is not None, "gate not held"
        os.close(self.fd)
        self.fd = None


@pytest.fixture
def gates(tmp_path: pathlib.Path) -> Iterator[Callable[[str], Gate]]:
    """Factory of gates in ``tmp_path``; held gates are released after."""
    made: list[Gate] = []

    def factory(name: str) -> Gate:
        gate = Gate(tmp_path / f"{name}.fifo")
        made.append(gate)
        return gate

    yield factory
    for gate in made:
        if gate.fd is not None:
            gate.release()


class UnreachableRunner(Runner):
    """Stand-in for a batch system whose controller cannot be reached.

    A real Slurm controller cannot be made unreachable on demand here, so
    `launch` raises the error the given factory makes.
    """

    name = "unreachable"

    def __init__(self, error: Callable[[], Exception]) -> None:
        self.error = error

    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        raise self.error()

    async def wait_started(self, job_id: str, runner_state: dict[str, Any]) -> None:
        raise AssertionError("never launched")

    async def wait_finished(
        self, job_id: str, runner_state: dict[str, Any]
    ) -> RunOutcome:
        raise AssertionError("never launched")

    async def terminate(self, job_id: str, runner_state: dict[str, Any]) -> None:
        raise AssertionError("never launched")

    async def reattach(self, job_id: str, runner_state: dict[str, Any]) -> bool:
        return False


class QueuedBatchRunner(Runner):
    """Stand-in for a batch system whose jobs wait in its queue first.

    The test decides when a job starts and ends, which a real Slurm
    cannot be made to do at a chosen moment. Like the Slurm runner, it
    reports a job that ends before it was seen running as started and
    finished at once, and cancels a job it is asked to terminate.
    """

    name = "queued_batch"

    def __init__(self) -> None:
        self.launched: asyncio.Queue[str] = asyncio.Queue()
        self.started: dict[str, asyncio.Event] = {}
        self.finished: dict[str, asyncio.Event] = {}
        self.outcomes: dict[str, RunOutcome] = {}

    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        self.started[spec.job_id] = asyncio.Event()
        self.finished[spec.job_id] = asyncio.Event()
        self.launched.put_nowait(spec.job_id)
        return {"batch_job_id": f"batch-{spec.job_id}"}

    def run(self, job_id: str) -> None:
        """The job leaves the queue and runs."""
        self.started[job_id].set()

    def end(self, job_id: str, outcome: RunOutcome) -> None:
        """The job ends, whether it ran or not."""
        self.outcomes[job_id] = outcome
        self.started[job_id].set()
        self.finished[job_id].set()

    async def wait_started(self, job_id: str, runner_state: dict[str, Any]) -> None:
        await self.started[job_id].wait()

    async def wait_finished(
        self, job_id: str, runner_state: dict[str, Any]
    ) -> RunOutcome:
        await self.finished[job_id].wait()
        return self.outcomes[job_id]

    async def terminate(self, job_id: str, runner_state: dict[str, Any]) -> None:
        ran = self.started[job_id].is_set()
        exit_code = -signal.SIGTERM if ran else None
        self.end(job_id, RunOutcome(RunStatus.CANCELLED, exit_code, "cancelled"))

    async def reattach(self, job_id: str, runner_state: dict[str, Any]) -> bool:
        return job_id in self.started


class PhaseRecorder:
    """A listener that records every announced (job_id, phase)."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.seen: list[tuple[str, ExecutionPhase]] = []
        self.journal_phases: list[ExecutionPhase] = []

    async def __call__(self, job: Job) -> None:
        self.seen.append((job.job_id, job.phase))
        # The change must already be in the journal.
        stored = await self.manager.journal.get(job.job_id)
        self.journal_phases.append(stored.phase)

    def phases(self, job_id: str) -> list[ExecutionPhase]:
        return [phase for seen_id, phase in self.seen if seen_id == job_id]


def processes_of(job_id: str) -> list[int]:
    """Return pids of live processes whose environment has this job id."""
    marker = f"OCPS_JOB_ID={job_id}".encode()
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in environ.split(b"\0") and state != "Z":
            pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def log_events(verb: str) -> Iterator[dict[str, asyncio.Event]]:
    """Collect an event per job id for job log lines with ``verb``."""
    events: dict[str, asyncio.Event] = {}

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            words = record.getMessage().split()
            if len(words) >= 2 and words[1] == verb and words[0].startswith("job_id="):
                events.setdefault(words[0][7:], asyncio.Event()).set()

    handler = Handler()
    logger = logging.getLogger("ocps")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield events
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def wait_phase(manager: JobManager, job_id: str, phase: ExecutionPhase) -> Job:
    """Wait, without polling, until the job reaches ``phase``."""
    async with asyncio.timeout(STD_TIMEOUT):
        job = await manager.get_job(job_id)
        while job.phase != phase:
            assert not job.is_terminal, f"job ended {job.phase} before {phase}"
            job = await manager.wait_for_change(job_id, job.phase, STD_TIMEOUT)
        return job


async def finish(manager: JobManager, job_id: str) -> Job:
    async with asyncio.timeout(STD_TIMEOUT):
        return await manager.wait_terminal(job_id)


async def test_success_phases_and_journal(manager: JobManager) -> None:
    recorder = PhaseRecorder(manager)
    manager.add_listener(recorder)
    job = await manager.submit("exit_code", {"code": 0}, run_id="run-1", owner_id="me")
    assert job.phase == Phase.QUEUED
    assert len(job.job_id) == 32 and int(job.job_id, 16) >= 0
    done = await finish(manager, job.job_id)
    assert done.phase == Phase.COMPLETED
    assert done.exit_code == 0
    assert done.error_summary is None
    assert done.run_id == "run-1" and done.owner_id == "me"
    assert done.start_time is not None and done.end_time is not None
    assert done.creation_time <= done.start_time <= done.end_time
    assert done.destruction == done.end_time + datetime.timedelta(
        seconds=manager.config.retention
    )
    assert recorder.phases(job.job_id) == [
        Phase.QUEUED,
        Phase.EXECUTING,
        Phase.COMPLETED,
    ]
    # Every listener call saw the same phase already in the journal.
    assert recorder.journal_phases == [phase for _, phase in recorder.seen]
    assert await manager.journal.get(job.job_id) == done


async def test_failure_exit_code(manager: JobManager) -> None:
    job = await manager.submit("exit_code", {"code": 3})
    done = await finish(manager, job.job_id)
    assert done.phase == Phase.ERROR
    assert done.exit_code == 3
    assert done.error_summary is not None
    assert done.error_summary.message == "process exited with code 3"


async def test_missing_command(manager: JobManager) -> None:
    job = await manager.submit("missing", {})
    done = await finish(manager, job.job_id)
    assert done.phase == Phase.ERROR
    assert done.error_summary is not None
    assert "could not start the job" in done.error_summary.message
    assert done.error_summary.type == ErrorType.FATAL
    assert done.start_time is None


async def test_time_limit(manager: JobManager) -> None:
    job = await manager.submit("sleep", {"seconds": 60}, execution_duration=0.5)
    assert job.execution_duration == 0.5
    done = await finish(manager, job.job_id)
    assert done.phase == Phase.ERROR
    assert done.error_summary is not None
    assert done.error_summary.message == "time limit exceeded"
    assert done.exit_code == -15
    assert processes_of(job.job_id) == []


async def test_time_limit_sigkill_after_grace(manager: JobManager) -> None:
    # The job ignores SIGTERM, so only SIGKILL after kill_grace stops it.
    job = await manager.submit("stubborn", {"seconds": 60}, execution_duration=0.5)
    done = await finish(manager, job.job_id)
    assert done.phase == Phase.ERROR
    assert done.error_summary is not None
    assert done.error_summary.message == "time limit exceeded"
    assert done.exit_code == -9
    assert processes_of(job.job_id) == []


async def test_abort_executing(manager: JobManager, tmp_path: pathlib.Path) -> None:
    recorder = PhaseRecorder(manager)
    manager.add_listener(recorder)
    spans = tmp_path / "spans.txt"
    job = await manager.submit("span", {"path": str(spans), "seconds": 300})
    await wait_phase(manager, job.job_id, Phase.EXECUTING)
    aborted = await manager.abort(job.job_id)
    assert aborted.phase == Phase.ABORTED
    assert aborted.exit_code == -15
    assert aborted.end_time is not None
    assert processes_of(job.job_id) == []
    assert recorder.phases(job.job_id)[-1] == Phase.ABORTED
    with pytest.raises(JobStateError, match="has ended already"):
        await manager.abort(job.job_id)


async def test_abort_queued_and_held(
    tmp_path: pathlib.Path, make_started_manager: MakeManager
) -> None:
    config = ManagerConfig(state_dir=tmp_path / "state", max_concurrent=1, kill_grace=1)
    async with make_started_manager(config) as manager:
        recorder = PhaseRecorder(manager)
        manager.add_listener(recorder)
        running = await manager.submit("sleep", {"seconds": 300})
        queued = await manager.submit("exit_code", {"code": 0})
        held = await manager.submit(
            "exit_code", {"code": 0}, prereq_jobs=[running.job_id]
        )
        await wait_phase(manager, running.job_id, Phase.EXECUTING)
        assert (await manager.get_job(queued.job_id)).phase == Phase.QUEUED
        assert (await manager.get_job(held.job_id)).phase == Phase.HELD

        for job in (queued, held):
            ended = await manager.abort(job.job_id)
            assert ended.phase == Phase.ABORTED
            assert ended.start_time is None and ended.exit_code is None
            assert not manager.log_path(job.job_id, "stdout").exists()
        assert recorder.phases(queued.job_id) == [Phase.QUEUED, Phase.ABORTED]
        assert recorder.phases(held.job_id) == [Phase.HELD, Phase.ABORTED]
        await manager.abort(running.job_id)

    with pytest.raises(JobNotFoundError):
        async with make_started_manager(config) as manager:
            await manager.abort("no-such-job")


async def test_prerequisites_run_whatever_the_outcome(manager: JobManager) -> None:
    first = await manager.submit("exit_code", {"code": 2})
    second = await manager.submit("exit_code", {"code": 0}, prereq_jobs=[first.job_id])
    assert second.phase == Phase.HELD
    assert second.prereq_jobs == [first.job_id]
    done_first = await finish(manager, first.job_id)
    done_second = await finish(manager, second.job_id)
    assert done_first.phase == Phase.ERROR
    assert done_second.phase == Phase.COMPLETED
    assert done_second.start_time is not None and done_first.end_time is not None
    assert done_second.start_time >= done_first.end_time


async def test_prerequisite_success_required(manager: JobManager) -> None:
    recorder = PhaseRecorder(manager)
    manager.add_listener(recorder)
    good = await manager.submit("exit_code", {"code": 0})
    bad = await manager.submit("exit_code", {"code": 4})
    job = await manager.submit(
        "exit_code",
        {"code": 0},
        prereq_jobs=[good.job_id, bad.job_id],
        prereq_success=True,
    )
    done = await finish(manager, job.job_id)
    assert done.phase == Phase.ERROR
    assert done.error_summary is not None
    assert done.error_summary.message == f"prerequisite job {bad.job_id} ended ERROR"
    assert done.start_time is None
    assert recorder.phases(job.job_id) == [Phase.HELD, Phase.ERROR]

    # All prerequisites succeed: the job runs.
    job = await manager.submit(
        "exit_code", {"code": 0}, prereq_jobs=[good.job_id], prereq_success=True
    )
    assert (await finish(manager, job.job_id)).phase == Phase.COMPLETED


async def test_prerequisite_deleted_counts_as_ended(manager: JobManager) -> None:
    first = await manager.submit("exit_code", {"code": 0})
    await finish(manager, first.job_id)
    # A held job on an already-ended prerequisite runs at once.
    second = await manager.submit("exit_code", {"code": 0}, prereq_jobs=[first.job_id])
    assert (await finish(manager, second.job_id)).phase == Phase.COMPLETED
    await manager.delete(first.job_id)
    with pytest.raises(ParameterError, match="unknown prerequisite"):
        await manager.submit("exit_code", {"code": 0}, prereq_jobs=[first.job_id])


async def test_data_trigger(manager: JobManager, tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "incoming"
    pattern = str(data_dir / "*.fits")
    job = await manager.submit("exit_code", {"code": 0}, wait_for=[pattern])
    assert job.phase == Phase.HELD
    changed = await manager.wait_for_change(job.job_id, Phase.HELD, 0.2)
    assert changed.phase == Phase.HELD
    data_dir.mkdir()
    (data_dir / "image.fits").write_bytes(b"SIMPLE")
    done = await finish(manager, job.job_id)
    assert done.phase == Phase.COMPLETED
    assert done.wait_for == [pattern]


async def test_data_trigger_timeout(
    manager: JobManager, tmp_path: pathlib.Path
) -> None:
    pattern = str(tmp_path / "never" / "*.fits")
    job = await manager.submit(
        "exit_code", {"code": 0}, wait_for=[pattern], wait_timeout=0.3
    )
    done = await finish(manager, job.job_id)
    assert done.phase == Phase.ERROR
    assert done.error_summary is not None
    assert done.error_summary.message == f"timed out waiting for data: {pattern}"
    assert done.start_time is None


async def test_global_limit_fifo(
    tmp_path: pathlib.Path,
    job_types_dir: pathlib.Path,
    gates: Callable[[str], Gate],
) -> None:
    """Jobs run two at a time, each free slot going to the oldest job.

    The order is checked on what the manager decides (which job it makes
    EXECUTING when a slot frees up), not on times taken inside the jobs,
    which need not follow the launch order on a busy machine.
    """
    add_job_types(job_types_dir)
    config = ManagerConfig(state_dir=tmp_path / "state", max_concurrent=2)
    spans = tmp_path / "spans.txt"
    async with make_manager(config, job_types_dir) as manager:
        recorder = PhaseRecorder(manager)
        manager.add_listener(recorder)
        job_gates = [gates(f"j{i}") for i in range(5)]
        jobs = [
            await manager.submit(
                "gated", {"path": str(spans), "label": f"j{i}", "gate": str(gate.path)}
            )
            for i, gate in enumerate(job_gates)
        ]
        for i in range(5):
            if i == 0:
                for job, gate in zip(jobs[:2], job_gates[:2]):
                    await gate.hold()
                    await wait_phase(manager, job.job_id, Phase.EXECUTING)
            elif i + 1 < 5:
                # The slot job i-1 freed went to job i+1, the oldest waiting.
                await job_gates[i + 1].hold()
                await wait_phase(manager, jobs[i + 1].job_id, Phase.EXECUTING)
            phases = [(await manager.get_job(job.job_id)).phase for job in jobs[i:]]
            running = min(2, 5 - i)
            assert phases == [Phase.EXECUTING] * running + [Phase.QUEUED] * (
                5 - i - running
            )
            job_gates[i].release()
            assert (await finish(manager, jobs[i].job_id)).phase == Phase.COMPLETED

    ids = [job.job_id for job in jobs]
    started = [job_id for job_id, phase in recorder.seen if phase == Phase.EXECUTING]
    # The first two were dispatched together; either may be journaled first.
    assert sorted(started[:2]) == sorted(ids[:2])
    assert started[2:] == ids[2:]
    recorded = read_spans(spans)
    assert sorted(recorded) == [f"j{i}" for i in range(5)]
    assert max_overlap(list(recorded.values())) == 2


async def test_type_limit_does_not_block_others(
    tmp_path: pathlib.Path,
    job_types_dir: pathlib.Path,
    gates: Callable[[str], Gate],
) -> None:
    add_job_types(job_types_dir)
    config = ManagerConfig(state_dir=tmp_path / "state", max_concurrent=3)
    spans = tmp_path / "spans.txt"
    async with make_manager(config, job_types_dir) as manager:
        limited_gates = [gates(f"limited{i}") for i in range(3)]
        limited = [
            await manager.submit(
                "gated_limited",
                {"path": str(spans), "label": f"limited{i}", "gate": str(gate.path)},
            )
            for i, gate in enumerate(limited_gates)
        ]
        others = [
            await manager.submit("span", {"path": str(spans), "label": f"other{i}"})
            for i in range(2)
        ]
        await limited_gates[0].hold()
        # Jobs of another type queued behind the blocked ones run and end
        # while the first of the limited type still runs.
        for job in others:
            assert (await finish(manager, job.job_id)).phase == Phase.COMPLETED
        for job, phase in zip(limited, [Phase.EXECUTING, Phase.QUEUED, Phase.QUEUED]):
            assert (await manager.get_job(job.job_id)).phase == phase
        for i, job in enumerate(limited):
            if i > 0:
                await limited_gates[i].hold()
            limited_gates[i].release()
            assert (await finish(manager, job.job_id)).phase == Phase.COMPLETED

    recorded = read_spans(spans)
    limited_spans = [recorded[f"limited{i}"] for i in range(3)]
    assert max_overlap(limited_spans) == 1
    assert sorted(recorded) == ["limited0", "limited1", "limited2", "other0", "other1"]


async def test_log_limit(
    tmp_path: pathlib.Path, make_started_manager: MakeManager
) -> None:
    config = ManagerConfig(state_dir=tmp_path / "state", log_limit=1000)
    async with make_started_manager(config) as manager:
        job = await manager.submit("noise", {"size": 5000})
        assert (await finish(manager, job.job_id)).phase == Phase.COMPLETED
        for stream, char in (("stdout", b"x"), ("stderr", b"e")):
            data = manager.log_path(job.job_id, stream).read_bytes()
            note = b"\n[ocps: output limit of 1000 bytes reached; 4000 more bytes dropped]\n"
            assert data == char * 1000 + note


async def test_results_and_result_json(manager: JobManager) -> None:
    job = await manager.submit("output", {"answer": 7})
    done = await finish(manager, job.job_id)
    work_dir = manager.work_dir(job.job_id)
    assert done.phase == Phase.COMPLETED
    assert done.job_info["result"] == {"answer": 7, "cwd": str(work_dir)}
    assert [result.id for result in done.results] == ["a.txt", "out/c.json"]
    first = done.results[0]
    assert first.uri == (work_dir / "a.txt").as_uri()
    assert first.size == len("a.txt")
    assert first.mime_type == "text/plain"
    assert done.results[1].mime_type == "application/json"


async def test_environment(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCPS_TEST_SECRET", "do-not-leak")
    job = await manager.submit("env", {"greeting": "hello there"})
    done = await finish(manager, job.job_id)
    env = done.job_info["result"]["env"]
    work_dir = manager.work_dir(job.job_id)
    assert env["GREETING"] == "hello there"
    assert env["OCPS_JOB_ID"] == job.job_id
    assert env["OCPS_WORK_DIR"] == str(work_dir)
    assert env["OCPS_RESULT_FILE"] == str(work_dir / "result.json")
    assert "OCPS_TEST_SECRET" not in env
    assert done.job_info["result"]["cwd"] == str(work_dir)


async def test_bad_input_leaves_journal_unchanged(
    manager: JobManager, tmp_path: pathlib.Path
) -> None:
    existing = await manager.submit("exit_code", {"code": 0}, job_id="keep-me")
    await finish(manager, existing.job_id)
    before = await manager.list_jobs(limit=1000)
    bad_requests: list[tuple[type[Exception], dict[str, Any]]] = [
        (UnknownJobTypeError, dict(type_name="nope", parameters={})),
        (ParameterError, dict(type_name="exit_code", parameters={"code": 999})),
        (ParameterError, dict(type_name="exit_code", parameters={"code": "1"})),
        (ParameterError, dict(type_name="exit_code", parameters={})),
        (ParameterError, dict(type_name="sleep", parameters={"bogus": 1})),
        (ParameterError, dict(type_name="true", parameters={}, job_id="../etc")),
        (ParameterError, dict(type_name="true", parameters={}, job_id="a..b")),
        (ParameterError, dict(type_name="true", parameters={}, job_id="UPPER")),
        (ParameterError, dict(type_name="true", parameters={}, prereq_jobs=["nope"])),
        (
            ParameterError,
            dict(type_name="true", parameters={}, wait_for=["rel/*.fits"]),
        ),
        (ParameterError, dict(type_name="true", parameters={}, wait_for=["/a/../b"])),
        (ParameterError, dict(type_name="true", parameters={}, wait_timeout=-1)),
        (
            ParameterError,
            dict(type_name="true", parameters={}, execution_duration=-5),
        ),
        (
            ParameterError,
            dict(type_name="true", parameters={}, job_id="x", prereq_jobs=["x"]),
        ),
        (JobStateError, dict(type_name="true", parameters={}, job_id="keep-me")),
    ]
    for error, kwargs in bad_requests:
        with pytest.raises(error):
            await manager.submit(**kwargs)
    assert await manager.list_jobs(limit=1000) == before
    assert await manager.journal.count() == 1
    assert sorted(path.name for path in (manager.state_dir / "jobs").iterdir()) == [
        "keep-me"
    ]


async def test_wait_for_change(manager: JobManager) -> None:
    job = await manager.submit("sleep", {"seconds": 300})
    executing = await wait_phase(manager, job.job_id, Phase.EXECUTING)
    # No change within the timeout: the job comes back unchanged.
    same = await manager.wait_for_change(job.job_id, None, 0.2)
    assert same.phase == Phase.EXECUTING
    waiter = asyncio.create_task(manager.wait_for_change(job.job_id, None, STD_TIMEOUT))
    await asyncio.sleep(0)
    assert not waiter.done()
    await manager.abort(job.job_id)
    changed = await asyncio.wait_for(waiter, STD_TIMEOUT)
    assert changed.phase == Phase.ABORTED
    # A terminal job does not make the caller wait.
    assert (await manager.wait_for_change(job.job_id, None, 100)).phase == Phase.ABORTED
    # Waiting out another phase than the current one returns at once.
    other = await manager.submit("sleep", {"seconds": 300})
    await wait_phase(manager, other.job_id, Phase.EXECUTING)
    async with asyncio.timeout(STD_TIMEOUT):
        same = await manager.wait_for_change(other.job_id, Phase.QUEUED, 3600)
    assert same.phase == Phase.EXECUTING
    assert executing.job_id == job.job_id
    await manager.abort(other.job_id)


async def test_delete(manager: JobManager) -> None:
    job = await manager.submit("sleep", {"seconds": 300})
    await wait_phase(manager, job.job_id, Phase.EXECUTING)
    with pytest.raises(JobStateError, match="abort it first"):
        await manager.delete(job.job_id)
    await manager.abort(job.job_id)
    assert manager.work_dir(job.job_id).is_dir()
    await manager.delete(job.job_id)
    assert not manager.work_dir(job.job_id).exists()
    with pytest.raises(JobNotFoundError):
        await manager.get_job(job.job_id)
    with pytest.raises(JobNotFoundError):
        await manager.delete(job.job_id)


async def test_retention_purge(
    tmp_path: pathlib.Path, make_started_manager: MakeManager
) -> None:
    config = ManagerConfig(state_dir=tmp_path / "state", retention=0.3)
    with log_events("purged") as purged:
        async with make_started_manager(config) as manager:
            long_job = await manager.submit("sleep", {"seconds": 300})
            await wait_phase(manager, long_job.job_id, Phase.EXECUTING)
            short_job = await manager.submit("exit_code", {"code": 0})
            await finish(manager, short_job.job_id)
            event = purged.setdefault(short_job.job_id, asyncio.Event())
            await asyncio.wait_for(event.wait(), STD_TIMEOUT)
            with pytest.raises(JobNotFoundError):
                await manager.get_job(short_job.job_id)
            assert not manager.work_dir(short_job.job_id).exists()
            # The active job was never purged.
            assert long_job.job_id not in purged
            assert (await manager.get_job(long_job.job_id)).phase == Phase.EXECUTING
            assert manager.work_dir(long_job.job_id).is_dir()
            await manager.abort(long_job.job_id)
            event = purged.setdefault(long_job.job_id, asyncio.Event())
            await asyncio.wait_for(event.wait(), STD_TIMEOUT)
            assert await manager.journal.count() == 0


async def test_reporting_flags(manager: JobManager) -> None:
    first = await manager.submit("exit_code", {"code": 0})
    second = await manager.submit("exit_code", {"code": 1})
    running = await manager.submit("sleep", {"seconds": 300})
    await finish(manager, first.job_id)
    await finish(manager, second.job_id)
    unreported = [job.job_id for job in await manager.unreported_jobs()]
    assert unreported == [first.job_id, second.job_id]
    await manager.mark_reported(first.job_id)
    assert [job.job_id for job in await manager.unreported_jobs()] == [second.job_id]
    with pytest.raises(JobNotFoundError):
        await manager.mark_reported("nope")
    await manager.abort(running.job_id)


async def test_list_jobs(manager: JobManager) -> None:
    ids = []
    for code in (0, 1, 0):
        job = await manager.submit("exit_code", {"code": code})
        await finish(manager, job.job_id)
        ids.append(job.job_id)
    listed = await manager.list_jobs()
    assert [job.job_id for job in listed] == ids[::-1]
    errors = await manager.list_jobs(phases=[Phase.ERROR])
    assert [job.job_id for job in errors] == [ids[1]]
    assert [job.job_id for job in await manager.list_jobs(last=2)] == ids[:0:-1]
    assert [job.job_id for job in await manager.list_jobs(limit=1, offset=1)] == [
        ids[1]
    ]
    after = (await manager.get_job(ids[0])).creation_time
    assert [job.job_id for job in await manager.list_jobs(after=after)] == ids[:0:-1]
    with pytest.raises(ParameterError):
        await manager.list_jobs(last=-1)


async def test_listener_errors_are_contained(manager: JobManager) -> None:
    calls: list[str] = []

    def broken(job: Job) -> None:
        calls.append("broken")
        raise RuntimeError("listener bug")

    def working(job: Job) -> None:
        calls.append(str(job.phase))

    manager.add_listener(broken)
    manager.add_listener(working)
    job = await manager.submit("exit_code", {"code": 0})
    assert (await finish(manager, job.job_id)).phase == Phase.COMPLETED
    assert calls == ["broken", "QUEUED", "broken", "EXECUTING", "broken", "COMPLETED"]
    manager.remove_listener(broken)
    manager.remove_listener(broken)


async def test_caller_job_id_and_paths(manager: JobManager) -> None:
    job = await manager.submit("exit_code", {"code": 0}, job_id="calib.bias-01")
    assert job.job_id == "calib.bias-01"
    await finish(manager, job.job_id)
    assert manager.log_path(job.job_id, "stderr").parent.parent == manager.work_dir(
        job.job_id
    )
    with pytest.raises(ParameterError):
        manager.work_dir("../../etc")
    with pytest.raises(ParameterError):
        manager.log_path(job.job_id, "stdin")
    assert dataclasses.asdict(await manager.get_job(job.job_id))["phase"] == "COMPLETED"
    assert os.path.isdir(manager.work_dir(job.job_id))


async def test_close_and_restart_readopts(
    tmp_path: pathlib.Path,
    manager_config: ManagerConfig,
    make_started_manager: MakeManager,
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    async with make_started_manager(manager_config) as manager:
        running = await manager.submit("gate", {"fifo": str(gate), "code": 9})
        held = await manager.submit(
            "exit_code", {"code": 0}, prereq_jobs=[running.job_id]
        )
        await wait_phase(manager, running.job_id, Phase.EXECUTING)
        await manager.close()
    # The job outlived the closed manager; a new one re-adopts it.
    assert processes_of(running.job_id)
    async with make_started_manager(manager_config) as manager:
        recorder = PhaseRecorder(manager)
        manager.add_listener(recorder)
        assert (await manager.get_job(running.job_id)).phase == Phase.EXECUTING
        assert (await manager.get_job(held.job_id)).phase == Phase.HELD
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(
            loop.run_in_executor(None, gate.write_text, "go"), STD_TIMEOUT
        )
        done = await finish(manager, running.job_id)
        assert (done.phase, done.exit_code) == (Phase.ERROR, 9)
        assert (await finish(manager, held.job_id)).phase == Phase.COMPLETED
        assert recorder.phases(running.job_id) == [Phase.ERROR]
        assert recorder.phases(held.job_id) == [
            Phase.QUEUED,
            Phase.EXECUTING,
            Phase.COMPLETED,
        ]


async def test_unknown_runner_and_dropped_type(
    tmp_path: pathlib.Path, job_types_dir: pathlib.Path, manager_config: ManagerConfig
) -> None:
    (job_types_dir / "remote.yaml").write_text(
        json.dumps(
            {
                "name": "remote",
                "description": "Needs a runner nobody configured.",
                "version": "1.0",
                "command": ["true"],
                "parameters": {"type": "object", "properties": {}},
                "runner": "slurm",
            }
        )
    )
    async with make_manager(manager_config, job_types_dir) as manager:
        with pytest.raises(ParameterError, match="runner 'slurm'"):
            await manager.submit("remote", {})
        job = await manager.submit("sleep", {"seconds": 300})
        await wait_phase(manager, job.job_id, Phase.EXECUTING)
        queued = await manager.submit("true", {}, prereq_jobs=[job.job_id])
        await manager.close()
    # Restart without the "true" type: the held job can no longer run.
    (job_types_dir / "true.yaml").unlink()
    async with make_manager(manager_config, job_types_dir) as manager:
        await manager.abort(job.job_id)
        done = await finish(manager, queued.job_id)
        assert done.phase == Phase.ERROR
        assert done.error_summary is not None
        assert done.error_summary.message == "job type 'true' is no longer loaded"


async def test_pending_job_in_journal_is_queued_at_start(
    manager_config: ManagerConfig, make_started_manager: MakeManager
) -> None:
    journal = Journal(manager_config.state_dir / "ocps.sqlite3")
    await journal.open()
    pending = Job(
        job_id="was-pending", type="exit_code", version="1.0", parameters={"code": 0}
    )
    assert pending.phase == Phase.PENDING
    await journal.insert(pending)
    await journal.close()
    async with make_started_manager(manager_config) as manager:
        done = await finish(manager, pending.job_id)
        assert done.phase == Phase.COMPLETED


async def test_output_globs_stay_inside_the_work_dir(
    tmp_path: pathlib.Path, job_types_dir: pathlib.Path, manager_config: ManagerConfig
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not a result")
    code = (
        "import os; open('in.txt', 'w').write('x'); "
        f"os.symlink({str(outside)!r}, 'link.txt')"
    )
    (job_types_dir / "escape.yaml").write_text(
        json.dumps(
            {
                "name": "escape",
                "description": "Leaves a symlink to a file outside its work dir.",
                "version": "1.0",
                "command": [sys.executable, "-c", code],
                "parameters": {"type": "object", "properties": {}},
                "output_globs": ["*.txt", ".ocps/*", "*/*.log"],
            }
        )
    )
    async with make_manager(manager_config, job_types_dir) as manager:
        job = await manager.submit("escape", {})
        done = await finish(manager, job.job_id)
    assert done.phase == Phase.COMPLETED
    assert [result.id for result in done.results] == ["in.txt"]


def result_schema() -> dict[str, Any]:
    """The OpenAPI ``Result`` schema, resolvable on its own."""
    schemas = yaml.safe_load(OPENAPI_PATH.read_text())["components"]["schemas"]
    return schemas["Result"]


async def run_declare(
    manager: JobManager, tmp_path: pathlib.Path, content: Any, code: int = 0
) -> Job:
    """Run a job whose result file is ``content`` as JSON."""
    source = tmp_path / f"declared-{code}.json"
    source.write_text(json.dumps(content))
    job = await manager.submit("declare", {"source": str(source), "code": code})
    return await finish(manager, job.job_id)


async def test_result_file_results_and_error(
    tmp_path: pathlib.Path,
    job_types_dir: pathlib.Path,
    manager_config: ManagerConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    add_job_types(job_types_dir)
    dataset = {
        "id": "0a1b2c",
        "uri": "file:///repo/u/ocps/x/run/bias_1.fits",
        "size": 2880,
        "datasetType": "bias",
        "dataId": {"instrument": "LATISS", "detector": 1},
        "run": "u/ocps/x/run",
    }
    minimal = {"id": "s3-object", "uri": "s3://bucket/key", "mimeType": None}
    invalid = [
        "not an object",
        {"uri": "file:///no/id"},
        {"id": "no-uri"},
        {"id": "null-uri", "uri": None},
        {"id": "bad-size", "uri": "file:///x", "size": -1},
        {"id": "bool-size", "uri": "file:///x", "size": True},
        {"id": "bad-mime", "uri": "file:///x", "mimeType": 3},
        {"id": "0a1b2c", "uri": "file:///same/id/again"},
    ]
    content = {
        "results": [dataset, *invalid, minimal],
        "error": {"message": "bias level out of range"},
        "other": [1, 2],
    }
    with caplog.at_level(logging.WARNING, logger="ocps"):
        async with make_manager(manager_config, job_types_dir) as manager:
            done = await run_declare(manager, tmp_path, content, code=3)
            stored = await manager.journal.get(done.job_id)
            fetched = await manager.get_job(done.job_id)

    assert done.phase == Phase.ERROR and done.exit_code == 3
    assert done.error_summary is not None
    assert done.error_summary.message == "bias level out of range (exit code 3)"
    # Valid entries became results, with their extra keys as details.
    assert done.results == [
        JobResult(
            id="0a1b2c",
            uri="file:///repo/u/ocps/x/run/bias_1.fits",
            size=2880,
            details={
                "datasetType": "bias",
                "dataId": {"instrument": "LATISS", "detector": 1},
                "run": "u/ocps/x/run",
            },
        ),
        JobResult(id="s3-object", uri="s3://bucket/key"),
    ]
    assert done.results[0].to_dict() == {"mimeType": None, **dataset}
    assert list(done.results[0].to_dict())[:4] == ["id", "uri", "size", "mimeType"]
    # The rest of the result file is kept, with the entries not taken.
    assert done.job_info["result"] == {
        "results": invalid,
        "error": {"message": "bias level out of range"},
        "other": [1, 2],
    }
    assert stored == done == fetched
    for result in done.results:
        jsonschema.Draft202012Validator(result_schema()).validate(result.to_dict())

    lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    prefix = f"job_id={done.job_id} ignored result entry"
    assert [line.split(":")[0] for line in lines] == [
        f"{prefix} {index}" for index in range(1, len(invalid) + 1)
    ]
    assert "is a string, not an object" in lines[0]
    assert "'size' must be an integer >= 0 or null" in lines[4]
    assert "has id '0a1b2c', which another result has" in lines[7]


async def test_result_file_limits_and_bad_shapes(
    tmp_path: pathlib.Path,
    job_types_dir: pathlib.Path,
    manager_config: ManagerConfig,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_job_types(job_types_dir)
    monkeypatch.setattr(job_manager_module, "MAX_DECLARED_RESULTS", 20)
    # 12 bad entries, 8 good ones, then 2 beyond the limit.
    bad = list(range(12))
    good = [{"id": f"r{i}", "uri": f"file:///r/{i}"} for i in range(10)]
    with caplog.at_level(logging.WARNING, logger="ocps"):
        async with make_manager(manager_config, job_types_dir) as manager:
            capped = await run_declare(manager, tmp_path, {"results": bad + good})
            not_list = await run_declare(
                manager, tmp_path, {"results": {"id": "a"}, "error": "text"}, code=4
            )
            succeeded = await run_declare(
                manager, tmp_path, {"error": {"message": "only a warning"}}
            )

    assert capped.phase == Phase.COMPLETED
    assert [result.id for result in capped.results] == [f"r{i}" for i in range(8)]
    assert capped.job_info["result"] == {"results": bad + good[8:]}
    lines = [r.getMessage() for r in caplog.records if capped.job_id in r.getMessage()]
    prefix = f"job_id={capped.job_id} ignored result entr"
    assert len(lines) == 11 and all(line.startswith(prefix) for line in lines)
    assert lines[-1].endswith("ignored result entries: 3 more not logged")

    # A "results" that is no list, and an "error" without a message, are
    # left alone; the summary is the process's.
    assert not_list.results == []
    assert not_list.job_info["result"] == {"results": {"id": "a"}, "error": "text"}
    assert not_list.error_summary is not None
    assert not_list.error_summary.message == "process exited with code 4"
    messages = [r.getMessage() for r in caplog.records]
    assert (
        f"job_id={not_list.job_id} ignored result entries: "
        "'results' is an object, not an array" in messages
    )
    assert (
        f"job_id={not_list.job_id} ignored result error: "
        "must be an object with a non-empty string 'message'" in messages
    )

    # An error message of a job that exits 0 changes nothing.
    assert succeeded.phase == Phase.COMPLETED
    assert succeeded.error_summary is None
    assert succeeded.job_info["result"] == {"error": {"message": "only a warning"}}


def test_result_details_never_replace_standard_keys() -> None:
    result = JobResult(
        id="a", uri="file:///a", details={"id": "b", "size": 5, "band": "g"}
    )
    assert result.to_dict() == {
        "id": "a",
        "uri": "file:///a",
        "size": None,
        "mimeType": None,
        "band": "g",
    }
    assert JobResult.from_dict(result.to_dict()) == JobResult(
        id="a", uri="file:///a", details={"band": "g"}
    )


@pytest.mark.parametrize(
    "path_prefix, type_name",
    [("/usr/bin:/bin", "interpreter"), (None, "interpreter"), (None, "own_path")],
)
async def test_jobs_find_the_ocps_python_first(
    job_types_dir: pathlib.Path,
    manager_config: ManagerConfig,
    monkeypatch: pytest.MonkeyPatch,
    path_prefix: str | None,
    type_name: str,
) -> None:
    """A job running ``python3`` gets the interpreter that runs OCPS.

    Checked with a server ``PATH`` without that interpreter's directory,
    with one that has it first already (left as it is), and with a job
    type that sets its own ``PATH``.
    """
    add_job_types(job_types_dir)
    python_dir = os.path.dirname(sys.executable)
    server_path = (
        path_prefix if path_prefix is not None else f"{python_dir}:/usr/bin:/bin"
    )
    monkeypatch.setenv("PATH", server_path)
    async with make_manager(manager_config, job_types_dir) as manager:
        job = await manager.submit(type_name, {})
        done = await finish(manager, job.job_id)
    assert done.phase == Phase.COMPLETED, done.error_summary
    found = done.job_info["result"]
    path = found["path"]
    if type_name == "own_path":
        assert path == "/usr/bin:/bin"
        return
    assert path == f"{python_dir}:/usr/bin:/bin"
    assert os.path.dirname(found["executable"]) == python_dir
    assert found["prefix"] == sys.prefix


@pytest.mark.parametrize(
    "error, error_type, message",
    [
        (
            lambda: SlurmUnavailableError("sbatch: cannot reach the controller"),
            ErrorType.TRANSIENT,
            "sbatch: cannot reach the controller",
        ),
        (
            lambda: type("Unreachable", (RuntimeError,), {"transient": True})("down"),
            ErrorType.TRANSIENT,
            "down",
        ),
        (lambda: OSError("submission refused"), ErrorType.FATAL, "submission refused"),
    ],
)
async def test_launch_errors(
    job_types_dir: pathlib.Path,
    manager_config: ManagerConfig,
    error: Callable[[], Exception],
    error_type: ErrorType,
    message: str,
) -> None:
    add_job_types(job_types_dir)
    runner = UnreachableRunner(error)
    async with make_manager(
        manager_config, job_types_dir, runners={runner.name: runner}
    ) as manager:
        recorder = PhaseRecorder(manager)
        manager.add_listener(recorder)
        job = await manager.submit("unreachable", {})
        done = await finish(manager, job.job_id)
    assert done.phase == Phase.ERROR
    assert done.error_summary is not None
    assert done.error_summary.type == error_type
    assert done.error_summary.message == f"could not start the job: {message}"
    assert done.start_time is None and done.runner_state == {}
    assert recorder.phases(job.job_id) == [Phase.QUEUED, Phase.ERROR]


async def test_killed_by_a_signal_outside_the_enum(
    job_types_dir: pathlib.Path, manager_config: ManagerConfig
) -> None:
    # 53 is a valid (real-time) signal but no member of signal.Signals.
    assert 53 in signal.valid_signals()
    with pytest.raises(ValueError):
        signal.Signals(53)
    add_job_types(job_types_dir)
    async with make_manager(manager_config, job_types_dir) as manager:
        job = await manager.submit("self_signal", {})
        done = await finish(manager, job.job_id)
    assert (done.phase, done.exit_code) == (Phase.ERROR, -53)
    assert done.error_summary is not None
    rt_offset = 53 - signal.SIGRTMIN
    assert done.error_summary.message == (
        f"process killed by signal 53 (SIGRTMIN+{rt_offset})"
    )


@pytest.mark.parametrize(
    "number, name",
    [(15, "SIGTERM"), (signal.SIGRTMIN, "SIGRTMIN"), (signal.SIGRTMAX, "SIGRTMAX")],
)
def test_signal_names(number: int, name: str) -> None:
    outcome = RunOutcome(RunStatus.EXITED, -number)
    phase, error = outcome_phase(outcome)
    assert phase == Phase.ERROR and error is not None
    assert error.message == f"process killed by signal {number} ({name})"


@pytest.mark.parametrize(
    "ending, phases, exit_code, message",
    [
        pytest.param(
            "abort",
            [Phase.QUEUED, Phase.ABORTED],
            None,
            "job aborted before it ran",
            id="aborted-while-queued",
        ),
        pytest.param(
            RunOutcome(RunStatus.EXITED, None, "launch failed"),
            [Phase.QUEUED, Phase.ERROR],
            None,
            "process ended without an exit code (launch failed)",
            id="failed-while-queued",
        ),
        pytest.param(
            RunOutcome(RunStatus.EXITED, 0),
            [Phase.QUEUED, Phase.EXECUTING, Phase.COMPLETED],
            0,
            None,
            id="ran-between-polls",
        ),
        pytest.param(
            "run",
            [Phase.QUEUED, Phase.EXECUTING, Phase.ABORTED],
            -signal.SIGTERM,
            "job aborted while executing",
            id="aborted-while-running",
        ),
    ],
)
async def test_batch_job_ending_in_the_queue(
    job_types_dir: pathlib.Path,
    manager_config: ManagerConfig,
    ending: str | RunOutcome,
    phases: list[ExecutionPhase],
    exit_code: int | None,
    message: str | None,
) -> None:
    """A batch job that ends before it runs never shows EXECUTING.

    One that ends with an exit code before it was seen running did run.
    """
    add_job_types(job_types_dir)
    runner = QueuedBatchRunner()
    async with make_manager(
        manager_config, job_types_dir, runners={runner.name: runner}
    ) as manager:
        recorder = PhaseRecorder(manager)
        manager.add_listener(recorder)
        job = await manager.submit("queued_batch", {})
        assert await asyncio.wait_for(runner.launched.get(), STD_TIMEOUT) == job.job_id
        if ending == "run":
            runner.run(job.job_id)
            await wait_phase(manager, job.job_id, Phase.EXECUTING)
            done = await manager.abort(job.job_id)
        elif ending == "abort":
            done = await manager.abort(job.job_id)
        else:
            assert isinstance(ending, RunOutcome)
            runner.end(job.job_id, ending)
            done = await finish(manager, job.job_id)
    assert recorder.phases(job.job_id) == phases
    assert done.exit_code == exit_code
    assert (done.start_time is not None) == (Phase.EXECUTING in phases)
    if message is None:
        assert done.error_summary is None
    else:
        assert done.error_summary is not None
        assert done.error_summary.message == message
