"""The CapabilityStatement is valid FHIR of the EHR's version and claims what the API does."""

from __future__ import annotations

from tests.fhir_checks import fhir_model
from tests.system.gateway.support import Gateway, http


def test_capability_statement_is_truthful(stack: Gateway) -> None:
    r = http.get(f"{stack.api}/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    statement = r.json()
    fhir_model(stack.flavour, "CapabilityStatement").model_validate(statement)
    assert statement["fhirVersion"] == ("3.0.1" if stack.flavour == "stu3" else "4.0.1")
    assert set(statement["patchFormat"]) == {"application/json-patch+json", "application/fhir+json"}
    [rest] = statement["rest"]
    assert {op["name"] for op in rest["operation"]} == {"find", "hold", "book"}
    assert rest["security"]["description"]
    resources = {res["type"]: res for res in rest["resource"]}
    appointment = resources["Appointment"]
    assert {i["code"] for i in appointment["interaction"]} == {"read", "search-type", "patch"}
    assert {p["name"] for p in appointment["searchParam"]} == {
        "patient", "status", "date", "practitioner"
    }  # fmt: skip
    assert {i["code"] for i in resources["Patient"]["interaction"]} == {"create"}
    assert {i["code"] for i in resources["Coverage"]["interaction"]} == {"create", "update"}

    # every declared interaction answers (not 404/405) on the live API
    assert http.get(f"{stack.api}/Appointment", params={"patient": "pat-1"}).status_code == 200
    declared = [("PATCH", "/Appointment/x"), ("POST", "/Patient"), ("POST", "/Coverage"),
                ("PUT", "/Coverage/x"), ("POST", "/Appointment/$hold"),
                ("POST", "/Appointment/$book")]  # fmt: skip
    for method, path in declared:
        status = http.request(method, f"{stack.api}{path}", json={}).status_code
        assert status not in (404, 405), (method, path, status)
