"""Every failure is an OperationOutcome with the right status and the correlation id."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from fhir.resources.STU3.operationoutcome import OperationOutcome

from app.api.responses import REQUEST_ID_EXTENSION
from app.ehr.errors import EhrProtocolError, EhrRejected, EhrTimeout, EhrUnavailable
from tests.factories import T0_DAY

from .conftest import FIND, READER

AUTH = {"X-API-Key": READER}
SECRET_DETAIL = "Jane Doe born 1970-01-01 MRN 123456"


def outcome(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    OperationOutcome.model_validate(body)  # a valid STU3 resource
    request_id = response.headers["x-request-id"]
    assert body["extension"] == [{"url": REQUEST_ID_EXTENSION, "valueString": request_id}]
    assert "Traceback" not in response.text
    assert int(response.headers["content-length"]) == len(response.content)
    return body


def mount_failures(app: FastAPI) -> None:
    router = APIRouter()

    @router.get("/fhir/boom")
    def boom() -> None:
        raise RuntimeError(SECRET_DETAIL)

    @router.get("/fhir/ehr/{kind}")
    def ehr(kind: str) -> None:
        issue = {"severity": "error", "code": "business-rule", "diagnostics": "slot taken"}
        raise {
            "timeout": EhrTimeout(f"GET http://ehr/Patient?name={SECRET_DETAIL}"),
            "down": EhrUnavailable("503 after retries", status=503),
            "garbage": EhrProtocolError("not JSON"),
            "refused": EhrRejected(
                "422", status=422, outcome={"resourceType": "OperationOutcome", "issue": [issue]}
            ),
            "unauthorised": EhrRejected("401", status=401),
        }[kind]

    @router.post("/fhir/echo")
    async def echo(request: Request) -> dict:
        return {"received": len(await request.body()), "json": await request.json()}

    app.include_router(router)


@pytest.fixture
def failing(app: FastAPI):
    mount_failures(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_bad_parameter_is_400_naming_it(client):
    body = outcome(client.get(FIND.replace(T0_DAY, "yesterday"), headers=AUTH), 400)
    assert body["issue"][0]["expression"] == ["start"]


def test_unknown_path_is_404(client):
    outcome(client.get("/fhir/Nothing/here", headers=AUTH), 404)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405(client, method):
    response = client.request(method, FIND, headers=AUTH)
    body = outcome(response, 405)
    assert body["issue"][0]["code"] == "not-supported"
    assert "GET" in response.headers["allow"]


def test_unexpected_exception_is_500_without_details(failing):
    body = outcome(failing.get("/fhir/boom"), 500)
    assert body["issue"][0]["severity"] == "fatal"
    assert SECRET_DETAIL not in str(body)
    assert "RuntimeError" not in str(body)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("timeout", 504, "timeout"),
        ("down", 502, "transient"),
        ("garbage", 502, "transient"),
        ("refused", 422, "business-rule"),
        ("unauthorised", 502, "transient"),
    ],
)
def test_ehr_failures_map_to_gateway_statuses(failing, kind, status, code):
    body = outcome(failing.get(f"/fhir/ehr/{kind}"), status)
    assert body["issue"][0]["code"] == code
    assert SECRET_DETAIL not in str(body)
    assert "http://ehr" not in str(body)


def test_ehr_refusal_passes_the_ehr_explanation(failing):
    body = outcome(failing.get("/fhir/ehr/refused"), 422)
    assert body["issue"][0]["diagnostics"] == "slot taken"


# -- correlation id ----------------------------------------------------------------------


def test_sane_request_id_is_kept(client):
    response = client.get(FIND, headers={"X-Request-ID": "abc-123.def:7"})
    assert response.headers["x-request-id"] == "abc-123.def:7"
    assert response.json()["extension"][0]["valueString"] == "abc-123.def:7"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 200, 'quote"d', "<script>", "ü-umlaut"])
def test_insane_request_id_is_replaced(client, bad):
    response = client.get(FIND, headers={"X-Request-ID": bad.encode()})
    assert response.headers["x-request-id"] != bad
    assert len(response.headers["x-request-id"]) == 32


def test_success_carries_a_request_id(client):
    response = client.get(FIND, headers=AUTH)
    assert response.status_code == 200
    assert len(response.headers["x-request-id"]) == 32


def test_request_ids_are_unique(client):
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


# -- content negotiation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({}, "", "application/fhir+json"),
        ({"Accept": "application/fhir+json"}, "", "application/fhir+json"),
        ({"Accept": "application/json"}, "", "application/json"),
        ({"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, "", "application/fhir+json"),
        ({"Accept": "application/json, application/fhir+json"}, "", "application/fhir+json"),
        ({}, "&_format=json", "application/fhir+json"),
        ({}, "&_format=application/fhir+json", "application/fhir+json"),
        ({}, "&_format=application%2Ffhir%2Bjson", "application/fhir+json"),
        ({}, "&_format=application/json", "application/json"),
        ({"Accept": "application/xml"}, "&_format=json", "application/fhir+json"),
    ],
)
def test_negotiated_content_type(client, headers, query, expected):
    response = client.get(FIND + query, headers={**AUTH, **headers})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == expected
    assert response.json()["resourceType"] == "Bundle"


def test_json_also_for_errors(client):
    response = client.get(FIND, headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"Accept": "application/fhir+xml"}, ""),
        ({"Accept": "application/xml, text/turtle"}, ""),
        ({"Accept": "application/fhir+json;q=0"}, ""),
        ({}, "&_format=xml"),
        ({}, "&_format=application/fhir+xml"),
        ({}, "&_format=ttl"),
    ],
)
def test_unsupported_format_is_406(client, headers, query):
    body = outcome(client.get(FIND + query, headers={**AUTH, **headers}), 406)
    assert body["issue"][0]["code"] == "not-supported"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "multipart/form-data", None]
)
def test_unsupported_body_media_type_is_415(failing, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = failing.post("/fhir/echo", content=b'{"a": 1}', headers=headers)
    outcome(response, 415)


def test_json_bodies_reach_the_handler_intact(failing):
    payload = {
        "resourceType": "Parameters",
        "parameter": [{"name": "x", "valueString": "y" * 5000}],
    }
    for content_type in (
        "application/fhir+json",
        "application/json",
        "application/fhir+json; charset=utf-8",
    ):
        response = failing.post("/fhir/echo", json=payload, headers={"Content-Type": content_type})
        assert response.status_code == 200, response.text
        assert response.json()["json"] == payload


# -- body limits --------------------------------------------------------------------------


def test_declared_oversized_body_is_413(failing, settings):
    body = b'{"a": "' + b"x" * settings.max_body_bytes + b'"}'
    response = failing.post(
        "/fhir/echo", content=body, headers={"Content-Type": "application/json"}
    )
    assert outcome(response, 413)["issue"][0]["code"] == "too-costly"


def test_streamed_oversized_body_is_413(failing, settings):
    def chunks():
        yield b'{"a": "'
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = failing.post(
        "/fhir/echo", content=chunks(), headers={"Content-Type": "application/json"}
    )
    outcome(response, 413)


def test_body_limit_applies_outside_fhir_too(failing, settings):
    response = failing.post("/healthz", content=b"x" * (settings.max_body_bytes + 1))
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deeply_nested_json_is_400(failing, depth):
    body = b"[" * depth + b"]" * depth
    response = failing.post(
        "/fhir/echo", content=body, headers={"Content-Type": "application/json"}
    )
    assert "nests deeper" in outcome(response, 400)["issue"][0]["diagnostics"]


def test_nesting_within_the_limit_is_accepted(failing):
    body = '{"a":' * 60 + "1" + "}" * 60
    response = failing.post(
        "/fhir/echo", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b'{"a": NaN}', b"[1,]"])
def test_invalid_json_is_400(failing, body):
    response = failing.post(
        "/fhir/echo", content=body, headers={"Content-Type": "application/json"}
    )
    assert outcome(response, 400)["issue"][0]["diagnostics"].startswith(
        "request body is not valid JSON"
    )


def test_non_numeric_content_length_is_400(failing):
    response = failing.post(
        "/fhir/echo",
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": "abc"},
    )
    assert response.status_code == 400
