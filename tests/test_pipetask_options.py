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


"""Checks of the pipetask options and of the wrapper's report helpers.

These run without a Butler: `lsst.ts.ocps.pipetask.options` and
`lsst.ts.ocps.pipetask.outcome` never import the pipelines, and the parts of
`lsst.ts.ocps.pipetask.job` used here only read files and text.
"""

import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest
from lsst.ts.ocps import ParameterError
from lsst.ts.ocps.jobs.job_types import JobTypeRegistry
from lsst.ts.ocps.pipetask import (
    OPTION_RULES,
    build_pipetask_argv,
    check_environment,
    expand_pipeline,
    parse_config,
    preprocess,
    split_list,
)
from lsst.ts.ocps.pipetask.job import USAGE_EXIT_CODE
from lsst.ts.ocps.pipetask.outcome import (
    MAX_FAILURES,
    describe_failure,
    parse_traceback,
    summarize,
)

JOB_TYPES_DIR = pathlib.Path(__file__).resolve().parents[1] / "config" / "job_types"

TRACEBACK = """Traceback (most recent call last):
  File "/x/cli.py", line 10, in run
    script.run(**kwargs)
    ^^^^^^^^^^^^^^^^^^^^
  File "/x/config.py", line 826, in __set__
    raise FieldValidationError(self, instance, str(e)) from e

lsst.pex.config.config.FieldValidationError: Field 'addend' failed validation
For more information see the Field definition at:
  File /x/config.py:119 (__call__)
"""


def test_parse_config_sorts_options() -> None:
    parsed = parse_config(
        "-j 1 -i a,b --register-dataset-types -c 'task0:addend=7' "
        "--log-level=mytasks=INFO -j4 --input c,a --no-versions --fail-fast"
    )
    assert parsed.inputs == ["a", "b", "c"]
    assert parsed.global_args == ["--log-level", "mytasks=INFO"]
    assert parsed.run_args == [
        "--processes",
        "1",
        "--register-dataset-types",
        "--config",
        "task0:addend=7",
        "--processes",
        "4",
        "--no-versions",
        "--fail-fast",
    ]


def test_empty_config() -> None:
    parsed = parse_config("")
    assert (parsed.inputs, parsed.global_args, parsed.run_args) == ([], [], [])


def test_metacharacters_stay_data() -> None:
    """Quoted text is one value; nothing is interpreted by a shell."""
    parsed = parse_config("-c 'isr:doWrite=$(touch /tmp/x); rm -rf ~'")
    assert parsed.run_args == ["--config", "isr:doWrite=$(touch /tmp/x); rm -rf ~"]


@pytest.mark.parametrize(
    "config, message",
    [
        ("-o x", "option '-o' is not allowed: outputs always go to u/ocps/<jobId>"),
        ("--output=x", "option '--output' is not allowed"),
        ("--output-run r", "option '--output-run' is not allowed"),
        ("-b repo", "option '-b' is not allowed: the repo is the 'butler'"),
        ("--butler-config repo", "option '--butler-config' is not allowed"),
        ("-p p.yaml", "option '-p' is not allowed"),
        ("--pipeline p.yaml", "option '--pipeline' is not allowed"),
        ("-d 'a=1'", "option '-d' is not allowed"),
        ("--data-query a", "option '--data-query' is not allowed"),
        ("-g g.qg", "option '-g' is not allowed: would run a saved graph"),
        ("--qgraph g.qg", "option '--qgraph' is not allowed"),
        ("-@ o.yaml", "option '-@' is not allowed: would read further options"),
        ("--summary s.json", "option '--summary' is not allowed"),
        ("-q g.qg", "option '-q' is not allowed: would write a file"),
        ("--replace-run", "option '--replace-run' is not allowed"),
        ("--pdb pdb", "option '--pdb' is not allowed"),
        ("-ox", "option '-o' is not allowed"),
        ("-b/other/repo", "option '-b' is not allowed"),
        ("-xyz", "option '-xyz' is unknown to OCPS"),
        ("--frobnicate", "option '--frobnicate' is unknown to OCPS"),
        ("--conf x", "option '--conf' is unknown to OCPS"),
        ("stray", "unexpected argument 'stray'"),
        ("-j 0", "option '-j' value '0' must be an integer >= 1"),
        ("-j two", "option '-j' value 'two' must be an integer >= 1"),
        (
            "-c addend=1",
            "option '-c' value 'addend=1' must have the form LABEL:NAME=VALUE",
        ),
        ("-C task0", "option '-C' value 'task0' must have the form LABEL:FILE"),
        ("-c", "option '-c' needs a value"),
        (
            "-c --output=x",
            "option '-c' needs a value, not the option-like '--output=x'",
        ),
        ("--fail-fast=yes", "option '--fail-fast' takes no value"),
        ("--log-level LOUD", "option '--log-level' value 'LOUD' level must be one of"),
        ("--start-method thread", "option '--start-method' value 'thread' must be"),
        ("-i ,", "option '-i' value ',' must name at least one collection"),
        ("'unbalanced", "cannot split"),
    ],
)
def test_bad_config(config: str, message: str) -> None:
    with pytest.raises(ParameterError, match="^parameter 'config': ") as info:
        parse_config(config)
    assert message in str(info.value)


