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

"""The in-job wrapper of the pipetask job type: run pipetask, report results.

Run as ``python -m lsst.ts.ocps.pipetask.job --butler REPO --pipeline P ...``
inside a job (the job manager sets ``OCPS_JOB_ID``, ``OCPS_WORK_DIR`` and
``OCPS_RESULT_FILE``). It checks the options again, runs pipetask's own
command-line entry point in this process (so the Science Pipelines are
imported once, for the run and for listing its outputs), then writes to
``OCPS_RESULT_FILE`` a JSON object with a summary of the run, the output
collection and run, the output datasets that match the requested dataset
types (as ``results``), and on failure an ``error`` whose message names the
failing task and exception class. It exits with pipetask's exit code, or 2
if it refuses its arguments before starting pipetask.

This module imports ``lsst.daf.butler`` and ``lsst.ctrl.mpexec``; the OCPS
server must never import it.
"""

from __future__ import annotations

__all__ = [
    "USAGE_EXIT_CODE",
    "apply_environment",
    "list_outputs",
    "main",
    "run_pipetask",
]

import argparse
import collections
import fnmatch
import importlib.metadata
import io
import json
import logging
import os
import pathlib
import shlex
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ..exceptions import ParameterError
from .options import (
    build_pipetask_argv,
    check_environment,
    expand_pipeline,
    output_collection,
    output_run,
    parse_config,
    split_list,
)
from .outcome import describe_failure, summarize

USAGE_EXIT_CODE = 2
"""Exit code when the wrapper refuses its arguments (as click does)."""

PIPELINES_PACKAGES = ("lsst-pipe-base", "lsst-ctrl-mpexec", "lsst-daf-butler")
"""Distributions whose versions every result records."""

_log = logging.getLogger("ocps.pipetask")


class _TailingStream(io.TextIOBase):
    """A text stream that writes through and remembers its last lines.

    Parameters
    ----------
    target : `typing.TextIO`
        Where the text goes.
    max_lines : `int`
        How many complete lines to remember.
    """

    def __init__(self, target: TextIO, max_lines: int = 50) -> None:
        self.target = target
        self.lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._partial = ""

    def write(self, text: str) -> int:
        self.target.write(text)
        pieces = (self._partial + text).split("\n")
        self._partial = pieces.pop()
        self.lines.extend(pieces)
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.target.fileno()


def run_pipetask(argv: Sequence[str]) -> tuple[int, list[str]]:
    """Run pipetask's command-line entry point in this process.

    Parameters
    ----------
    argv : `collections.abc.Sequence` [`str`]
        The full command; ``argv[0]`` is the program name.

    Returns
    -------
    exit_code : `int`
        What ``pipetask`` would have exited with.
    stderr_tail : `list` [`str`]
        The last lines pipetask wrote to standard error.
    """
    from lsst.ctrl.mpexec.cli.pipetask import cli
    from lsst.daf.butler.cli.cliLog import CliLog

    tail = _TailingStream(sys.stderr)
    saved_stderr = sys.stderr
    sys.stderr = tail  # type: ignore[assignment]
    try:
        cli.main(args=list(argv[1:]), prog_name=argv[0], standalone_mode=True)
        exit_code = 0
    except SystemExit as e:
        if e.code is None:
            exit_code = 0
        elif isinstance(e.code, int):
            exit_code = e.code
        else:
            tail.write(f"{e.code}\n")
            exit_code = 1
    except Exception:
        # pipetask's command line normally turns errors into an exit code;
        # anything that escapes it is a failure of the run all the same.
        traceback.print_exc(file=tail)
        exit_code = 1
    finally:
        sys.stderr = saved_stderr
        CliLog.resetLog()
    return exit_code, list(tail.lines)


