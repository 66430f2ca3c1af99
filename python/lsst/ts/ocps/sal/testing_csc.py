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

"""A minimal OCPS CSC for testing the SAL framework, runnable as a script.

Run it with ``python -m lsst.ts.ocps.sal.testing_csc <index> [options]``.
It implements the OCPS commands trivially: ``execute`` acks in progress
with a JSON job id, waits a little, writes ``job_result`` and finishes;
``abort_job`` cancels such a wait. It is not the OCPS CSC.
"""

from __future__ import annotations

__all__ = ["CONFIG_SCHEMA", "MinimalOcpsCsc", "run_minimal_ocps_csc"]

import asyncio
import json
import pathlib
import types
from typing import Any

import yaml

from .configurable_csc import ConfigurableCsc
from .enums import State
from .errors import ExpectedError
from .topics import Sample

CONFIG_SCHEMA: dict[str, Any] = yaml.safe_load("""
$schema: http://json-schema.org/draft-07/schema#
title: MinimalOcps v1
type: object
additionalProperties: false
required: [job_duration, label]
properties:
  job_duration:
    description: Seconds a simulated job runs.
    type: number
    minimum: 0
  label:
    description: Free text, to see which files were read.
    type: string
""")
"""Configuration schema of `MinimalOcpsCsc`."""


class MinimalOcpsCsc(ConfigurableCsc):
    """The OCPS interface with trivial command handlers.

    ``execute`` runs concurrently (several at once); the job id is
    ``<pipeline>-<private_seqNum>``. Pipeline ``fault.yaml`` sends the
    CSC to FAULT (code 2) and fails the command; ``fail.yaml`` fails with
    an unexpected error (a traceback is logged); ``timeout.yaml`` raises
    `TimeoutError`. The ``config`` field, if a number, overrides the
    configured job duration (seconds).

    Parameters
    ----------
    index : `int`
        SAL index.
    config_dir : `str`, `pathlib.Path` or `None`, optional
        Configuration directory.
    **kwargs : `~typing.Any`
        Passed to `ConfigurableCsc`.
    """

    valid_simulation_modes = (0, 1)
    version = "test"
    enable_cmdline_state = True

    def __init__(
        self,
        index: int,
        config_dir: str | pathlib.Path | None = None,
        **kwargs: Any,
    ) -> None:
        self.config: types.SimpleNamespace | None = None
        self.jobs: dict[str, asyncio.Future[None]] = {}
        super().__init__(
            "OCPS",
            index=index,
            config_schema=CONFIG_SCHEMA,
            config_dir=config_dir,
            **kwargs,
        )
        self.cmd_execute.allow_multiple_callbacks = True

    @staticmethod
    def get_config_pkg() -> str:
        return "ts_ocps_test_config"

    async def configure(self, config: types.SimpleNamespace) -> None:
        if config.label == "refuse":
            raise ExpectedError("label 'refuse' is refused by configure")
        self.config = config

    async def do_execute(self, data: Sample) -> None:
        """Run a pretend job."""
        self.assert_enabled("execute")
        assert self.config is not None
        if data.pipeline == "fault.yaml":
            await self.fault(code=2, report="Simulated fault")
            raise ExpectedError("Simulated fault")
        if data.pipeline == "fail.yaml":
            raise RuntimeError("Simulated unexpected failure")
        if data.pipeline == "timeout.yaml":
            raise TimeoutError()
        try:
            duration = float(data.config) if data.config else self.config.job_duration
        except ValueError:
            raise ExpectedError(f"config={data.config!r} is not a number") from None
        job_id = f"{data.pipeline}-{data.private_seqNum}"
        await self.cmd_execute.ack_in_progress(
            data, timeout=duration + 10, result=json.dumps(dict(job_id=job_id))
        )
        await self.evt_job_id.set_write(
            event_name="cmd_execute", seq_num=data.private_seqNum, job_id=job_id
        )
        done = asyncio.get_running_loop().create_future()
        self.jobs[job_id] = done
        try:
            await asyncio.wait_for(asyncio.shield(done), duration)
        except TimeoutError:
            exit_code, result = 0, {"jobId": job_id, "phase": "completed"}
        else:
            exit_code, result = 255, {"jobId": job_id, "phase": "aborted"}
        finally:
            self.jobs.pop(job_id, None)
        await self.evt_job_result.set_write(
            job_id=job_id, exit_code=exit_code, result=json.dumps(result)
        )

    async def do_abort_job(self, data: Sample) -> None:
        """Abort a pretend job."""
        self.assert_enabled("abort_job")
        done = self.jobs.get(data.job_id)
        if done is None:
            raise ExpectedError(f"Unknown job_id={data.job_id!r}")
        if not done.done():
            done.set_result(None)

    async def handle_summary_state(self) -> None:
        await super().handle_summary_state()
        if self.summary_state != State.ENABLED:
            for done in self.jobs.values():
                if not done.done():
                    done.set_result(None)


def run_minimal_ocps_csc() -> None:
    """Run `MinimalOcpsCsc` from the command line."""
    asyncio.run(MinimalOcpsCsc.amain(index=True))


if __name__ == "__main__":
    run_minimal_ocps_csc()
