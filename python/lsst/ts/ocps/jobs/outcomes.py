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

"""How a run ended, mapped to the job's terminal phase and error summary."""

from __future__ import annotations

__all__ = ["LOST_MESSAGE", "outcome_phase", "signal_name"]

import signal

from ..models import ErrorSummary, ExecutionPhase
from ..runners.base import RunOutcome, RunStatus

LOST_MESSAGE = "job process lost during a restart of OCPS"
"""Error message of a job whose process cannot be found after a restart."""


def signal_name(number: int) -> str:
    """Return the name of a signal, e.g. SIGTERM or SIGRTMIN+19; "?" if
    it has none."""
    try:
        return signal.Signals(number).name
    except ValueError:
        pass
    # Real-time signals other than the first and last are no members of
    # signal.Signals.
    if signal.SIGRTMIN < number < signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    return "?"


def outcome_phase(
    outcome: RunOutcome, job_message: str | None = None
) -> tuple[ExecutionPhase, ErrorSummary | None]:
    """Map how a run ended to the job's terminal phase and error.

    Parameters
    ----------
    outcome : `RunOutcome`
        How the run ended.
    job_message : `str` or `None`
        Why the job says it failed (its result file's ``error``); used
        for an exit with a failure code.

    Returns
    -------
    phase : `ExecutionPhase`
        The terminal phase.
    error : `ErrorSummary` or `None`
        Why the job did not complete; None if it did.
    """
    detail = f" ({outcome.message})" if outcome.message else ""
    if outcome.status is RunStatus.EXITED:
        code = outcome.exit_code
        if code == 0:
            return ExecutionPhase.COMPLETED, None
        if code is None:
            message = f"process ended without an exit code{detail}"
        elif code < 0:
            name = signal_name(-code)
            message = f"process killed by signal {-code} ({name}){detail}"
        elif job_message:
            message = f"{job_message} (exit code {code}){detail}"
        else:
            message = f"process exited with code {code}{detail}"
        return ExecutionPhase.ERROR, ErrorSummary(message)
    if outcome.status is RunStatus.TIMEOUT:
        return ExecutionPhase.ERROR, ErrorSummary("time limit exceeded")
    if outcome.status is RunStatus.CANCELLED:
        return ExecutionPhase.ABORTED, ErrorSummary("job aborted while executing")
    return ExecutionPhase.ERROR, ErrorSummary(outcome.message or LOST_MESSAGE)
