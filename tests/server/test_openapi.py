"""The OpenAPI document the live server gives out: a valid OpenAPI 3.1 document (by
openapi-spec-validator) that says what every route returns, that it wants a bearer token, and
that its errors are problem documents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from server.test_api import serving
from shipyard.config import load_project
from shipyard.model import ReleaseState, TaskState
from shipyard.service import Runtime
from support import copy_example

PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The document as the server gives it out (over the example on SQLite: the document
    is the same on either database)."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("SHIPYARD_DATABASE_URL", raising=False)
        rt = Runtime.open(load_project(copy_example(tmp_path_factory.mktemp("openapi") / "shop")))
    try:
        with serving(rt) as url:
            response = httpx.get(url + "/api/v1/openapi.json", timeout=30)
            assert response.status_code == 200, response.text
            yield response.json()
    finally:
        rt.close()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield f"{method.upper()} {path}", operation


def test_the_live_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)  # raises with the first fault it finds
    assert document["openapi"].startswith("3.1")
    assert len(list(_operations(document))) == 20


def test_every_route_wants_a_bearer_token(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for name, operation in _operations(document):
        assert operation.get("security") == [{"bearerAuth": []}], name
        assert "401" in operation["responses"] and "429" in operation["responses"], name


def test_every_route_says_what_it_returns(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name, operation in _operations(document):
        [ok] = [s for s in operation["responses"] if s.startswith("2")]
        schema = operation["responses"][ok]["content"]["application/json"]["schema"]
        # A named model with its fields, not a bare object.
        model = schemas[schema["$ref"].rsplit("/", 1)[1]]
        assert model["properties"] and model.get("required"), name
    assert set(schemas["TaskState"]["enum"]) == {s.value for s in TaskState}
    assert set(schemas["ReleaseState"]["enum"]) == {s.value for s in ReleaseState}
    task = schemas["Task"]["properties"]
    assert task["state"] == {"$ref": "#/components/schemas/TaskState"}
    assert task["inputs"]["type"] == "object"  # open by nature: the job kind says what


def test_every_error_is_a_problem_document(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert "hint" in problem["properties"]
    for name, operation in _operations(document):
        errors = {s: r for s, r in operation["responses"].items() if not s.startswith("2")}
        assert errors, name
        for status, response in errors.items():
            assert response["content"] == {
                PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, (name, status)
    # FastAPI's own validation error shape is not what this API sends.
    assert "HTTPValidationError" not in document["components"]["schemas"]
    rate_limited = document["paths"]["/api/v1/tasks"]["get"]["responses"]["429"]
    assert rate_limited["headers"]["Retry-After"]["required"] is True
