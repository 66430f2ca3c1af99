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

"""The JSON Schema of the OCPS CSC configuration (``OCPS v5``)."""

__all__ = ["CONFIG_SCHEMA", "UNUSED_INSTANCE_KEYS"]

import yaml

UNUSED_INSTANCE_KEYS = ("url", "poll_interval")
"""Keys of schema ``OCPS v4`` instances that only the UWS backend used.

They are still accepted so that ``dm_config_ocps`` files keep working; the
CSC logs that it ignores them.
"""

CONFIG_SCHEMA = yaml.safe_load("""
$schema: http://json-schema.org/draft-07/schema#
$id: https://github.com/lsst-ts/ts_ocps/blob/main/python/lsst/ts/ocps/csc/config_schema.py
title: OCPS v5
description: >-
  Configuration of the OCPS CSC and its embedded job manager. A superset
  of schema OCPS v4: every v4 file validates unchanged.
type: object
properties:
  instances:
    description: >-
      One entry per SAL index; the CSC uses the entry whose sal_index is
      its own. Index 101 (rapid analysis) needs no entry.
    type: array
    minItems: 1
    items:
      type: object
      properties:
        sal_index:
          description: SAL index this entry configures.
          type: integer
        instance:
          description: Name of the SAL index (LATISS, LSSTComCam, LSSTCam, RA).
          type: string
        url:
          description: Unused (v4 UWS service URL); accepted and ignored.
          type: string
        poll_interval:
          description: Unused (v4 UWS polling interval, s); accepted and ignored.
          type: number
          exclusiveMinimum: 0
        butler:
          description: Butler repository (path, URI or label) jobs run against.
          type: string
          minLength: 1
        input_collection:
          description: Default input collections (comma-separated).
          type: string
        output_glob:
          description: >-
            Dataset-type glob of the outputs reported as results when an
            execute command gives no output_dataset_types.
          type: string
        job_type:
          description: Job type that the execute command runs.
          type: string
          default: pipetask
        environment:
          description: Extra environment variables for this instance's jobs.
          type: object
          additionalProperties:
            type: string
        rest_port:
          description: >-
            Port of this instance's REST job API, overriding the top-level
            rest_port (several indices on one host need different ports).
          type: integer
          minimum: -1
          maximum: 65535
      required: [sal_index, instance, butler]
      additionalProperties: false
  job_types_dir:
    description: >-
      Directory of job-type YAML files; relative paths are taken relative
      to the configuration directory. Empty: the job types shipped with
      ts_ocps.
    type: string
    default: ""
  state_dir:
    description: >-
      Directory of the job journal and job work directories. Empty:
      $OCPS_STATE_DIR/<index>, else ~/.local/state/ocps/<index>.
    type: string
    default: ""
  max_concurrent:
    description: Most jobs executing at once; 0 means no limit.
    type: integer
    minimum: 0
    default: 4
  retention:
    description: Seconds a finished job and its files are kept.
    type: number
    minimum: 0
    default: 604800
  log_limit:
    description: Bytes of stdout and of stderr kept per job; 0 means no limit.
    type: integer
    minimum: 0
    default: 10485760
  rest_host:
    description: >-
      Address the REST job API binds to. Loopback by default; set it to
      0.0.0.0 only behind an authenticating proxy or with a token.
    type: string
    default: 127.0.0.1
  rest_port:
    description: Port of the REST job API; 0 picks a free port; -1 disables it.
    type: integer
    minimum: -1
    maximum: 65535
    default: 8080
  rest_token_file:
    description: >-
      File holding a bearer token required for mutating REST calls.
      Empty: none (or $OCPS_API_TOKEN).
    type: string
    default: ""
  default_runner:
    description: >-
      Runner of the job types that name none (job types with a runner
      key keep theirs). slurm needs slurm.enabled.
    type: string
    enum: [local, slurm]
    default: local
  slurm:
    description: >-
      The Slurm runner, used by job types with "runner: slurm". Off
      unless enabled is true.
    type: object
    properties:
      enabled:
        description: Build the Slurm runner.
        type: boolean
        default: false
      partition:
        description: >-
          Default partition of the jobs (a job type's partition option
          wins). Empty: Slurm's default.
        type: string
        default: ""
      account:
        description: >-
          Default account of the jobs (a job type's account option wins).
          Empty: Slurm's default.
        type: string
        default: ""
      sbatch_options:
        description: >-
          Extra sbatch options for every job, e.g. "--qos=normal"; options
          the runner sets itself (--output, --time, ...) are refused.
        type: array
        items:
          type: string
        default: []
      poll_interval:
        description: Seconds between two squeue calls while jobs run.
        type: number
        exclusiveMinimum: 0
        default: 0.5
      cli_timeout:
        description: Seconds any one Slurm command may take.
        type: number
        exclusiveMinimum: 0
        default: 30
      slurm_conf:
        description: >-
          SLURM_CONF of the Slurm commands; relative paths are taken
          relative to the configuration directory. Empty: inherited.
        type: string
        default: ""
    additionalProperties: false
  simulation_duration:
    description: >-
      Seconds a simulated job runs (simulation mode 1) before its
      job_result is published.
    type: number
    minimum: 0
    default: 10
required: [instances]
additionalProperties: false
""")
