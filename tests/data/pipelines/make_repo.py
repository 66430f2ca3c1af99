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

"""Fill a new Butler repo with the test instrument and input arrays.

Run inside the pipelines environment, after ``butler create REPO``::

    python make_repo.py REPO --detectors 4

There is no butler command that inserts dimension records for a test
instrument, so this script does it: instrument ``INSTRU``, detectors
0..N-1, dataset type ``add_dataset0`` and, in RUN collection ``inputs``,
one array ``[0, 1, 2, 3] + 10 * detector`` per detector.
"""

import argparse

import numpy as np
from lsst.daf.butler import Butler, DatasetType

INSTRUMENT = "INSTRU"
INSTRUMENT_CLASS = "lsst.pipe.base.tests.simpleQGraph.SimpleInstrument"
INPUT_RUN = "inputs"
INPUT_TYPE = "add_dataset0"


def input_array(detector: int) -> np.ndarray:
    """Return the input array stored for one detector."""
    return np.arange(4) + 10 * detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="path of a repo made by `butler create`")
    parser.add_argument("--detectors", type=int, default=4, help="how many")
    args = parser.parse_args()

    butler = Butler.from_config(args.repo, writeable=True, run=INPUT_RUN)
    registry = butler.registry
    registry.syncDimensionData(
        "instrument",
        {"name": INSTRUMENT, "class_name": INSTRUMENT_CLASS, "detector_max": 1000},
    )
    for detector in range(args.detectors):
        registry.syncDimensionData(
            "detector",
            {"instrument": INSTRUMENT, "id": detector, "full_name": f"det{detector}"},
        )

    dataset_type = DatasetType(
        INPUT_TYPE,
        dimensions=["instrument", "detector"],
        storageClass="NumpyArray",
        universe=butler.dimensions,
    )
    registry.registerDatasetType(dataset_type)
    for detector in range(args.detectors):
        butler.put(
            input_array(detector),
            INPUT_TYPE,
            instrument=INSTRUMENT,
            detector=detector,
        )


if __name__ == "__main__":
    main()
