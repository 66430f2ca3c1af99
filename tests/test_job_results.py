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

"""Tests of the result-file protocol in `lsst.ts.ocps.jobs.results`."""

import json
import pathlib

import pytest
from lsst.ts.ocps.jobs import job_manager, results
from lsst.ts.ocps.jobs.results import (
    MAX_ERROR_MESSAGE,
    RESULT_FILE_NAME,
    collect_outputs,
    declared_error,
)
from lsst.ts.ocps.runners.local import PRIVATE_DIR_NAME


def write_result(work_dir: pathlib.Path, value: object) -> None:
    (work_dir / RESULT_FILE_NAME).write_text(json.dumps(value))


def test_names_still_importable_from_job_manager() -> None:
    for name in ("MAX_DECLARED_RESULTS", "MAX_ERROR_MESSAGE", "RESULT_FILE_NAME"):
        assert getattr(job_manager, name) is getattr(results, name)
        assert name in job_manager.__all__


def test_no_result_file(tmp_path: pathlib.Path) -> None:
    assert collect_outputs(tmp_path, []) == ({}, [], [])


@pytest.mark.parametrize(
    "text, error",
    [
        ("{not json", f"{RESULT_FILE_NAME} is not valid JSON: "),
        ("[1, 2]", f"{RESULT_FILE_NAME} is not a JSON object"),
        (b"\xff\xfe".decode("latin-1"), f"{RESULT_FILE_NAME} is not valid JSON: "),
    ],
)
def test_unusable_result_file(tmp_path: pathlib.Path, text: str, error: str) -> None:
    (tmp_path / RESULT_FILE_NAME).write_bytes(text.encode("latin-1"))
    job_info, found, ignored = collect_outputs(tmp_path, [])
    assert job_info["result_error"].startswith(error)
    assert "result" not in job_info
    assert (found, ignored) == ([], [])


def test_globs_stay_inside_the_work_dir(tmp_path: pathlib.Path) -> None:
    work_dir = tmp_path / "work"
    (work_dir / "out").mkdir(parents=True)
    (work_dir / PRIVATE_DIR_NAME).mkdir()
    (work_dir / "out" / "b.txt").write_text("bb")
    (work_dir / "out" / "a.json").write_text("{}")
    (work_dir / PRIVATE_DIR_NAME / "stdout.log").write_text("private")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (work_dir / "out" / "link.txt").symlink_to(outside)

    globs = ["out/*", "**/*.log", "../*.txt", str(outside)]
    job_info, found, ignored = collect_outputs(work_dir, globs)
    assert [(item.id, item.size, item.mime_type) for item in found] == [
        ("out/a.json", 2, "application/json"),
        ("out/b.txt", 2, "text/plain"),
    ]
    assert found[0].uri == (work_dir / "out" / "a.json").resolve().as_uri()
    assert (job_info, ignored) == ({}, [])


def test_declared_results_after_files_and_limit(tmp_path: pathlib.Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    entries = [
        {"id": "file.txt", "uri": "file:///taken"},
        {"id": "d1", "uri": "butler://d1", "size": 3, "run": "r"},
        "not an object",
        {"id": "d2", "uri": "butler://d2"},
        {"id": "d3", "uri": "butler://d3"},
    ]
    write_result(tmp_path, {"results": entries, "other": 1})
    job_info, found, ignored = collect_outputs(tmp_path, ["*.txt"], limit=4)

    assert [item.id for item in found] == ["file.txt", "d1", "d2"]
    assert found[1].size == 3 and found[1].details == {"run": "r"}
    assert ignored == [
        "result entry 0: has id 'file.txt', which another result has",
        "result entry 2: is a string, not an object",
        "result entries 4 to 4: beyond the limit of 4 entries",
    ]
    # Nothing the job wrote is lost: what was not taken stays.
    assert job_info["result"] == {
        "results": [entries[0], entries[2], entries[4]],
        "other": 1,
    }


def test_all_declared_results_taken_removes_the_key(tmp_path: pathlib.Path) -> None:
    write_result(tmp_path, {"results": [{"id": "a", "uri": "s3://a"}]})
    job_info, found, ignored = collect_outputs(tmp_path, [])
    assert job_info == {"result": {}}
    assert [item.uri for item in found] == ["s3://a"] and ignored == []


def test_results_not_a_list(tmp_path: pathlib.Path) -> None:
    write_result(tmp_path, {"results": {"id": "a"}})
    job_info, found, ignored = collect_outputs(tmp_path, [])
    assert ignored == ["result entries: 'results' is an object, not an array"]
    assert job_info == {"result": {"results": {"id": "a"}}} and found == []


@pytest.mark.parametrize(
    "job_info, expected",
    [
        ({}, (None, None)),
        ({"result": {"other": 1}}, (None, None)),
        ({"result": {"error": {"message": "  bad input \n"}}}, ("bad input", None)),
        (
            {"result": {"error": "bad"}},
            (None, "must be an object with a non-empty string 'message'"),
        ),
        (
            {"result": {"error": {"message": " "}}},
            (None, "must be an object with a non-empty string 'message'"),
        ),
    ],
)
def test_declared_error(
    job_info: dict, expected: tuple[str | None, str | None]
) -> None:
    assert declared_error(job_info) == expected


def test_declared_error_is_cut() -> None:
    message, problem = declared_error(
        {"result": {"error": {"message": "x" * (MAX_ERROR_MESSAGE + 10)}}}
    )
    assert problem is None and message is not None
    assert len(message) == MAX_ERROR_MESSAGE and message.endswith("x...")