def test_every_rule_has_a_reason() -> None:
    names = [name for rule in OPTION_RULES for name in rule.names]
    assert len(names) == len(set(names))
    for rule in OPTION_RULES:
        assert rule.reason
        assert all(name.startswith("-") for name in rule.names)


def test_expand_pipeline() -> None:
    environ = {"CP_PIPE_DIR": "/opt/cp_pipe", "INSTR": "LATISS"}
    assert (
        expand_pipeline("${CP_PIPE_DIR}/pipelines/$INSTR/cpBias.yaml#isr", environ)
        == "/opt/cp_pipe/pipelines/LATISS/cpBias.yaml#isr"
    )
    assert expand_pipeline("/abs/p.yaml", {}) == "/abs/p.yaml"
    # The subset part is never expanded.
    assert expand_pipeline("/p.yaml#$INSTR", environ) == "/p.yaml#$INSTR"


@pytest.mark.parametrize(
    "pipeline, message",
    [
        ("${CP_PIPE_DIR}/p.yaml", "environment variable 'CP_PIPE_DIR' used in"),
        ("$NOPE/p.yaml", "environment variable 'NOPE'"),
        ("${CP_PIPE_DIR/p.yaml", "unterminated '${'"),
        ("${1x}/p.yaml", "'${1x}' is not a valid environment variable reference"),
        ("", "must name a pipeline file"),
        ("#subset", "must name a pipeline file"),
    ],
)
def test_bad_pipeline(pipeline: str, message: str) -> None:
    with pytest.raises(ParameterError, match="^parameter 'pipeline': ") as info:
        expand_pipeline(pipeline, {})
    assert message in str(info.value)


def test_build_argv() -> None:
    argv = build_pipetask_argv(
        job_id="abc123",
        work_dir="/work/abc123",
        butler="/repo",
        pipeline="/p.yaml#sub",
        data_query="instrument='X' AND detector IN (1..2)",
        input_collections=split_list("X/defaults, X/raw,X/defaults"),
        config=parse_config(
            "-i extra,X/raw --register-dataset-types --log-level WARNING -j 1"
        ),
    )
    assert argv == [
        "pipetask",
        "--log-file",
        "/work/abc123/pipetask.json",
        "--long-log",
        "--no-log-tty",
        "--log-level",
        "WARNING",
        "run",
        "-b",
        "/repo",
        "-i",
        "X/defaults,X/raw,extra",
        "-o",
        "u/ocps/abc123",
        "--output-run",
        "u/ocps/abc123/run",
        "-p",
        "/p.yaml#sub",
        "-d",
        "instrument='X' AND detector IN (1..2)",
        "--register-dataset-types",
        "--summary",
        "/work/abc123/summary.json",
        "--processes",
        "1",
    ]


def test_build_argv_without_inputs_or_query() -> None:
    argv = build_pipetask_argv(
        job_id="j",
        work_dir="/w",
        butler="/repo",
        pipeline="/p.yaml",
        data_query="",
        input_collections=[],
        config=parse_config(""),
    )
    assert "-i" not in argv and "-d" not in argv


def test_environment_check() -> None:
    assert check_environment({"CP_PIPE_DIR": "/x"}) == {"CP_PIPE_DIR": "/x"}
    for bad, message in [
        ({"OCPS_WORK_DIR": "/x"}, "'OCPS_WORK_DIR' may not be set"),
        ({"LD_PRELOAD": "/x.so"}, "'LD_PRELOAD' may not be set"),
        ({"A B": "x"}, "'A B' may not be set"),
        ({"X": 1}, "must be an object of string values"),
        (["X"], "must be an object of string values"),
    ]:
        with pytest.raises(ParameterError, match="^parameter 'environment': ") as info:
            check_environment(bad)
        assert message in str(info.value)


