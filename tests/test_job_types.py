"""Tests of job-type loading, parameter validation and argv rendering."""

import asyncio
import json
import os
import pathlib
import re
import shutil
import sys
from typing import Any

import pytest
from lsst.ts.ocps.exceptions import (
    JobTypeError,
    OcpsError,
    ParameterError,
    UnknownJobTypeError,
)
from lsst.ts.ocps.jobs.job_types import (
    JOB_TYPE_SCHEMA_PATH,
    JobType,
    JobTypeRegistry,
    format_value,
    load_job_type,
    validate_directory,
)

STD_TIMEOUT = 30
"""Seconds a test waits for a subprocess that should end much sooner."""

DATA_DIR = pathlib.Path(__file__).parent / "data" / "job_types"
REPO_DIR = pathlib.Path(__file__).parents[1]
SHIPPED_DIR = REPO_DIR / "config" / "job_types"

# (file stem in tests/data/job_types/bad, JSON path, regex of the reason)
BAD_CASES = [
    ("malformed_yaml", "$", r"^malformed YAML at line 9, column 4: "),
    ("duplicate_key", "$", r"line 5, column 1: found duplicate key 'version'"),
    ("empty", "$", r"^the file is empty$"),
    ("missing_command", "$.command", r"^required key missing$"),
    ("wrong_types", "$.version", r"^1\.0 is not of type 'string'$"),
    ("wrong_types", "$.max_concurrent", r"^'2' is not of type 'integer'$"),
    ("yaml_date", "$.version", r"YAML date, not JSON data \(quote it"),
    (
        "unknown_key",
        "$.ouput_globs",
        r"^unknown key 'ouput_globs' \(did you mean 'output_globs'\?\)$",
    ),
    (
        "invalid_parameters_schema",
        "$.parameters.properties.seconds.minimum",
        r"^not a valid JSON Schema: 'ten' is not of type 'number'$",
    ),
    ("parameters_not_object", "$.parameters.type", r"'object' was expected"),
    (
        "keyword_typo",
        "$.parameters.properties.seconds.minimun",
        r"^unknown JSON Schema keyword 'minimun' \(did you mean 'minimum'\?\)$",
    ),
    (
        "unknown_placeholder",
        "$.command[1]",
        r"^placeholder \{mesage\} names no declared parameter "
        r"\(declared: message\)$",
    ),
    ("unmatched_brace", "$.command[1]", r"^unmatched '\{' at offset 1; write '\{\{'"),
    (
        "default_out_of_range",
        "$.parameters.properties.seconds.default",
        r"^default 5000 is invalid: 5000 is greater than the maximum of 3600$",
    ),
    (
        "wrong_name",
        "$.name",
        r"^name 'sleepy' does not match the file name 'wrong_name.yaml'$",
    ),
    ("program_placeholder", "$.command[0]", r"^the program must be a plain string"),
    ("reserved_environment", "$.environment.OCPS_JOB_ID", r"reserved"),
    ("absolute_output_glob", "$.output_globs[0]", r"^'/etc/\*' must be relative"),
    ("absolute_output_glob", "$.output_globs[1]", r"^'\.\./\*' must be relative"),
    (
        "embedded_list",
        "$.command[1]",
        r"^parameter 'files' may be a list, which can only fill a whole",
    ),
    (
        "undeclared_required",
        "$.parameters.required[0]",
        r"^required parameter 'count' is not declared in properties$",
    ),
    (
        "bad_preprocessor",
        "$.preprocessor",
        r"is invalid: write it as package\.module:function$",
    ),
]


def add_total(job_type: JobType, parameters: dict[str, Any]) -> dict[str, Any]:
    """Preprocessor of tests/data/job_types/good/open.yaml.

    Refuses a negative ``a``; otherwise adds ``total``, the sum of every
    integer parameter.
    """
    if parameters["a"] < 0:
        raise ParameterError(f"parameter 'a': {parameters['a']} is negative")
    if parameters.get("explode"):
        raise RuntimeError("boom")
    total = sum(value for value in parameters.values() if isinstance(value, int))
    return {**parameters, "total": total}