def list_outputs(
    butler_uri: str, run: str, patterns: Sequence[str], max_results: int
) -> tuple[list[dict[str, Any]], int]:
    """List the datasets of a run whose dataset types match the patterns.

    Parameters
    ----------
    butler_uri : `str`
        Butler repo.
    run : `str`
        RUN collection to look in.
    patterns : `collections.abc.Sequence` [`str`]
        Shell-style dataset type globs, e.g. ``*_metricvalue``.
    max_results : `int`
        Most datasets to return.

    Returns
    -------
    results : `list` [`dict` [`str`, `typing.Any`]]
        ``id`` (dataset UUID), ``uri``, ``datasetType``, ``dataId``,
        ``run`` and, for local files, ``size``; sorted by dataset type
        and data id.
    total : `int`
        How many datasets matched, including those not returned.
    """
    from lsst.daf.butler import Butler, MissingCollectionError

    butler = Butler.from_config(butler_uri, writeable=False)
    try:
        info = butler.collections.get_info(run, include_summary=True)
    except MissingCollectionError:
        return [], 0
    names = sorted(
        name
        for name in info.dataset_types or ()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    )

    if not names:
        return [], 0
    # One registry query for all types is several times faster than one
    # query_datasets call per type.
    refs = list(butler.registry.queryDatasets(names, collections=run, findFirst=False))
    refs.sort(key=lambda ref: (ref.datasetType.name, str(ref.dataId)))
    chosen = refs[:max_results]
    uris = butler.get_many_uris(chosen)

    results = []
    for ref in chosen:
        uri = uris[ref].primaryURI
        entry: dict[str, Any] = {
            "id": str(ref.id),
            "uri": str(uri) if uri is not None else None,
            "datasetType": ref.datasetType.name,
            "dataId": dict(ref.dataId.required),
            "run": ref.run,
        }
        if uri is not None and uri.scheme == "file" and os.path.exists(uri.ospath):
            entry["size"] = os.path.getsize(uri.ospath)
        results.append(entry)
    return results, len(refs)


def _check_version(version: str, environ: Mapping[str, str]) -> dict[str, str | None]:
    """Check that the requested release is the one this job can run.

    Returns the installed versions of `PIPELINES_PACKAGES`.
    """
    installed: dict[str, str | None] = {}
    for name in PIPELINES_PACKAGES:
        try:
            installed[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed[name] = None
    if not version or environ.get("EUPS_DIR"):
        # An EUPS stack: a site launcher in the job type's command selects
        # the release with `setup -t $EUPS_TAG` before this wrapper starts.
        return installed
    pipe_base = installed["lsst-pipe-base"]
    if version not in (pipe_base, f"v{pipe_base}"):
        raise ParameterError(
            f"parameter 'version': {version!r} was requested, but this site runs "
            f"pip-installed Science Pipelines (lsst-pipe-base {pipe_base}) and "
            f"cannot select another release; send '' or {pipe_base!r}"
        )
    return installed


def apply_environment(text: str) -> dict[str, str]:
    """Add the ``environment`` parameter's variables to this process.

    ``PYTHONPATH`` entries are also put in front of `sys.path`, since
    this interpreter has already started (pipetask runs in it).

    Parameters
    ----------
    text : `str`
        JSON object of variable names to string values.

    Returns
    -------
    variables : `dict` [`str`, `str`]
        The variables applied.

    Raises
    ------
    ParameterError
        Raised if ``text`` is not such an object, or names a variable the
        wrapper must not take from a request (``OCPS_*``, ``LD_*``).
    """
    try:
        variables = json.loads(text)
    except ValueError as e:
        raise ParameterError(f"parameter 'environment': not JSON: {e}") from e
    variables = check_environment(variables)
    os.environ.update(variables)
    if variables.get("PYTHONPATH"):
        entries = [e for e in variables["PYTHONPATH"].split(os.pathsep) if e]
        sys.path[0:0] = [e for e in entries if e not in sys.path]
    return variables


def _write_result(path: pathlib.Path, result: Mapping[str, Any]) -> None:
    """Write the result JSON atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    os.replace(temporary, path)


def _make_parser() -> argparse.ArgumentParser:
    """Make the wrapper's argument parser (the job type's command fills it)."""
    parser = argparse.ArgumentParser(
        prog="python -m lsst.ts.ocps.pipetask.job",
        description="Run one pipetask job for OCPS and write its result file.",
    )
    parser.add_argument("--butler", required=True, help="Butler repo")
    parser.add_argument("--pipeline", required=True, help="pipeline, may hold ${VAR}")
    parser.add_argument("--data-query", default="", help="Butler query expression")
    parser.add_argument("--input-collection", default="", help="comma list")
    parser.add_argument("--config", default="", help="extra pipetask run options")
    parser.add_argument("--version", default="", help="Science Pipelines release")
    parser.add_argument(
        "--output-dataset-types", default="", help="comma list of dataset type globs"
    )
    parser.add_argument("--output-glob", default="", help="glob used if none given")
    parser.add_argument("--max-results", type=int, default=1000, help="list limit")
    parser.add_argument(
        "--environment", default="{}", help="JSON object of extra variables"
    )
    return parser


def _prepare(options: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    """Check the arguments in the job's environment; return pipetask's argv.

    Raises
    ------
    ParameterError
        Raised if an argument is refused.
    """
    job_id = result["jobId"]
    if not job_id:
        raise ParameterError("OCPS_JOB_ID is not set; run this through OCPS")
    apply_environment(options.environment)
    result["pipelines"] = _check_version(options.version, os.environ)
    if options.version:
        os.environ["EUPS_TAG"] = options.version
    config = parse_config(options.config)
    pipeline = expand_pipeline(options.pipeline, os.environ)

    work_dir = pathlib.Path(os.environ.get("OCPS_WORK_DIR", "."))
    inputs = split_list(options.input_collection)
    argv = build_pipetask_argv(
        job_id=job_id,
        work_dir=work_dir,
        butler=options.butler,
        pipeline=pipeline,
        data_query=options.data_query,
        input_collections=inputs,
        config=config,
    )
    result.update(
        pipeline=pipeline,
        inputCollections=list(dict.fromkeys([*inputs, *config.inputs])),
        command=argv,
        logFile=str(work_dir / "pipetask.json"),
    )
    return argv


def _report(
    options: argparse.Namespace,
    result: dict[str, Any],
    exit_code: int,
    stderr_tail: Sequence[str],
) -> None:
    """Add the run's summary, outputs and any error to ``result``."""
    work_dir = pathlib.Path(result["logFile"]).parent
    summary_path = work_dir / "summary.json"
    warnings = result.setdefault("warnings", [])
    result["exitCode"] = exit_code
    result["summary"] = None
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            result["summary"] = summarize(summary)
        except (OSError, ValueError, AttributeError) as e:
            warnings.append(f"cannot read {summary_path}: {e!r}")

    patterns = split_list(options.output_dataset_types) or split_list(
        options.output_glob
    )
    if patterns:
        try:
            results, total = list_outputs(
                options.butler, result["outputRun"], patterns, options.max_results
            )
        except Exception as e:
            # Listing reports on a finished run; its failure must not change
            # the run's outcome, so it only becomes a warning.
            warnings.append(f"cannot list outputs: {e!r}")
        else:
            result["results"] = results
            result["resultsTotal"] = total

    if exit_code != 0:
        message = describe_failure(
            exit_code, result["summary"], work_dir / "pipetask.json", stderr_tail
        )
        result["error"] = {"message": message}


