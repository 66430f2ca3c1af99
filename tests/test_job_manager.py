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
import sys
from collections.abc import Iterator

import pytest
from lsst.ts.ocps.exceptions import (
    JobNotFoundError,
    JobStateError,
    ParameterError,
    UnknownJobTypeError,
)
from lsst.ts.ocps.job_manager import JobManager, ManagerConfig
from lsst.ts.ocps.journal import Journal
from lsst.ts.ocps.models import ExecutionPhase, Job
from support.jobs import STD_TIMEOUT, make_manager, max_overlap, read_spans

Phase = ExecutionPhase


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
    tmp_path: pathlib.Path, make_started_manager
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


async def test_global_limit(tmp_path: pathlib.Path, make_started_manager) -> None:
    config = ManagerConfig(state_dir=tmp_path / "state", max_concurrent=2)
    spans = tmp_path / "spans.txt"
    async with make_started_manager(config) as manager:
        jobs = [
            await manager.submit(
                "span", {"path": str(spans), "seconds": 0.3, "label": f"j{i}"}
            )
            for i in range(5)
        ]
        ended = [await finish(manager, job.job_id) for job in jobs]
    assert all(job.phase == Phase.COMPLETED for job in ended)
    recorded = read_spans(spans)
    assert len(recorded) == 5
    assert max_overlap(list(recorded.values())) == 2
    # FIFO: the manager starts jobs in submission order.
    by_start = sorted(ended, key=lambda job: job.start_time)
    assert [job.job_id for job in by_start] == [job.job_id for job in jobs]


async def test_type_limit_does_not_block_others(
    tmp_path: pathlib.Path, make_started_manager
) -> None:
    config = ManagerConfig(state_dir=tmp_path / "state", max_concurrent=3)
    spans = tmp_path / "spans.txt"
    async with make_started_manager(config) as manager:
        limited = [
            await manager.submit(
                "limited", {"path": str(spans), "seconds": 0.5, "label": f"limited{i}"}
            )
            for i in range(3)
        ]
        others = [
            await manager.submit("span", {"path": str(spans), "label": f"other{i}"})
            for i in range(2)
        ]
        ended = {
            job.job_id: await finish(manager, job.job_id) for job in limited + others
        }
    assert all(job.phase == Phase.COMPLETED for job in ended.values())
    recorded = read_spans(spans)
    limited_spans = [recorded[f"limited{i}"] for i in range(3)]
    assert max_overlap(limited_spans) == 1
    # Jobs of another type queued behind the blocked ones started at once,
    # not after them.
    blocked = ended[limited[1].job_id]
    for job in others:
        assert ended[job.job_id].start_time < blocked.start_time


async def test_log_limit(tmp_path: pathlib.Path, make_started_manager) -> None:
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
    bad_requests = [
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


async def test_retention_purge(tmp_path: pathlib.Path, make_started_manager) -> None:
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
    tmp_path: pathlib.Path, manager_config: ManagerConfig, make_started_manager
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
    manager_config: ManagerConfig, make_started_manager
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