@pytest.fixture
def good() -> JobTypeRegistry:
    return JobTypeRegistry.from_directory(DATA_DIR / "good")


@pytest.fixture
def shipped() -> JobTypeRegistry:
    return JobTypeRegistry.from_directory(SHIPPED_DIR)


def test_schema_is_found_next_to_the_package() -> None:
    assert JOB_TYPE_SCHEMA_PATH == REPO_DIR / "schema" / "job_type.schema.yaml"
    assert JOB_TYPE_SCHEMA_PATH.is_file()


@pytest.mark.parametrize("stem, field, reason", BAD_CASES)
def test_bad_file(stem: str, field: str, reason: str) -> None:
    path = DATA_DIR / "bad" / f"{stem}.yaml"
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# Bad: "), "each bad file explains itself"

    with pytest.raises(JobTypeError) as excinfo:
        load_job_type(path)
    problems = [p for p in excinfo.value.problems if p.field == field]
    assert problems, f"no problem at {field}: {excinfo.value}"
    assert all(problem.path == str(path) for problem in excinfo.value.problems)
    assert any(
        re.search(reason, problem.reason) for problem in problems
    ), f"{[p.reason for p in problems]} do not match {reason!r}"
    assert str(path) in str(excinfo.value)


def test_every_bad_file_is_in_the_table() -> None:
    stems = {path.stem for path in (DATA_DIR / "bad").iterdir()}
    assert stems == {stem for stem, _, _ in BAD_CASES}


def test_all_problems_of_all_files_at_once(tmp_path: pathlib.Path) -> None:
    # A good file among bad ones: the bad ones are all reported.
    for path in (DATA_DIR / "bad").iterdir():
        shutil.copy(path, tmp_path)
    shutil.copy(SHIPPED_DIR / "sleep.yaml", tmp_path)

    problems = validate_directory(tmp_path)
    files_with_problems = {pathlib.Path(problem.path).name for problem in problems}
    assert files_with_problems == {path.name for path in (DATA_DIR / "bad").iterdir()}
    assert len(problems) == len(BAD_CASES)
    assert [problem.path for problem in problems] == sorted(
        problem.path for problem in problems
    ), "problems come in file order"

    with pytest.raises(JobTypeError) as excinfo:
        JobTypeRegistry.from_directory(tmp_path)
    assert excinfo.value.problems == problems
    assert str(excinfo.value).startswith(f"{len(problems)} invalid job-type field(s):")


def test_duplicate_names() -> None:
    problems = validate_directory(DATA_DIR / "duplicate")
    assert len(problems) == 1
    assert problems[0].path == str(DATA_DIR / "duplicate" / "twice.yml")
    assert problems[0].field == "$.name"
    assert problems[0].reason == (
        f"duplicate job type 'twice', also defined in "
        f"{str(DATA_DIR / 'duplicate' / 'twice.yaml')!r}"
    )


