"""/openapi.json, /docs and /redoc: open in development, behind the admin credential (or
off) in production, as SLOTSYNC_API_DOCS says."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.integration.api.conftest import ADMIN, READER, api_settings, build_app

PAGES = ("/docs", "/redoc")


def served(tmp_path, **overrides) -> TestClient:
    return TestClient(build_app(api_settings(tmp_path, **overrides)))


def test_development_serves_the_schema_and_the_pages_to_anyone(tmp_path):
    with served(tmp_path) as client:
        assert client.get("/openapi.json").json()["info"]["title"] == "slotsync"
        assert all(client.get(page).status_code == 200 for page in PAGES)


def test_admin_mode_serves_the_schema_to_the_admin_credential_only(tmp_path):
    with served(tmp_path, api_docs="admin") as client:
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/openapi.json", headers={"X-API-Key": READER}).status_code == 403
        schema = client.get("/openapi.json", headers={"X-API-Key": ADMIN})
        assert schema.status_code == 200 and "/fhir/Appointment/$find" in schema.json()["paths"]
        assert all(client.get(page).status_code == 404 for page in PAGES)


def test_off_serves_none_of_them(tmp_path):
    with served(tmp_path, api_docs="off") as client:
        for path in ("/openapi.json", *PAGES):
            assert client.get(path, headers={"X-API-Key": ADMIN}).status_code == 404


def test_production_defaults_to_admin_mode():
    from app.settings import Settings

    assert Settings(api_docs="auto", environment="development").effective_api_docs == "public"
    production = Settings.model_construct(api_docs="auto", environment="production")
    assert production.effective_api_docs == "admin"