def test_shipped_job_type() -> None:
    """pipetask.yaml loads, renders safely, and refuses at submit."""
    job_type = JobTypeRegistry.from_directory(JOB_TYPES_DIR).get_type("pipetask")
    assert job_type.preprocessor == "lsst.ts.ocps.pipetask.options:preprocess"
    parameters = job_type.validate_parameters(
        {
            "pipeline": "${CP_PIPE_DIR}/p.yaml",
            "butler": "/repo",
            "config": "--fail-fast",
        }
    )
    assert parameters["version"] == "" and parameters["output_glob"] == "*"
    argv = job_type.render_argv(parameters)
    assert argv[:3] == ["python3", "-m", "lsst.ts.ocps.pipetask.job"]
    # A value that starts with "-" stays attached to its option.
    assert "--config=--fail-fast" in argv
    assert "--pipeline=${CP_PIPE_DIR}/p.yaml" in argv

    assert job_type.render_environment({**parameters, "version": "w.2026.05"}) == {
        "EUPS_TAG": "w.2026.05"
    }
    with pytest.raises(ParameterError, match="option '--output-run' is not allowed"):
        job_type.validate_parameters(
            {"pipeline": "p.yaml", "butler": "/r", "config": "--output-run x"}
        )
    with pytest.raises(ParameterError, match="pipeline"):
        job_type.validate_parameters({"butler": "/r"})


def test_preprocess_returns_parameters() -> None:
    parameters = {"pipeline": "p.yaml", "butler": "/r", "config": "-j 1"}
    assert preprocess(None, parameters) == parameters
    with pytest.raises(ParameterError, match="'butler'"):
        preprocess(None, {"pipeline": "p.yaml", "butler": " "})


def test_parse_traceback() -> None:
    assert parse_traceback(TRACEBACK) == (
        "lsst.pex.config.config.FieldValidationError",
        "Field 'addend' failed validation\nFor more information see the Field "
        "definition at:\n  File /x/config.py:119 (__call__)",
    )
    chained = (
        'Traceback (most recent call last):\n  File "a.py", line 1, in f\n'
        "KeyError: 'x'\n\nThe above exception was the direct cause of the "
        'following exception:\n\nTraceback (most recent call last):\n  File "b.py",'
        " line 2, in g\n    raise Missing()\nlsst.daf.butler.MissingCollectionError\n"
    )
    assert parse_traceback(chained) == ("lsst.daf.butler.MissingCollectionError", "")
    assert parse_traceback("no traceback here\n  indented") is None
    assert parse_traceback("") is None


SUMMARY = {
    "status": "failure",
    "exceptionInfo": {"className": "x.MPGraphExecutorError", "message": "failed"},
    "qgraphSummary": {
        "qgraphTaskSummaries": {"a": {"numQuanta": 2}, "b": {"numQuanta": 2}}
    },
    "quantaReports": [
        {"status": "success", "taskLabel": "a", "dataId": {"detector": 0}},
        {"status": "success", "taskLabel": "a", "dataId": {"detector": 1}},
        {"status": "success", "taskLabel": "b", "dataId": {"detector": 0}},
        {
            "status": "failure",
            "taskLabel": "b",
            "dataId": {"instrument": "X", "detector": 1},
            "exceptionInfo": {"className": "m.Boom", "message": "bad pixel"},
        },
    ],
}


def test_summarize() -> None:
    brief = summarize(SUMMARY)
    assert brief["status"] == "failure"
    assert brief["quanta"] == {
        "total": 4,
        "byStatus": {"success": 3, "failure": 1},
        "byTask": {"a": {"success": 2}, "b": {"success": 1, "failure": 1}},
    }
    assert brief["expected"] == {"a": 2, "b": 2}
    assert brief["failures"] == [
        {
            "taskLabel": "b",
            "dataId": {"instrument": "X", "detector": 1},
            "status": "failure",
            "exceptionClass": "m.Boom",
            "message": "bad pixel",
        }
    ]
    assert brief["failuresOmitted"] == 0


def test_summarize_caps_failures() -> None:
    report = {"status": "failure", "taskLabel": "t", "dataId": {}}
    brief = summarize({"quantaReports": [report] * (MAX_FAILURES + 5)})
    assert len(brief["failures"]) == MAX_FAILURES
    assert brief["failuresOmitted"] == 5
    assert brief["quanta"]["byStatus"] == {"failure": MAX_FAILURES + 5}


