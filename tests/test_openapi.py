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

"""Tests of the OpenAPI document and of the response checks built on it."""

import json
from typing import Any

import aiohttp
import openapi_spec_validator
import pytest
import yaml
from lsst.ts.ocps.rest.app import API_PREFIX, OPENAPI_PATH, create_app
from support.rest import OpenApiValidator

PART_ROUTE = "/job/{job_id}/{part}"
PARTS = ("phase", "parameters", "results", "error")


def load_document() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI_PATH.read_text())


def test_document_is_valid_openapi_3_1() -> None:
    document = load_document()
    assert document["openapi"].startswith("3.1")
    openapi_spec_validator.validate(document)


def test_document_has_required_components() -> None:
    schemas = load_document()["components"]["schemas"]
    for name in ("Job", "ErrorSummary", "Result", "JobType", "Error"):
        assert name in schemas, name


def test_every_route_is_documented_and_back(rest_manager: Any) -> None:
    app = create_app(rest_manager)
    served: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        assert route.resource is not None
        path = route.resource.canonical.removeprefix(API_PREFIX)
        if path == PART_ROUTE:
            served |= {(route.method, f"/job/{{job_id}}/{part}") for part in PARTS}
        else:
            served.add((route.method, path))

    documented: set[tuple[str, str]] = set()
    for path, item in load_document()["paths"].items():
        for method in ("get", "put", "post", "delete", "patch"):
            if method in item:
                documented.add((method.upper(), path))
    assert served == documented


def test_every_operation_declares_errors() -> None:
    for path, item in load_document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            assert "500" in responses, (method, path)
            if method in ("put", "post", "delete"):
                assert "401" in responses, (method, path)
                assert operation.get("security"), (method, path)
            if "{job_id}" in path:
                assert "400" in responses and "404" in responses, (method, path)


def test_validator_rejects_what_the_document_does_not_allow() -> None:
    validator = OpenApiValidator(load_document())
    job_path = f"{API_PREFIX}/job/abc"

    # A good error body passes; the same status with a wrong body fails.
    validator.check("GET", job_path, 404, "application/json", b'{"message": "x"}')
    with pytest.raises(AssertionError, match="does not match"):
        validator.check("GET", job_path, 404, "application/json", b'{"msg": "x"}')
    # Undeclared status, method, path and content type all fail.
    with pytest.raises(AssertionError, match="not declared"):
        validator.check("GET", job_path, 418, "application/json", b"{}")
    with pytest.raises(AssertionError, match="not documented"):
        validator.check("PATCH", job_path, 200, "application/json", b"{}")
    with pytest.raises(AssertionError, match="no documented path"):
        validator.check("GET", f"{API_PREFIX}/jobs", 200, "application/json", b"{}")
    with pytest.raises(AssertionError, match="content type"):
        validator.check("GET", job_path, 404, "text/html", b"<p>gone</p>")
    # A job without its phase fails; an unknown phase fails.
    job = {
        "jobId": "abc",
        "type": "sleep",
        "version": "1",
        "phase": "COMPLETED",
        "creationTime": "2026-12-03T17:04:46.123Z",
        "parameters": {},
        "results": [],
    }
    validator.check("GET", job_path, 200, "application/json", json.dumps(job).encode())
    for broken in (
        {**job, "phase": "DONE"},
        {k: v for k, v in job.items() if k != "phase"},
    ):
        with pytest.raises(AssertionError, match="does not match"):
            validator.check(
                "GET", job_path, 200, "application/json", json.dumps(broken).encode()
            )


async def test_responses_are_checked(
    rest_api: aiohttp.ClientSession, openapi_validator: OpenApiValidator
) -> None:
    before = openapi_validator.checked
    async with rest_api.get("health") as response:
        await response.json()
    async with rest_api.get("job/nope1") as response:
        assert response.status == 404
        await response.json()
    assert openapi_validator.checked == before + 2
