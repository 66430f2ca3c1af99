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

"""Turns the fields of an OCPS ``execute`` command into job parameters."""

from __future__ import annotations

__all__ = ["ExecuteRequest", "build_parameters", "split_list"]

import dataclasses
import re
from typing import Any

from ..exceptions import ParameterError
from .settings import InstanceSettings

JOB_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""What a job id looks like (the job manager's rule)."""

REQUEST_FIELDS = ("pipeline", "version", "config", "data_query")
"""String fields of ``execute`` passed on as parameters of the same name."""


def split_list(text: str) -> tuple[str, ...]:
    """Split a comma-separated list; blanks around items are dropped.

    Parameters
    ----------
    text : `str`
        E.g. ``"a, b,c"``; ``""`` gives an empty tuple.

    Returns
    -------
    items : `tuple` [`str`, ...]
        The non-empty items, in order.
    """
    return tuple(item.strip() for item in text.split(",") if item.strip())


@dataclasses.dataclass(frozen=True)
class ExecuteRequest:
    """The fields of one ``execute`` command; ``""`` means "not set".

    Parameters
    ----------
    pipeline : `str`
        Pipeline YAML, possibly with ``${VAR}`` and a ``#subset``.
    version : `str`
        Software version (callers usually send ``""``).
    config : `str`
        Extra pipetask options.
    data_query : `str`
        Butler data query.
    prereq_jobs : `tuple` [`str`, ...]
        Ids of jobs that must end before this one runs.
    output_dataset_types : `tuple` [`str`, ...]
        Dataset-type globs whose datasets become results.
    """

    pipeline: str = ""
    version: str = ""
    config: str = ""
    data_query: str = ""
    prereq_jobs: tuple[str, ...] = ()
    output_dataset_types: tuple[str, ...] = ()

    @classmethod
    def from_command(cls, data: Any) -> ExecuteRequest:
        """Read and check the fields of an ``execute`` command sample.

        Parameters
        ----------
        data : `typing.Any`
            The command sample (attributes ``pipeline``, ``version``,
            ``config``, ``data_query``, ``prereq_jobs`` and
            ``output_dataset_types``).

        Returns
        -------
        request : `ExecuteRequest`
            The request; text fields are stripped of surrounding blanks.

        Raises
        ------
        ParameterError
            Raised if a prerequisite is not a valid job id.
        """
        prereq_jobs = split_list(data.prereq_jobs)
        bad = [job_id for job_id in prereq_jobs if not _is_job_id(job_id)]
        if bad:
            raise ParameterError(
                f"prereq_jobs: {', '.join(repr(job_id) for job_id in bad)} "
                "is not a job id"
            )
        return cls(
            pipeline=data.pipeline.strip(),
            version=data.version.strip(),
            config=data.config.strip(),
            data_query=data.data_query.strip(),
            prereq_jobs=prereq_jobs,
            output_dataset_types=split_list(data.output_dataset_types),
        )


def build_parameters(
    request: ExecuteRequest,
    instance: InstanceSettings,
    declared: dict[str, Any],
    *,
    job_type: str,
    allows_extra: bool = False,
) -> dict[str, Any]:
    """Map an ``execute`` request to the parameters of a job type.

    Parameters
    ----------
    request : `ExecuteRequest`
        The command's fields.
    instance : `InstanceSettings`
        The CSC's instance settings (Butler, inputs, output glob).
    declared : `dict` [`str`, `typing.Any`]
        The ``properties`` of the job type's parameter schema.
    job_type : `str`
        Name of the job type, for messages.
    allows_extra : `bool`
        Does the job type accept parameters it does not declare?

    Returns
    -------
    parameters : `dict` [`str`, `typing.Any`]
        Parameters for `JobManager.submit`, not yet validated by the type.

    Raises
    ------
    ParameterError
        Raised if the request sets a field the job type does not take.

    Notes
    -----
    Request fields set to ``""`` are left out, so the job type's default
    applies. The instance's ``butler``, ``input_collection``,
    ``output_glob`` and ``environment`` are passed only to a job type
    that declares a parameter of that name: they describe the site, not
    the request, so a small job type may ignore them.
    """
    from_request: dict[str, Any] = {
        name: getattr(request, name)
        for name in REQUEST_FIELDS
        if getattr(request, name)
    }
    if request.output_dataset_types:
        from_request["output_dataset_types"] = ",".join(request.output_dataset_types)

    unknown = [name for name in from_request if name not in declared]
    if unknown and not allows_extra:
        raise ParameterError(
            f"job type {job_type!r} does not take "
            f"{', '.join(repr(name) for name in unknown)}; leave "
            f"{'it' if len(unknown) == 1 else 'them'} empty"
        )

    from_instance: dict[str, Any] = {
        "butler": instance.butler,
        "input_collection": instance.input_collection,
        "output_glob": instance.output_glob,
        "environment": dict(instance.environment),
    }
    parameters = {
        name: value
        for name, value in from_instance.items()
        if name in declared and value
    }
    parameters.update(from_request)
    return parameters


def _is_job_id(text: str) -> bool:
    return JOB_ID_RE.match(text) is not None and ".." not in text