def test_missing_and_empty_directories(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing"
    assert [(p.path, p.reason) for p in validate_directory(missing)] == [
        (str(missing), "the job-type directory does not exist")
    ]
    (tmp_path / "notes.txt").write_text("not a job type")
    (tmp_path / ".hidden.yaml").write_text("also ignored")
    assert [p.reason for p in validate_directory(tmp_path)] == [
        "no job-type files (*.yaml, *.yml) in the directory"
    ]
    with pytest.raises(JobTypeError, match="does not exist"):
        JobTypeRegistry.from_directory(missing)


def test_shipped_job_types_load_cleanly(shipped: JobTypeRegistry) -> None:
    assert validate_directory(SHIPPED_DIR) == []
    assert {"sleep", "echo", "exit_code", "prototype_ap"} <= set(shipped)
    for name, job_type in shipped.items():
        assert job_type.name == name == job_type.source_path.stem
        json.dumps(job_type.to_schema_dict())


def test_registry(good: JobTypeRegistry) -> None:
    assert list(good) == ["open", "render"]
    assert len(good) == 2
    assert good["render"] is good.get_type("render")
    assert "render" in good
    with pytest.raises(UnknownJobTypeError, match=r"^unknown job type 'nope' "):
        good.get_type("nope")
    with pytest.raises(KeyError):
        good["nope"]
    assert UnknownJobTypeError("x").status_code == 400
    with pytest.raises(ValueError, match="duplicate job type 'open'"):
        JobTypeRegistry([good["open"], good["open"]])
    assert [entry["name"] for entry in good.to_schema_list()] == ["open", "render"]


def test_loaded_fields(good: JobTypeRegistry) -> None:
    render = good["render"]
    assert render.version == "2.1"
    assert render.execution_duration == 30.0
    assert isinstance(render.execution_duration, float)
    assert render.max_concurrent == 2
    assert render.runner == "local"
    assert render.runner_options == {"cpus": 1}
    assert render.output_globs == ["*.json", "out/**/*.fits"]
    assert render.preprocessor is None
    assert render.source_path == DATA_DIR / "good" / "render.yaml"
    # Undeclared parameters are refused unless the file allows them.
    assert render.parameters_schema["additionalProperties"] is False
    assert good["open"].parameters_schema["additionalProperties"] is True

    sleep = load_job_type(SHIPPED_DIR / "sleep.yaml")
    assert sleep.runner == "local"
    assert sleep.environment == {}
    assert sleep.max_concurrent == 0
    assert sleep.output_globs == []


def test_validate_fills_defaults(good: JobTypeRegistry) -> None:
    render = good["render"]
    submitted = {"count": 7, "butler": {"repo": "/other"}}
    parameters = render.validate_parameters(submitted)
    assert parameters == {
        "count": 7,
        "limit": None,
        "files": [],
        "overrides": [],
        "flag": False,
        "ratio": 0.5,
        "mode": "fast",
        "butler": {"repo": "/other", "collections": ["raw"]},
    }
    assert submitted == {"count": 7, "butler": {"repo": "/other"}}, "not modified"

    # A defaulted object gets its own nested defaults.
    parameters = render.validate_parameters({"count": 0})
    assert parameters["butler"] == {"repo": "/repo", "collections": ["raw"]}

    # Defaults are copies, not shared with the schema.
    parameters["butler"]["collections"].append("changed")
    again = render.validate_parameters({"count": 0})
    assert again["butler"]["collections"] == ["raw"]


@pytest.mark.parametrize(
    "parameters, message",
    [
        (
            {"seconds": 5000},
            "parameter 'seconds': 5000 is greater than the maximum of 3600",
        ),
        ({"seconds": -1}, "parameter 'seconds': -1 is less than the minimum of 0"),
        ({"seconds": "5"}, "parameter 'seconds': '5' is not of type 'number'"),
        ({"seconds": True}, "parameter 'seconds': True is not of type 'number'"),
        ({"seconds": None}, "parameter 'seconds': None is not of type 'number'"),
        (
            {"second": 5},
            "parameter 'second': unknown parameter (known: seconds)",
        ),
        (
            {"seconds": 5000, "x": 1, "y": 2},
            "parameter 'seconds': 5000 is greater than the maximum of 3600; "
            "parameter 'x': unknown parameter (known: seconds); "
            "parameter 'y': unknown parameter (known: seconds)",
        ),
    ],
)
def test_sleep_parameter_errors(
    shipped: JobTypeRegistry, parameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParameterError) as excinfo:
        shipped["sleep"].validate_parameters(parameters)
    assert str(excinfo.value) == message
    assert excinfo.value.status_code == 400


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({}, "parameter 'count': required"),
        ({"count": 5.0}, "parameter 'count': 5.0 is not of type 'integer'"),
        ({"count": "5"}, "parameter 'count': '5' is not of type 'integer'"),
        (
            {"count": 1, "mode": "medium"},
            "parameter 'mode': 'medium' is not one of ['fast', 'slow']",
        ),
        (
            {"count": 1, "ratio": 0},
            "parameter 'ratio': 0 is less than or equal to the minimum of 0",
        ),
        (
            {"count": 1, "butler": {"repo": 3, "colour": "red"}},
            "parameter 'butler.colour': unknown parameter (known: repo, "
            "collections); parameter 'butler.repo': 3 is not of type 'string'",
        ),
        (
            {"count": 1, "overrides": ["ok=1", "Bad"]},
            "parameter 'overrides[1]': 'Bad' does not match '^[a-z_.:]+=.*$'",
        ),
        (
            {"count": 1, "limit": 0},
            "parameter 'limit': 0 is less than the minimum of 1",
        ),
    ],
)
def test_render_parameter_errors(
    good: JobTypeRegistry, parameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParameterError) as excinfo:
        good["render"].validate_parameters(parameters)
    assert str(excinfo.value) == message


