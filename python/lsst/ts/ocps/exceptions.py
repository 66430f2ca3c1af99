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

"""The exception family of ts_ocps, each with the HTTP status it maps to."""

__all__ = [
    "JobNotFoundError",
    "JobStateError",
    "JobTypeError",
    "JobTypeProblem",
    "OcpsError",
    "ParameterError",
    "UnknownJobTypeError",
]

import dataclasses


class OcpsError(Exception):
    """Base class of the errors ts_ocps raises on purpose.

    The REST API turns one into a JSON ``{"message": str(error)}`` response
    with `status_code`; the CSC turns one into ``CMD_FAILED``.
    """

    status_code = 500


class ParameterError(OcpsError, ValueError):
    """Raised if a request or its job parameters are invalid."""

    status_code = 400


class UnknownJobTypeError(ParameterError):
    """Raised if a request names a job type that is not loaded."""


class JobNotFoundError(OcpsError, LookupError):
    """Raised if no job has the given id."""

    status_code = 404


class JobStateError(OcpsError, RuntimeError):
    """Raised if a job's phase does not allow the requested action."""

    status_code = 409


@dataclasses.dataclass(frozen=True)
class JobTypeProblem:
    """One problem found in a job-type file.

    Parameters
    ----------
    path : `str`
        The file, as given to the loader.
    field : `str`
        JSON path of the offending field, e.g. ``$.parameters.type``.
    reason : `str`
        What is wrong.
    """

    path: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.reason}"


class JobTypeError(OcpsError, ValueError):
    """Raised if one or more job-type files are invalid.

    Parameters
    ----------
    problems : `list` [`JobTypeProblem`]
        Every problem found, in file order.
    """

    def __init__(self, problems: list[JobTypeProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{len(self.problems)} invalid job-type field(s):\n{lines}")
