"""The OpenAPI document is complete and its examples are true: every write documents a
request body with examples, every search its parameters, every operation its
OperationOutcome errors; each example is valid FHIR (fhir.resources, STU3 like the
IG) and, sent to the app in front of a real sandbox EHR, is answered as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient
from fhir.resources.STU3 import get_fhir_model_class

from app.runtime import engine_for
from sandbox_ehr.process import start_sandbox
from tests.integration.api.conftest import EVERYTHING, api_settings, build_app
from tests.integration.security.conftest import seed_cache

WRITES = {"post", "put", "patch"}
# What a documented example must get: those that need no earlier state succeed; the
# others name things (an offer token, a hold, a slot) the EHR has not got: a 4xx.
EXPECTED = {
    ("post", "/fhir/Patient"): {200, 201},
    ("post", "/fhir/Coverage"): {201},
    ("put", "/fhir/Coverage/{coverage_id}"): {200, 201},
    ("post", "/fhir/Appointment/$find"): {200},
    ("get", "/fhir/Appointment"): {200},
    ("get", "/fhir/Appointment/$find"): {200},
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory: Path = tmp_path_factory.mktemp("examples")
    with start_sandbox(size=200, extra_args=("--horizon-days", "3")) as ehr:
        settings = api_settings(directory, ehr_base_url=ehr.base_url, auth_failure_limit=0)
        app = build_app(settings)
        engine = engine_for(settings.effective_database_url)
        seed_cache(engine)
        with TestClient(app, headers={"X-API-Key": EVERYTHING}) as test_client:
            yield test_client
        engine.dispose()


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()  # type: ignore[no-any-return]


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method, path, operation


def _examples(document: dict[str, Any]) -> list[tuple[str, str, str, str, Any]]:
    """(method, path, media type, example name, value) of every request body example."""
    out = []
    for method, path, operation in _operations(document):
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            for name, example in content.get("examples", {}).items():
                out.append((method, path, media, name, example["value"]))
    return out


def test_every_fhir_write_documents_a_body_with_examples(document: dict[str, Any]) -> None:
    writes = [(m, p, op) for m, p, op in _operations(document) if m in WRITES]
    fhir_writes = [(m, p, op) for m, p, op in writes if p.startswith("/fhir/")]
    assert (
        len(fhir_writes) >= 8
    )  # $hold, $book (type and instance), PATCH, Patient, Coverage x2, $find
    for method, path, operation in fhir_writes:
        body = operation.get("requestBody")
        assert body, f"{method} {path} has no request body"
        for media, content in body["content"].items():
            assert content.get("examples"), f"{method} {path} {media} has no examples"


def test_every_search_documents_its_parameters(document: dict[str, Any]) -> None:
    search = document["paths"]["/fhir/Appointment"]["get"]
    names = {p["name"] for p in search["parameters"] if p["in"] == "query"}
    assert {"patient", "status", "date", "practitioner"} <= names
    find = document["paths"]["/fhir/Appointment/$find"]["get"]
    names = {p["name"] for p in find["parameters"] if p["in"] == "query"}
    assert {"start", "end", "visit-type", "patient-reference", "_count", "_cursor"} <= names


def test_every_operation_documents_operation_outcome_errors(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        for code in ("4XX", "5XX"):
            content = operation["responses"][code]["content"]
            refs = {c["schema"].get("$ref") for c in content.values()}
            assert refs == {"#/components/schemas/OperationOutcome"}, (method, path, code)


def test_examples_are_valid_fhir(document: dict[str, Any]) -> None:
    examples = _examples(document)
    assert len(examples) >= 10
    for _method, path, _media, name, value in examples:
        if isinstance(value, list):  # JSON Patch
            assert all({"op", "path"} <= set(op) for op in value), (path, name)
            continue
        model = get_fhir_model_class(value["resourceType"])
        model.model_validate(value)  # raises with the element at fault


def _send(client: TestClient, method: str, path: str, media: str, value: Any) -> Any:
    url = path.replace("{appointment_id}", "appt-example").replace("{coverage_id}", "cov-example")
    return client.request(
        method, url, content=msgspec.json.encode(value), headers={"content-type": media}
    )


def test_every_example_is_answered_as_documented(
    client: TestClient, document: dict[str, Any]
) -> None:
    for method, path, media, name, value in _examples(document):
        response = _send(client, method, path, media, value)
        where = f"{method.upper()} {path} [{media}] example {name!r}: {response.text[:300]}"
        assert response.status_code < 500, where
        body = response.json()
        expected = EXPECTED.get((method, path))
        if expected is not None:
            assert response.status_code in expected, where
        if response.status_code >= 400:
            assert body["resourceType"] == "OperationOutcome", where
            get_fhir_model_class("OperationOutcome").model_validate(body)


def test_search_parameter_examples_are_answered(
    client: TestClient, document: dict[str, Any]
) -> None:
    for path in ("/fhir/Appointment", "/fhir/Appointment/$find"):
        parameters = document["paths"][path]["get"]["parameters"]
        query = {
            p["name"]: p["example"]
            for p in parameters
            if "example" in p and p["name"] not in ("_cursor", "_include")
        }
        if path.endswith("$find"):
            query.pop("patient-reference")  # the example patient of the sandbox is pat-1
            query["patient-reference"] = "Patient/pat-1"
        response = client.get(path, params=query)
        assert response.status_code in EXPECTED[("get", path)], (path, response.text[:300])