def test_describe_failure(tmp_path: pathlib.Path) -> None:
    log_path = tmp_path / "pipetask.json"
    assert describe_failure(1, summarize(SUMMARY), log_path, []) == (
        "pipetask failed: 1 of 4 quanta failed; first: task 'b' "
        "{instrument: 'X', detector: 1}: Boom: bad pixel"
    )

    # Without failed quanta: the exception in the JSON log, first line only.
    records = [
        {"levelno": 20, "message": "fine"},
        {"levelno": 40, "message": "Caught an exception", "exc_info": TRACEBACK},
    ]
    log_path.write_text("not json\n" + "".join(json.dumps(r) + "\n" for r in records))
    assert describe_failure(1, None, log_path, []) == (
        "pipetask failed: FieldValidationError: Field 'addend' failed validation"
    )

    # Without an exception: click's error line and the ERROR records.
    log_path.write_text(json.dumps({"levelno": 40, "message": "No rows.\nmore"}))
    stderr = ["Error: QuantumGraph was empty; ERROR logs above should provide details."]
    assert describe_failure(1, None, log_path, stderr) == (
        "pipetask failed: QuantumGraph was empty; No rows."
    )
    assert describe_failure(3, None, tmp_path / "none.json", []) == (
        "pipetask failed: pipetask exited with code 3"
    )

    # An exception that escaped pipetask's command line, from stderr.
    stderr = ["noise", *TRACEBACK.splitlines()]
    assert describe_failure(1, None, tmp_path / "none.json", stderr) == (
        "pipetask failed: FieldValidationError: Field 'addend' failed validation"
    )


def test_split_list() -> None:
    assert split_list(" a, b,,a ,c ") == ["a", "b", "c"]
    assert split_list("") == []
    assert shlex.split("-i 'a b'") == ["-i", "a b"]


def run_wrapper(
    tmp_path: pathlib.Path,
    args: list[str],
    job_id: str | None = "job1",
    **extra_env: str,
) -> tuple[int, dict, str]:
    """Run the wrapper as a job would; return exit code, result, stderr."""
    env = {"PATH": os.environ["PATH"], "OCPS_WORK_DIR": str(tmp_path), **extra_env}
    env["OCPS_RESULT_FILE"] = str(tmp_path / "result.json")
    if job_id is not None:
        env["OCPS_JOB_ID"] = job_id
    process = subprocess.run(
        [sys.executable, "-m", "lsst.ts.ocps.pipetask.job", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads((tmp_path / "result.json").read_text())
    return process.returncode, result, process.stderr


@pytest.mark.parametrize(
    "args, job_id, message",
    [
        (["--config=-o x"], "job1", "option '-o' is not allowed"),
        (["--environment=[1]"], "job1", "must be an object of string values"),
        (["--environment={"], "job1", "parameter 'environment': not JSON"),
        (["--pipeline=${UNSET_DIR}/p.yaml"], "job1", "'UNSET_DIR' used in"),
        ([], None, "OCPS_JOB_ID is not set"),
    ],
)
def test_wrapper_checks_again(
    tmp_path: pathlib.Path, args: list[str], job_id: str | None, message: str
) -> None:
    """The wrapper refuses what the preprocessor refuses, before pipetask."""
    exit_code, result, stderr = run_wrapper(
        tmp_path, ["--butler=/repo", "--pipeline=/p.yaml", *args], job_id
    )
    assert exit_code == USAGE_EXIT_CODE
    assert message in result["error"]["message"]
    assert f"job_id={job_id or ''} failed before pipetask: " in stderr
    assert not (tmp_path / "pipetask.json").exists()


def test_version_needs_a_release_selector(tmp_path: pathlib.Path) -> None:
    """Without EUPS only the installed release is accepted.

    With EUPS the site's launcher has selected the release, so the wrapper
    goes on (and here stops at the next check).
    """
    args = ["--butler=/repo", "--pipeline=/p.yaml", "--version=w.2099.01"]
    exit_code, result, _ = run_wrapper(tmp_path, [*args, "--config=-o x"])
    assert exit_code == USAGE_EXIT_CODE
    assert "'w.2099.01' was requested, but this site runs pip-installed" in (
        result["error"]["message"]
    )

    exit_code, result, _ = run_wrapper(
        tmp_path, [*args, "--config=-o x"], EUPS_DIR=str(tmp_path)
    )
    assert exit_code == USAGE_EXIT_CODE
    assert "option '-o' is not allowed" in result["error"]["message"]
    assert result["version"] == "w.2099.01"
