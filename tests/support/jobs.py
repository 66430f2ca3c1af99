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

"""Test fixtures of the job manager: job types, a started manager, helpers."""

__all__ = [
    "STD_TIMEOUT",
    "job_types_dir",
    "make_manager",
    "make_started_manager",
    "manager",
    "manager_config",
    "max_overlap",
    "read_spans",
    "write_job_types",
]

import contextlib
import json
import logging
import pathlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from lsst.ts.ocps.jobs.job_manager import JobManager, ManagerConfig
from lsst.ts.ocps.jobs.job_types import JobTypeRegistry
from lsst.ts.ocps.models import ACTIVE_PHASES

STD_TIMEOUT = 30
"""Seconds a test waits for something that should happen much sooner."""

# Job types for the manager's tests. Each runs the test's own Python with
# fixed code; parameters arrive as argv data.
_SPAN_CODE = """
import os, sys, time
path, seconds, label = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def note(what):
    with open(path, "a") as stream:
        stream.write(f"{label} {what} {time.monotonic_ns()}\\n")
note("start")
time.sleep(seconds)
note("end")
"""

_OUTPUT_CODE = """
import json, os, sys
os.makedirs("out", exist_ok=True)
for name in ("a.txt", "b.fits", "out/c.json"):
    with open(name, "w") as stream:
        stream.write(name)
with open(os.environ["OCPS_RESULT_FILE"], "w") as stream:
    json.dump({"answer": int(sys.argv[1]), "cwd": os.getcwd()}, stream)
"""

_NOISE_CODE = """
import sys
sys.stdout.write("x" * int(sys.argv[1]))
sys.stderr.write("e" * int(sys.argv[1]))
"""

_STUBBORN_CODE = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(float(sys.argv[1]))
"""

_GATE_CODE = """
import sys
with open(sys.argv[1]) as gate:
    gate.read()
sys.exit(int(sys.argv[2]))
"""

_ENV_CODE = """
import json, os
with open(os.environ["OCPS_RESULT_FILE"], "w") as stream:
    json.dump({"env": dict(os.environ), "cwd": os.getcwd()}, stream)
"""


def _python_type(
    name: str, code: str, args: list[str], properties: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"Test job type {name}.",
        "version": "1.0",
        "command": [sys.executable, "-c", code.replace("{", "{{").replace("}", "}}")]
        + args,
        "parameters": {"type": "object", "properties": properties},
        **extra,
    }


def write_job_types(directory: pathlib.Path) -> pathlib.Path:
    """Write the test job types into ``directory`` and return it."""
    seconds = {"type": "number", "minimum": 0, "maximum": 3600, "default": 0}
    types = [
        _python_type(
            "span",
            _SPAN_CODE,
            ["{path}", "{seconds}", "{label}"],
            {
                "path": {"type": "string"},
                "seconds": seconds,
                "label": {"type": "string", "default": "span"},
            },
        ),
        _python_type(
            "limited",
            _SPAN_CODE,
            ["{path}", "{seconds}", "{label}"],
            {
                "path": {"type": "string"},
                "seconds": seconds,
                "label": {"type": "string", "default": "limited"},
            },
            max_concurrent=1,
        ),
        {
            "name": "sleep",
            "description": "Sleep.",
            "version": "1.0",
            "command": ["sleep", "{seconds}"],
            "parameters": {
                "type": "object",
                "properties": {"seconds": seconds},
            },
        },
        {
            "name": "exit_code",
            "description": "Exit with a code.",
            "version": "1.0",
            "command": ["sh", "-c", "exit $0", "{code}"],
            "parameters": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer", "minimum": 0, "maximum": 255}
                },
                "required": ["code"],
            },
        },
        _python_type(
            "output",
            _OUTPUT_CODE,
            ["{answer}"],
            {"answer": {"type": "integer", "default": 42}},
            output_globs=["*.txt", "out/*.json", "missing*"],
        ),
        _python_type(
            "noise",
            _NOISE_CODE,
            ["{size}"],
            {"size": {"type": "integer", "minimum": 0}},
        ),
        _python_type(
            "stubborn",
            _STUBBORN_CODE,
            ["{seconds}"],
            {"seconds": seconds},
        ),
        _python_type(
            "gate",
            _GATE_CODE,
            ["{fifo}", "{code}"],
            {
                "fifo": {"type": "string"},
                "code": {"type": "integer", "minimum": 0, "maximum": 255},
            },
        ),
        _python_type(
            "env",
            _ENV_CODE,
            [],
            {"greeting": {"type": "string", "default": "hi"}},
            environment={"GREETING": "{greeting}"},
        ),
        {
            "name": "true",
            "description": "Do nothing, successfully.",
            "version": "1.0",
            "command": ["true"],
            "parameters": {"type": "object", "properties": {}},
        },
        {
            "name": "missing",
            "description": "A command that does not exist.",
            "version": "1.0",
            "command": ["/nonexistent/ocps-test-command"],
            "parameters": {"type": "object", "properties": {}},
        },
    ]
    directory.mkdir(parents=True, exist_ok=True)
    for job_type in types:
        # JSON is YAML; it keeps the code strings exact.
        (directory / f"{job_type['name']}.yaml").write_text(json.dumps(job_type))
    return directory


def read_spans(path: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Read a span file: label -> (start ns, end ns)."""
    starts: dict[str, int] = {}
    spans: dict[str, tuple[int, int]] = {}
    for line in path.read_text().splitlines():
        label, what, stamp = line.split()
        if what == "start":
            starts[label] = int(stamp)
        else:
            spans[label] = (starts[label], int(stamp))
    return spans


def max_overlap(spans: list[tuple[int, int]]) -> int:
    """Return the largest number of spans running at the same instant."""
    events = sorted(
        [(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans]
    )
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


@pytest.fixture
def job_types_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory with the manager tests' job types."""
    return write_job_types(tmp_path / "job_types")


@pytest.fixture
def manager_config(tmp_path: pathlib.Path) -> ManagerConfig:
    """A manager configuration with a state dir in ``tmp_path``."""
    return ManagerConfig(state_dir=tmp_path / "state", kill_grace=1.0)


@contextlib.asynccontextmanager
async def make_manager(
    config: ManagerConfig, job_types_dir: pathlib.Path, **kwargs: Any
) -> AsyncIterator[JobManager]:
    """Start a `JobManager`; on exit abort what is active and close it."""
    registry = JobTypeRegistry.from_directory(job_types_dir)
    manager = JobManager(config, registry, log=logging.getLogger("ocps.test"), **kwargs)
    await manager.start()
    try:
        yield manager
    finally:
        if manager._running:
            for job in await manager.list_jobs(phases=ACTIVE_PHASES, limit=10000):
                with contextlib.suppress(Exception):
                    await manager.abort(job.job_id)
            await manager.close()


@pytest.fixture
async def manager(
    manager_config: ManagerConfig, job_types_dir: pathlib.Path
) -> AsyncIterator[JobManager]:
    """A started `JobManager` on ``tmp_path``, closed after the test."""
    async with make_manager(manager_config, job_types_dir) as started:
        yield started


@pytest.fixture
def make_started_manager(
    job_types_dir: pathlib.Path,
) -> Callable[..., contextlib.AbstractAsyncContextManager[JobManager]]:
    """Factory: ``async with make_started_manager(config) as manager``."""

    def factory(config: ManagerConfig, **kwargs: Any) -> Any:
        return make_manager(config, job_types_dir, **kwargs)

    return factory