def test_parameters_must_be_an_object(shipped: JobTypeRegistry) -> None:
    with pytest.raises(ParameterError, match="^parameters must be a JSON object"):
        shipped["sleep"].validate_parameters([("seconds", 1)])  # type: ignore[arg-type]


def test_preprocessor(good: JobTypeRegistry) -> None:
    open_type = good["open"]
    assert open_type.validate_parameters({"b": 2, "c": "x"}) == {
        "a": 1,
        "b": 2,
        "c": "x",
        "total": 3,
    }
    with pytest.raises(ParameterError, match=r"^parameter 'a': -1 is negative$"):
        open_type.validate_parameters({"a": -1})

    # A bug in a preprocessor is a server error, not a bad request.
    with pytest.raises(OcpsError, match=r"preprocessor .* failed: RuntimeError") as e:
        open_type.validate_parameters({"explode": True})
    assert not isinstance(e.value, ParameterError)
    assert e.value.status_code == 500


def test_preprocessor_that_cannot_be_imported(tmp_path: pathlib.Path) -> None:
    text = (DATA_DIR / "good" / "open.yaml").read_text()
    path = tmp_path / "open.yaml"
    path.write_text(text.replace("test_job_types:add_total", "no_such_module:fn"))
    job_type = load_job_type(path)  # imported lazily, so this loads
    with pytest.raises(
        OcpsError, match="cannot import preprocessor 'no_such_module:fn'"
    ):
        job_type.validate_parameters({})


@pytest.mark.parametrize(
    "value, text",
    [
        ("a b", "a b"),
        (True, "true"),
        (False, "false"),
        (5, "5"),
        (5.0, "5"),
        (-2.0, "-2"),
        (0.1, "0.1"),
        (1e-07, "1e-07"),
        (float("inf"), "inf"),
        ({"b": 1, "a": [1, "x"]}, '{"a":[1,"x"],"b":1}'),
    ],
)
def test_format_value(value: Any, text: str) -> None:
    assert format_value(value) == text


def test_render_argv(good: JobTypeRegistry) -> None:
    render = good["render"]
    parameters = render.validate_parameters({"count": 2})
    argv = render.render_argv(parameters)
    assert argv[:2] == ["python3", "-c"]
    assert "{k: v for k, v in os.environ.items()" in argv[2]
    head = argv[:3]
    assert argv == head + [
        "--count=2",
        "--flag=false",
        "--ratio=0.5",
        "{literal}",
    ]

    parameters = render.validate_parameters(
        {
            "count": 4,
            "limit": 10,
            "files": ["a b.fits", "c.fits"],
            "overrides": ["task:x=1", "task:y=two words"],
            "flag": True,
            "ratio": 1.0,
            "text": "",
        }
    )
    assert render.render_argv(parameters) == head + [
        "--count=4",
        "--limit",
        "10",
        "a b.fits",
        "c.fits",
        "-c",
        "task:x=1",
        "-c",
        "task:y=two words",
        "--flag=true",
        "--ratio=1",
        "{literal}",
        "--text=",
    ]


