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

"""Where the files ts_ocps ships beside its code are: schemas, configs."""

__all__ = ["CONFIG_DIR", "DEFAULT_JOB_TYPES_DIR", "REPO_ROOT", "SCHEMA_DIR"]

import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[4]
"""Root of the ts_ocps checkout (the package is used as an editable install
or with ``python/`` on ``PYTHONPATH``, as EUPS sets it up)."""

SCHEMA_DIR = REPO_ROOT / "schema"
"""JSON Schema and OpenAPI documents."""

CONFIG_DIR = REPO_ROOT / "config"
"""Shipped job types (``job_types/``) and CSC configuration (``csc/``)."""

DEFAULT_JOB_TYPES_DIR = CONFIG_DIR / "job_types"
"""The job types shipped with ts_ocps, used when none are configured."""
