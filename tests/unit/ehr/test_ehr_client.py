"""EHR client: retries, Retry-After, typed errors, paging, bearer and SMART backend auth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.ehr import transport
from app.ehr.auth import BearerAuth, SmartBackendAuth
from app.ehr.client import EhrClient
from app.ehr.errors import EhrAuthError, EhrProtocolError, EhrRejected, EhrTimeout, EhrUnavailable
from app.ehr.transport import RetryPolicy

BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}


@pytest.fixture
def sleeps(monkeypatch):
    delays: list[float] = []
    monkeypatch.setattr(transport.time, "sleep", delays.append)
    return delays


def scripted(*responses):
    calls: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, calls


def make(handler, **kw) -> EhrClient:
    return EhrClient(
        "http://ehr.test/fhir",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=4, base_delay=0.1, max_delay=2.0),
        **kw,
    )


def test_transient_failures_are_retried_with_backoff(sleeps):
    handler, calls = scripted(
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=BUNDLE),
    )
    assert make(handler).get_json("/Slot") == BUNDLE
    assert len(calls) == 3
    assert 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2  # exponential, jittered


def test_retry_after_is_honoured_in_seconds_and_as_a_date(sleeps):
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    handler, _ = scripted(
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.Response(429, headers={"Retry-After": later}),
        httpx.Response(200, json=BUNDLE),
    )
    make(handler).get_json("/Slot")
    assert sleeps[0] == 1.0
    assert 0.5 < sleeps[1] <= 3.0  # an HTTP-date has whole seconds


def test_exhausted_retries_raise_typed_errors(sleeps):
    handler, calls = scripted(*[httpx.ReadTimeout("slow")] * 4)
    with pytest.raises(EhrTimeout):
        make(handler).get_json("/Slot")
    assert len(calls) == 4
    handler, _ = scripted(*[httpx.Response(500)] * 4)
    with pytest.raises(EhrUnavailable) as info:
        make(handler).get_json("/Slot")
    assert info.value.status == 500


def test_client_errors_are_not_retried(sleeps):
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid"}],
    }
    handler, calls = scripted(httpx.Response(400, json=outcome))
    with pytest.raises(EhrRejected) as info:
        make(handler).get_json("/Slot")
    assert (info.value.status, info.value.outcome, len(calls)) == (400, outcome, 1)


def test_invalid_json_is_a_protocol_error(sleeps):
    handler, _ = scripted(httpx.Response(200, content=b'{"resourceType": "Bund'))
    with pytest.raises(EhrProtocolError):
        make(handler).get_json("/Slot")


def test_creating_posts_are_not_repeated_after_a_timeout(sleeps):
    handler, calls = scripted(httpx.ReadTimeout("slow"), httpx.Response(201, json={}))
    with pytest.raises(EhrTimeout):
        make(handler).post_json("/Subscription", {"resourceType": "Subscription"})
    assert len(calls) == 1  # the EHR may have created it: do not create a second one


def test_paging_follows_next_and_detects_loops(sleeps):
    page2 = {**BUNDLE, "link": [{"relation": "next", "url": "http://ehr.test/fhir/Slot?p=2"}]}
    handler, calls = scripted(
        httpx.Response(
            200,
            json={**BUNDLE, "link": [{"relation": "next", "url": "http://ehr.test/fhir/Slot?p=2"}]},
        ),
        httpx.Response(200, json=page2),
    )
    with pytest.raises(EhrProtocolError, match="paging loop"):
        list(make(handler).iter_pages("/Slot"))
    assert [str(c.url) for c in calls][1] == "http://ehr.test/fhir/Slot?p=2"


def test_bearer_token_is_sent():
    handler, calls = scripted(httpx.Response(200, json=BUNDLE))
    make(handler, auth=BearerAuth("abc")).get_json("/Slot")
    assert calls[0].headers["Authorization"] == "Bearer abc"


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class TokenEndpoint:
    def __init__(self, public_key, algorithm, lifetime=300):
        self.public_key = public_key
        self.algorithm = algorithm
        self.lifetime = lifetime
        self.issued: list[str] = []
        self.assertions: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["grant_type"] == "client_credentials"
        assert (
            form["client_assertion_type"]
            == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        )
        claims = jwt.decode(
            form["client_assertion"],
            self.public_key,
            algorithms=[self.algorithm],
            audience="https://auth.test/token",
        )
        header = jwt.get_unverified_header(form["client_assertion"])
        self.assertions.append({**claims, "kid": header.get("kid"), "scope": form["scope"]})
        token = f"tok-{len(self.issued) + 1}"
        self.issued.append(token)
        return httpx.Response(
            200, json={"access_token": token, "token_type": "bearer", "expires_in": self.lifetime}
        )


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_smart_backend_services_token_is_cached_until_expiry(algorithm):
    key = (
        rsa.generate_private_key(65537, 2048)
        if algorithm == "RS384"
        else ec.generate_private_key(ec.SECP384R1())
    )
    endpoint = TokenEndpoint(key.public_key(), algorithm)
    now = [1000.0]
    auth = SmartBackendAuth(
        client_id="slotsync",
        token_url="https://auth.test/token",
        private_key=_pem(key),
        key_id="key-1",
        algorithm=algorithm,
        scope="system/Slot.read",
        transport=httpx.MockTransport(endpoint),
        clock=lambda: now[0],
    )
    seen: list[str] = []

    def ehr(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json=BUNDLE)

    client = make(ehr, auth=auth)
    client.get_json("/Slot")
    client.get_json("/Slot")
    assert seen == ["Bearer tok-1", "Bearer tok-1"]
    claims = endpoint.assertions[0]
    assert claims["iss"] == claims["sub"] == "slotsync" and claims["kid"] == "key-1"
    assert claims["exp"] - claims["iat"] <= 300 and claims["jti"]
    now[0] += 290  # within the renewal margin of expiry
    client.get_json("/Slot")
    assert seen[-1] == "Bearer tok-2"


def test_smart_token_refreshed_once_on_401():
    key = rsa.generate_private_key(65537, 2048)
    endpoint = TokenEndpoint(key.public_key(), "RS384")
    auth = SmartBackendAuth(
        client_id="slotsync",
        token_url="https://auth.test/token",
        private_key=_pem(key),
        transport=httpx.MockTransport(endpoint),
    )
    sent: list[str] = []
    answers = [httpx.Response(401), httpx.Response(200, json=BUNDLE)]

    def ehr(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["Authorization"])  # the retry reuses the request object
        return answers.pop(0)

    make(ehr, auth=auth).get_json("/Slot")
    assert sent == ["Bearer tok-1", "Bearer tok-2"]


def test_smart_token_endpoint_refusal_is_typed():
    key = rsa.generate_private_key(65537, 2048)
    auth = SmartBackendAuth(
        client_id="slotsync",
        token_url="https://auth.test/token",
        private_key=_pem(key),
        transport=httpx.MockTransport(
            lambda r: httpx.Response(401, json={"error": "invalid_client"})
        ),
    )
    handler, calls = scripted(httpx.Response(200, json=BUNDLE))
    with pytest.raises(EhrAuthError):
        make(handler, auth=auth).get_json("/Slot")
    assert calls == []


def test_a_refused_count_is_halved_until_the_ehr_accepts_it_and_then_remembered():
    asked: list[int] = []

    def capped(request: httpx.Request) -> httpx.Response:
        count = int(request.url.params.get("_count", "0"))
        asked.append(count)
        if count > 50:
            return httpx.Response(400, json={"resourceType": "OperationOutcome", "issue": []})
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})

    client = EhrClient("http://ehr.test/fhir", transport=httpx.MockTransport(capped), page_size=400)
    pages = list(client.slot_search_pages(None, None))
    assert len(pages) == 1
    assert asked == [400, 200, 100, 50]
    assert client.page_size == 50
    asked.clear()
    list(client.schedule_pages())  # later searches start from the size that worked
    assert asked == [50]


def test_a_400_that_is_not_about_count_is_not_retried():
    asked: list[str] = []

    def refusing(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(400, json={"resourceType": "OperationOutcome", "issue": []})

    client = EhrClient("http://ehr.test/fhir", transport=httpx.MockTransport(refusing))
    with pytest.raises(EhrRejected):
        list(client.slot_search_pages(None, None))  # no _count sent: nothing to negotiate
    assert len(asked) == 1
