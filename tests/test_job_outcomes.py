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

"""Tests of `lsst.ts.ocps.jobs.outcomes`: run ends to terminal phases."""

import signal

import pytest
from lsst.ts.ocps.jobs import job_manager
from lsst.ts.ocps.jobs.outcomes import LOST_MESSAGE, outcome_phase, signal_name
from lsst.ts.ocps.models import ExecutionPhase
from lsst.ts.ocps.runners.base import RunOutcome, RunStatus


def test_names_still_importable_from_job_manager() -> None:
    assert job_manager.LOST_MESSAGE is LOST_MESSAGE


@pytest.mark.parametrize(
    "outcome, job_message, phase, message",
    [
        (RunOutcome(RunStatus.EXITED, 0), "ignored", ExecutionPhase.COMPLETED, None),
        (
            RunOutcome(RunStatus.EXITED, 3),
            None,
            ExecutionPhase.ERROR,
            "process exited with code 3",
        ),
        (
            RunOutcome(RunStatus.EXITED, 3, "node lost"),
            "no input",
            ExecutionPhase.ERROR,
            "no input (exit code 3) (node lost)",
        ),
        (
            RunOutcome(RunStatus.EXITED, -9),
            "no input",
            ExecutionPhase.ERROR,
            "process killed by signal 9 (SIGKILL)",
        ),
        (
            RunOutcome(RunStatus.EXITED, None),
            None,
            ExecutionPhase.ERROR,
            "process ended without an exit code",
        ),
        (
            RunOutcome(RunStatus.TIMEOUT, -15),
            None,
            ExecutionPhase.ERROR,
            "time limit exceeded",
        ),
        (
            RunOutcome(RunStatus.CANCELLED, -15),
            None,
            ExecutionPhase.ABORTED,
            "job aborted while executing",
        ),
        (RunOutcome(RunStatus.LOST), None, ExecutionPhase.ERROR, LOST_MESSAGE),
        (
            RunOutcome(RunStatus.LOST, None, "slurm forgot it"),
            None,
            ExecutionPhase.ERROR,
            "slurm forgot it",
        ),
    ],
)
def test_outcome_phase(
    outcome: RunOutcome,
    job_message: str | None,
    phase: ExecutionPhase,
    message: str | None,
) -> None:
    got_phase, error = outcome_phase(outcome, job_message)
    assert got_phase is phase
    assert (None if error is None else error.message) == message


def test_signal_name() -> None:
    assert signal_name(signal.SIGINT) == "SIGINT"
    assert signal_name(signal.SIGRTMIN + 2) == "SIGRTMIN+2"
    assert signal_name(0) == "?"
