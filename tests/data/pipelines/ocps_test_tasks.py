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

"""A small PipelineTask for the pipetask tests: scales, fails or sleeps."""

__all__ = ["ScaleConfig", "ScaleConnections", "ScaleFailure", "ScaleTask"]

import logging
import time
from typing import Any

import lsst.pex.config as pex_config
import lsst.pipe.base.connectionTypes as cT
import numpy as np
from lsst.pipe.base import (
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    Struct,
)

_log = logging.getLogger(__name__)


class ScaleConnections(PipelineTaskConnections, dimensions=("instrument", "detector")):
    """Reads ``add_dataset2`` and writes ``scaled_dataset``."""

    input = cT.Input(
        name="add_dataset2",
        dimensions=["instrument", "detector"],
        storageClass="NumpyArray",
        doc="Output of the second AddTask step",
    )
    output = cT.Output(
        name="scaled_dataset",
        dimensions=["instrument", "detector"],
        storageClass="NumpyArray",
        doc="The input multiplied by the configured factor",
    )


class ScaleConfig(PipelineTaskConfig, pipelineConnections=ScaleConnections):
    """Configuration of `ScaleTask`."""

    factor = pex_config.Field[int](doc="Multiplier applied to the input", default=2)
    fail_detectors = pex_config.ListField[int](
        doc="Detectors whose quanta raise ScaleFailure", default=[]
    )
    sleep = pex_config.Field[float](
        doc="Seconds each quantum sleeps before working (for abort tests)",
        default=0.0,
    )


class ScaleFailure(RuntimeError):
    """Raised by `ScaleTask` for a detector listed in ``fail_detectors``."""


class ScaleTask(PipelineTask):
    """Multiply an array by a factor; fail or sleep on request."""

    ConfigClass = ScaleConfig
    _DefaultName = "scale"

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        self._detector = int(inputRefs.input.dataId["detector"])
        super().runQuantum(butlerQC, inputRefs, outputRefs)

    def run(self, input: np.ndarray) -> Struct:
        config: ScaleConfig = self.config  # type: ignore[assignment]
        if config.sleep > 0:
            time.sleep(config.sleep)
        if self._detector in config.fail_detectors:
            raise ScaleFailure(f"detector={self._detector} is listed in fail_detectors")
        output = input * config.factor
        _log.info("detector=%d input=%s output=%s", self._detector, input, output)
        return Struct(output=output)