def test_render_group_with_two_lists(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "pairs.yaml"
    path.write_text(
        "name: pairs\ndescription: d\nversion: '1'\n"
        "command: [echo, ['{a}', '{b}']]\n"
        "parameters:\n  type: object\n  properties:\n"
        "    a: {type: array}\n    b: {}\n"
    )
    pairs = load_job_type(path)
    assert pairs.render_argv({"a": ["x", "y"], "b": "z"}) == [
        "echo",
        "x",
        "z",
        "y",
        "z",
    ]
    # "b" has no declared type, so only rendering can see it is a list too.
    with pytest.raises(ParameterError, match="may refer to one list only"):
        pairs.render_argv({"a": ["x"], "b": ["y"]})


def test_render_environment(good: JobTypeRegistry) -> None:
    render = good["render"]
    parameters = render.validate_parameters({"count": 1})
    assert render.render_environment(parameters) == {
        "RENDER_MODE": "fast",
        "RENDER_BUTLER": '{"collections":["raw"],"repo":"/repo"}',
        "RENDER_PLAIN": "fixed {braces}",
    }
    parameters = render.validate_parameters({"count": 1, "text": "$HOME; ls"})
    assert render.render_environment(parameters)["RENDER_TEXT"] == "text=$HOME; ls"


async def run(argv: list[str], cwd: pathlib.Path, env: dict[str, str]) -> str:
    """Run a command as a real subprocess (no shell) and return stdout."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), STD_TIMEOUT)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_metacharacters_are_data(
    shipped: JobTypeRegistry, tmp_path: pathlib.Path
) -> None:
    message = "; rm -rf x $(touch y) `touch z` | tee w && echo \"'\n{message}"
    (tmp_path / "x").mkdir()
    echo = shipped["echo"]
    parameters = echo.validate_parameters({"message": message})
    argv = echo.render_argv(parameters)
    assert argv[-1] == message

    result_file = tmp_path / "result.json"
    stdout = await run(argv, tmp_path, {"OCPS_RESULT_FILE": str(result_file)})
    assert stdout == message + "\n"
    assert json.loads(result_file.read_text()) == {
        "message": message,
        "length": len(message),
    }
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.json", "x"]


async def test_rendered_argv_and_environment_reach_the_process(
    good: JobTypeRegistry, tmp_path: pathlib.Path
) -> None:
    render = good["render"]
    parameters = render.validate_parameters(
        {"count": 1, "files": ["*", "$(id)", "a\tb"], "text": "> out"}
    )
    argv = render.render_argv(parameters)
    argv[0] = sys.executable
    stdout = await run(argv, tmp_path, render.render_environment(parameters))
    seen = json.loads(stdout)
    assert seen["argv"] == argv[3:]
    assert seen["argv"][1:4] == ["*", "$(id)", "a\tb"]
    assert seen["env"]["RENDER_TEXT"] == "text=> out"
    assert list(tmp_path.iterdir()) == []


async def test_prototype_ap_environment(
    shipped: JobTypeRegistry, tmp_path: pathlib.Path
) -> None:
    ap = shipped["prototype_ap"]
    parameters = ap.validate_parameters(
        {"AP_VISIT_ID": 2026120300042, "AP_CCD_NUM": 94, "AP_REPO": "/repo/main"}
    )
    env = ap.render_environment(parameters)
    assert env["AP_VISIT_ID"] == "2026120300042"
    assert env["AP_FILTER"] == "r"
    result_file = tmp_path / "result.json"
    await run(
        ap.render_argv(parameters),
        tmp_path,
        {**env, "OCPS_RESULT_FILE": str(result_file)},
    )
    inputs = json.loads(result_file.read_text())["inputs"]
    assert inputs["AP_REPO"] == "/repo/main"
    assert inputs["AP_CCD_NUM"] == "94"

    with pytest.raises(ParameterError, match="parameter 'AP_CCD_NUM': 189 is greater"):
        ap.validate_parameters({"AP_VISIT_ID": 1, "AP_CCD_NUM": 189, "AP_REPO": "r"})


def test_to_schema_dict(shipped: JobTypeRegistry, good: JobTypeRegistry) -> None:
    sleep = shipped["sleep"].to_schema_dict()
    assert sleep["name"] == "sleep"
    assert sleep["version"] == "1.0"
    assert sleep["description"].startswith("Sleep")
    assert sleep["executionDuration"] == 3700
    assert sleep["maxConcurrent"] == 0
    assert sleep["runner"] == "local"
    assert sleep["outputGlobs"] == []
    assert sleep["parameters"]["properties"]["seconds"]["units"] == "s"
    assert sleep["env"] == [
        {
            "name": "seconds",
            "type": "number",
            "units": "s",
            "default": 1,
            "min": 0,
            "max": 3600,
            "description": "How long to sleep.",
            "required": False,
            "enum": None,
        }
    ]

    render = good["render"].to_schema_dict()
    env = {entry["name"]: entry for entry in render["env"]}
    assert env["count"]["required"] is True
    assert env["ratio"]["min"] == 0 and env["ratio"]["max"] == 1
    assert env["mode"]["enum"] == ["fast", "slow"]
    assert env["limit"]["type"] == ["integer", "null"]

    # The returned schema is a copy.
    render["parameters"]["properties"].clear()
    assert good["render"].parameters_schema["properties"]


def test_defaults_through_refs_and_extensions(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "refs.yaml"
    path.write_text(
        "name: refs\ndescription: d\nversion: '1'\ncommand: [echo, '{n}']\n"
        "parameters:\n  type: object\n"
        "  $defs:\n    small: {type: integer, maximum: 5}\n"
        "  properties:\n    n: {$ref: '#/$defs/small', default: 7, x-widget: slider}\n"
    )
    assert [(p.field, p.reason) for p in validate_directory(tmp_path)] == [
        (
            "$.parameters.properties.n.default",
            "default 7 is invalid: 7 is greater than the maximum of 5",
        )
    ]
    path.write_text(path.read_text().replace("default: 7", "default: 4"))
    refs = load_job_type(path)
    assert refs.render_argv(refs.validate_parameters({})) == ["echo", "4"]
    with pytest.raises(ParameterError, match="^parameter 'n': 6 is greater"):
        refs.validate_parameters({"n": 6})


async def test_loads_from_any_working_directory(tmp_path: pathlib.Path) -> None:
    # The schema is found next to the package, not in the current directory.
    code = (
        "import sys\n"
        "from lsst.ts.ocps.jobs.job_types import JobTypeRegistry\n"
        "print(','.join(JobTypeRegistry.from_directory(sys.argv[1])))\n"
    )
    stdout = await run([sys.executable, "-c", code, str(SHIPPED_DIR)], tmp_path, {})
    assert {"echo", "exit_code", "prototype_ap", "sleep"} <= set(
        stdout.strip().split(",")
    )


def write_runner_type(directory: pathlib.Path, name: str, **keys: object) -> None:
    """Write a minimal job type ``name`` with extra top-level keys."""
    document = {
        "name": name,
        "description": "Runner test.",
        "version": "1",
        "command": ["true"],
        "parameters": {"type": "object", "properties": {}},
        **keys,
    }
    (directory / f"{name}.yaml").write_text(json.dumps(document))


def test_default_runner(tmp_path: pathlib.Path) -> None:
    write_runner_type(tmp_path, "plain")
    write_runner_type(tmp_path, "local_one", runner="local")
    write_runner_type(tmp_path, "slurm_one", runner="slurm")
    assert {
        name: job_type.runner
        for name, job_type in JobTypeRegistry.from_directory(tmp_path).items()
    } == {"plain": "local", "local_one": "local", "slurm_one": "slurm"}

    registry = JobTypeRegistry.from_directory(tmp_path, default_runner="slurm")
    assert registry["plain"].runner == "slurm"
    assert registry["plain"].to_schema_dict()["runner"] == "slurm"
    # An explicit runner wins over the default.
    assert registry["local_one"].runner == "local"
    assert load_job_type(tmp_path / "plain.yaml", default_runner="slurm").runner == (
        "slurm"
    )


def test_slurm_runner_options_checked_at_load(tmp_path: pathlib.Path) -> None:
    write_runner_type(
        tmp_path,
        "good",
        runner="slurm",
        runner_options={"cpus": 2, "memory": "2G", "partition": "normal"},
    )
    write_runner_type(tmp_path, "bad_cpus", runner="slurm", runner_options={"cpus": 0})
    write_runner_type(tmp_path, "typo", runner="slurm", runner_options={"cpu": 2})
    write_runner_type(
        tmp_path,
        "reserved",
        runner="slurm",
        runner_options={"sbatch_options": ["--output=/tmp/x"]},
    )
    # The local runner takes no options; it is not asked about them.
    write_runner_type(tmp_path, "local_opts", runner_options={"cpus": 0})

    with pytest.raises(JobTypeError) as caught:
        JobTypeRegistry.from_directory(tmp_path)
    found = {
        (pathlib.Path(p.path).name, p.field): p.reason for p in caught.value.problems
    }
    assert set(found) == {
        ("bad_cpus.yaml", "$.runner_options"),
        ("typo.yaml", "$.runner_options"),
        ("reserved.yaml", "$.runner_options"),
    }
    assert (
        "cpus=0 is not a positive integer"
        in found[("bad_cpus.yaml", "$.runner_options")]
    )
    assert (
        "unknown Slurm runner options ['cpu']"
        in found[("typo.yaml", "$.runner_options")]
    )
    assert "set by the runner" in found[("reserved.yaml", "$.runner_options")]
    # ocps validate reports the same problems.
    assert {
        (pathlib.Path(p.path).name, p.field) for p in validate_directory(tmp_path)
    } == (set(found))

    # With Slurm as the default runner, options of a type that names no
    # runner are Slurm options too.
    for name in ("bad_cpus", "typo", "reserved"):
        (tmp_path / f"{name}.yaml").unlink()
    with pytest.raises(JobTypeError) as caught:
        JobTypeRegistry.from_directory(tmp_path, default_runner="slurm")
    [problem] = caught.value.problems
    assert pathlib.Path(problem.path).name == "local_opts.yaml"
    assert problem.field == "$.runner_options"
    assert problem.reason.endswith("(runner 'slurm' is the configured default)")


def test_unknown_runner_at_load(tmp_path: pathlib.Path) -> None:
    write_runner_type(tmp_path, "plain")
    write_runner_type(tmp_path, "on_slurm", runner="slurm")
    write_runner_type(tmp_path, "on_k8s", runner="kubernetes")

    # Without the list of available runners any name loads (the job
    # manager then refuses a job whose runner it lacks).
    assert len(JobTypeRegistry.from_directory(tmp_path)) == 3

    with pytest.raises(JobTypeError) as caught:
        JobTypeRegistry.from_directory(tmp_path, runners=("local",))
    assert [
        (pathlib.Path(p.path).name, p.field, p.reason) for p in caught.value.problems
    ] == [
        (
            "on_k8s.yaml",
            "$.runner",
            "runner 'kubernetes' is not configured; available: local",
        ),
        (
            "on_slurm.yaml",
            "$.runner",
            "runner 'slurm' is not configured; available: local",
        ),
    ]
    assert "on_slurm.yaml: $.runner: runner 'slurm'" in str(caught.value)

    (tmp_path / "on_k8s.yaml").unlink()
    registry = JobTypeRegistry.from_directory(tmp_path, runners=("local", "slurm"))
    assert registry["on_slurm"].runner == "slurm"
    assert registry["plain"].runner == "local"