def main(args: Sequence[str] | None = None) -> int:
    """Run the wrapper; return the exit code.

    Parameters
    ----------
    args : `collections.abc.Sequence` [`str`] or `None`
        Command-line arguments; None for ``sys.argv[1:]``.

    Returns
    -------
    exit_code : `int`
        pipetask's exit code, or `USAGE_EXIT_CODE` if the arguments were
        refused before pipetask started.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False

    options = _make_parser().parse_args(args)
    job_id = os.environ.get("OCPS_JOB_ID", "")
    work_dir = pathlib.Path(os.environ.get("OCPS_WORK_DIR", "."))
    result_file = pathlib.Path(
        os.environ.get("OCPS_RESULT_FILE", str(work_dir / "result.json"))
    )
    result: dict[str, Any] = {
        "jobId": job_id,
        "version": options.version,
        "butler": options.butler,
        "outputCollection": output_collection(job_id),
        "outputRun": output_run(job_id),
        "results": [],
    }

    try:
        argv = _prepare(options, result)
    except ParameterError as e:
        result["error"] = {"message": str(e)}
        _write_result(result_file, result)
        _log.error("job_id=%s failed before pipetask: %s", job_id, e)
        return USAGE_EXIT_CODE

    _log.info("job_id=%s started %s", job_id, shlex.join(argv))
    exit_code, stderr_tail = run_pipetask(argv)
    _report(options, result, exit_code, stderr_tail)
    _write_result(result_file, result)
    if exit_code != 0:
        _log.error(
            "job_id=%s failed exit_code=%d %s",
            job_id,
            exit_code,
            result["error"]["message"],
        )
    else:
        _log.info(
            "job_id=%s finished exit_code=0 outputs=%d",
            job_id,
            len(result["results"]),
        )
    return exit_code


def _exit_now(exit_code: int) -> None:
    """Exit without interpreter teardown.

    Finalizing the modules of the pipelines stack takes about 0.3 s, a
    tenth of a small run. Everything of value is written and closed by
    now (the result file by `os.replace`, pipetask's outputs committed),
    so only the standard streams and logging need flushing.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


if __name__ == "__main__":
    _exit_now(main())
