"""Schemathesis against our own OpenAPI, in process: no 5xx, no response outside the schema.

Every operation the app documents is fuzzed, its documented examples first (the
examples phase sends each one), so the routers other packages add
(``/webhook``, ``/admin``, more of ``/fhir``) are covered as soon as they exist.
Bounded for CI: few examples per operation, no example database.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.runtime import engine_for
from sandbox_ehr.process import start_sandbox
from tests.integration.api.conftest import EVERYTHING, WEBHOOK_SECRET, api_settings, build_app
from tests.tokens import JwksServer, SigningKey

from .conftest import seed_cache

# Loaded at import: schemathesis builds one test per operation at collection time
# (its fixture-based loader does not support this pytest). The cache lives in a
# temporary directory that the module fixture below removes.
_DIRECTORY = Path(tempfile.mkdtemp(prefix="slotsync-fuzz-"))
# The write side forwards to the EHR: fuzz it against a real (sandbox) one, whose
# refusals must come back as 4xx, never as a 5xx of ours.
_EHR = start_sandbox(size=300, extra_args=("--horizon-days", "7"))
atexit.register(_EHR.stop)  # also when collection deselects every test of this module
# auth_failure_limit=0: throttling would turn the fuzzer's bad credentials into 429s and
# hide what the operations do (tests/integration/api/test_auth_throttle.py covers it)
_SETTINGS = api_settings(
    _DIRECTORY, ehr_base_url=_EHR.base_url, ehr_timeout_seconds=10, auth_failure_limit=0
)
APP = build_app(_SETTINGS, JwksServer(SigningKey(kid="fuzz")))
ENGINE = engine_for(_SETTINGS.effective_database_url)
seed_cache(ENGINE)


@schemathesis.serializer("application/json+fhir")
def _legacy_fhir_json(ctx, value) -> bytes:
    """The DSTU2-era FHIR JSON type, which the API accepts and documents: plain JSON."""
    return json.dumps(value).encode()  # json: the fuzzer's integers may exceed 64 bits


schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _remove_directory() -> Iterator[None]:
    yield
    _EHR.stop()
    ENGINE.dispose()
    shutil.rmtree(_DIRECTORY, ignore_errors=True)


CREDENTIAL_HEADERS = {"authorization", "x-api-key", "x-webhook-secret"}


def authenticate(case) -> dict[str, str]:
    """Replace generated credential headers by one valid credential for the surface.

    Schemathesis fills the declared security headers with random values; a request
    carrying two credentials is refused (401) by design, so ours must be the only one.
    Its ``ignored_auth`` check still sends each request without credentials.
    """
    if case.headers:
        for name in [h for h in case.headers if h.lower() in CREDENTIAL_HEADERS]:
            del case.headers[name]
    if case.path.startswith("/webhook"):
        return {"X-Webhook-Secret": WEBHOOK_SECRET}
    return {"X-API-Key": EVERYTHING}


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_openapi_operations(case):
    # A FHIR operation's parameters have cross-field rules (end after start, a bounded
    # window) that OpenAPI cannot state, so a schema-valid request may rightly get 400:
    # "valid data accepted" is not a property of this API; every other check applies.
    case.call_and_validate(headers=authenticate(case), excluded_checks=[positive_data_acceptance])


def test_every_surface_is_fuzzed():
    paths = {result.ok().path for result in schema.get_all_operations()}
    assert "/fhir/Appointment/$find" in paths
    assert {"/healthz", "/readyz"} <= paths
