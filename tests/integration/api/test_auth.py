"""Authentication and scopes on the real app: API keys, JWTs against a JWKS, admin, webhook."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from app.api.auth import AdminDep, WebhookDep, scope_grants
from app.api.responses import REQUEST_ID_EXTENSION
from tests.tokens import AUDIENCE, ISSUER, JwksServer, SigningKey

from .conftest import (
    ADMIN,
    EVERYTHING,
    FIND,
    METRICS,
    READER,
    WEBHOOK_SECRET,
    WRITER,
    api_settings,
    build_app,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_outcome(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    request_id = response.headers["x-request-id"]
    assert body["extension"] == [{"url": REQUEST_ID_EXTENSION, "valueString": request_id}]
    return body


# -- scope matching ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "required", "granted"),
    [
        (["system/Appointment.read"], "system/Appointment.read", True),
        (["system/Appointment.write"], "system/Appointment.read", False),
        (["system/*.read"], "system/Appointment.read", True),
        (["system/Appointment.*"], "system/Appointment.write", True),
        (["system/*.*"], "system/Coverage.write", True),
        (["system/Appointment.rs"], "system/Appointment.read", True),
        (["system/Appointment.r"], "system/Appointment.read", False),
        (["system/Appointment.cud"], "system/Appointment.write", True),
        (["system/Appointment.cruds"], "system/Appointment.write", True),
        (["system/Appointment.rs"], "system/Appointment.write", False),
        (["patient/Appointment.read"], "system/Appointment.read", False),
        (["user/*.*"], "system/Appointment.read", False),
        (["system/Patient.read"], "system/Appointment.read", False),
        (["system/*.*"], "slotsync/admin", False),
        (["*"], "slotsync/admin", False),
        (["slotsync/admin"], "slotsync/admin", True),
        (["system/Appointment.xyz"], "system/Appointment.read", False),
    ],
)
def test_scope_grants(held, required, granted):
    assert scope_grants(held, required) is granted


# -- API keys ---------------------------------------------------------------------


def test_no_credentials_is_401_operation_outcome(client):
    response = client.get(FIND)
    body = assert_outcome(response, 401, "login")
    assert "Bearer" in response.headers["www-authenticate"]
    assert "credentials" in body["issue"][0]["diagnostics"]


def test_api_key_with_read_scope_may_find(client):
    response = client.get(FIND, headers={"X-API-Key": READER})
    assert response.status_code == 200, response.text
    assert response.json()["resourceType"] == "Bundle"


def test_api_key_in_authorization_header(client):
    assert client.get(FIND, headers={"Authorization": f"ApiKey {READER}"}).status_code == 200


@pytest.mark.parametrize("key", [WRITER, ADMIN, METRICS])
def test_api_key_without_read_scope_is_403(client, key):
    response = client.get(FIND, headers={"X-API-Key": key})
    body = assert_outcome(response, 403, "forbidden")
    assert "system/Appointment.read" in body["issue"][0]["diagnostics"]
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "not-a-key"},
        {"X-API-Key": READER + "x"},
        {"X-API-Key": READER[:-1]},
        {"X-API-Key": READER.upper()},
        {"Authorization": f"Basic {READER}"},
        {"Authorization": "Bearer"},
        {"Authorization": "ApiKey "},
        {"X-API-Key": READER, "Authorization": "Bearer whatever"},
    ],
)
def test_bad_credentials_are_401(client, headers):
    assert_outcome(client.get(FIND, headers=headers), 401, "login")


def test_credential_in_query_string_is_ignored(client, signing_key):
    token = signing_key.token()
    assert client.get(f"{FIND}&access_token={token}").status_code == 401
    assert client.get(f"{FIND}&api_key={READER}").status_code == 401


# -- JWT bearer tokens --------------------------------------------------------------


def test_valid_jwt_with_scope(client, signing_key):
    assert client.get(FIND, headers=bearer(signing_key.token())).status_code == 200


def test_jwt_scp_list_claim(client, signing_key):
    token = signing_key.token(scope=None, scp=["system/Appointment.read"])
    assert client.get(FIND, headers=bearer(token)).status_code == 200


def test_jwt_lowercase_scheme(client, signing_key):
    headers = {"Authorization": f"bearer {signing_key.token()}"}
    assert client.get(FIND, headers=headers).status_code == 200


def test_jwt_wrong_scope_is_403(client, signing_key):
    token = signing_key.token(scope="system/Appointment.write patient/Appointment.read")
    assert_outcome(client.get(FIND, headers=bearer(token)), 403, "forbidden")


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"aud": "https://other.test"}, "audience"),
        ({"iss": "https://evil.test"}, "issuer"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"exp": None}, "invalid"),
    ],
)
def test_jwt_claim_failures_are_401(client, signing_key, claims, message):
    body = assert_outcome(
        client.get(FIND, headers=bearer(signing_key.token(**claims))), 401, "login"
    )
    assert message in body["issue"][0]["diagnostics"]


def test_jwt_within_leeway_is_accepted(client, signing_key):
    token = signing_key.token(exp=int(time.time()) - 5)
    assert client.get(FIND, headers=bearer(token)).status_code == 200


def test_jwt_signed_by_another_key_with_the_same_kid(client):
    impostor = SigningKey(kid="key-1")
    body = assert_outcome(client.get(FIND, headers=bearer(impostor.token())), 401, "login")
    assert "signature" in body["issue"][0]["diagnostics"]


def test_alg_none_is_refused(client):
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "scope": "system/*.*"},
        key=None,
        algorithm="none",
        headers={"kid": "key-1"},
    )
    assert_outcome(client.get(FIND, headers=bearer(token)), 401, "login")


def test_hs256_signed_with_the_public_key_is_refused(client, signing_key):
    """Algorithm confusion: the public key used as an HMAC secret must not verify."""
    import hashlib
    import hmac
    import json
    from base64 import urlsafe_b64encode

    def b64(data: bytes) -> bytes:
        return urlsafe_b64encode(data).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-1"}).encode())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "scope": "system/*.*"}
    payload = b64(json.dumps(claims).encode())
    signature = b64(
        hmac.new(signing_key.public_pem, header + b"." + payload, hashlib.sha256).digest()
    )
    token = (header + b"." + payload + b"." + signature).decode()
    assert_outcome(client.get(FIND, headers=bearer(token)), 401, "login")


@pytest.mark.parametrize("token", ["abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", "x" * 5000])
def test_malformed_tokens_are_401(client, token):
    assert_outcome(client.get(FIND, headers=bearer(token)), 401, "login")


def test_jwks_is_fetched_once_and_cached(client, signing_key, jwks):
    for _ in range(20):
        assert client.get(FIND, headers=bearer(signing_key.token())).status_code == 200
    assert jwks.fetches == 1


def test_unknown_kid_refetches_at_most_once_per_period(client, signing_key, jwks):
    assert client.get(FIND, headers=bearer(signing_key.token())).status_code == 200
    stranger = SigningKey(kid="key-unknown")
    for _ in range(10):
        assert_outcome(client.get(FIND, headers=bearer(stranger.token())), 401, "login")
    assert jwks.fetches == 1  # refetch only after min_refresh seconds


def test_key_rotation_is_picked_up(tmp_path: Path, signing_key):
    """A token signed with a key the issuer has just published is accepted (refetch on kid miss)."""
    server = JwksServer(signing_key)
    app = build_app(api_settings(tmp_path), server)
    app.state.authenticator.tokens.jwks.min_refresh = 0
    with TestClient(app) as client:
        assert client.get(FIND, headers=bearer(signing_key.token())).status_code == 200
        rotated = SigningKey(kid="key-2")
        server.keys.append(rotated)
        assert client.get(FIND, headers=bearer(rotated.token())).status_code == 200
    assert server.fetches == 2


def test_jwks_unavailable_is_503_not_401(tmp_path: Path, signing_key):
    server = JwksServer(signing_key)
    server.status = 500
    app = build_app(api_settings(tmp_path), server)
    with TestClient(app) as client:
        assert_outcome(client.get(FIND, headers=bearer(signing_key.token())), 503, "transient")
        # API keys keep working while the issuer is down
        assert client.get(FIND, headers={"X-API-Key": READER}).status_code == 200


def test_shared_key_mode(tmp_path: Path, signing_key):
    secret = "s" * 40
    app = build_app(api_settings(tmp_path, jwt_jwks_url=None, jwt_shared_key=secret))
    with TestClient(app) as client:
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": int(time.time()) + 60,
            "scope": "system/Appointment.read",
        }
        good = jwt.encode(claims, secret, algorithm="HS256")
        assert client.get(FIND, headers=bearer(good)).status_code == 200
        wrong = jwt.encode(claims, "t" * 40, algorithm="HS256")
        assert client.get(FIND, headers=bearer(wrong)).status_code == 401
        # an RS256 token is not accepted where only the shared key is configured
        assert client.get(FIND, headers=bearer(signing_key.token())).status_code == 401


def test_bearer_without_jwt_configuration_is_401(tmp_path: Path, signing_key):
    app = build_app(api_settings(tmp_path, jwt_jwks_url=None))
    with TestClient(app) as client:
        body = assert_outcome(client.get(FIND, headers=bearer(signing_key.token())), 401, "login")
        assert "API key" in body["issue"][0]["diagnostics"]


# -- admin and webhook mechanisms ------------------------------------------------------


def mount_protected(app: FastAPI) -> list[str]:
    """Routes shaped like the ones other packages add, guarded by the public dependencies."""
    calls: list[str] = []
    router = APIRouter()

    @router.post("/_guarded/admin")
    def resync(principal: AdminDep) -> dict:
        calls.append(f"resync by {principal.subject}")
        return {"queued": True}

    @router.post("/_guarded/webhook")
    def notify(_: WebhookDep) -> dict:
        calls.append("notified")
        return {}

    app.include_router(router)
    return calls


def test_admin_dependency(app, signing_key):
    calls = mount_protected(app)
    with TestClient(app) as client:
        assert client.post("/_guarded/admin", headers={"X-API-Key": ADMIN}).status_code == 200
        assert client.post("/_guarded/admin", headers={"X-API-Key": EVERYTHING}).status_code == 200
        assert_outcome(
            client.post("/_guarded/admin", headers={"X-API-Key": READER}), 403, "forbidden"
        )
        assert_outcome(client.post("/_guarded/admin"), 401, "login")
        wildcard = signing_key.token(scope="system/*.* user/*.*")
        assert_outcome(client.post("/_guarded/admin", headers=bearer(wildcard)), 403, "forbidden")
        admin_token = signing_key.token(scope="slotsync/admin")
        assert client.post("/_guarded/admin", headers=bearer(admin_token)).status_code == 200
    assert len(calls) == 3
    assert all("resync by api-key:" in c or "consumer-backend" in c for c in calls)
    assert not any(ADMIN in c for c in calls)  # the subject is a fingerprint, not the key


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Webhook-Secret": "wrong"}, 401),
        ({"X-Webhook-Secret": WEBHOOK_SECRET[:-1]}, 401),
        ({"Authorization": f"Basic {WEBHOOK_SECRET}"}, 401),
        ({"X-API-Key": EVERYTHING}, 401),
        ({"X-Webhook-Secret": WEBHOOK_SECRET}, 200),
        ({"Authorization": f"Bearer {WEBHOOK_SECRET}"}, 200),
    ],
)
def test_webhook_secret_dependency(app, headers, status):
    calls = mount_protected(app)
    with TestClient(app) as client:
        response = client.post("/_guarded/webhook", headers=headers, json={})
    assert response.status_code == status, response.text
    assert calls == (["notified"] if status == 200 else [])


# -- /metrics protection --------------------------------------------------------------


def test_metrics_needs_metrics_or_admin_scope(client):
    assert_outcome(client.get("/metrics"), 401, "login")
    assert_outcome(client.get("/metrics", headers={"X-API-Key": READER}), 403, "forbidden")
    for key in (METRICS, ADMIN):
        response = client.get("/metrics", headers={"X-API-Key": key})
        assert response.status_code == 200
        assert "slotsync_http_requests_total" in response.text


def test_metrics_public_when_configured(tmp_path: Path):
    app = build_app(api_settings(tmp_path, metrics_public=True))
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 200


def test_health_endpoints_need_no_credentials(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
