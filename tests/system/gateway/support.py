"""The gateway tests' system: per EHR flavour, the sandbox EHR, a PostgreSQL cache and
``slotsync serve`` processes (started by :mod:`benchmarks.stacks`); loading the cache,
the EHR's state and the offers ``$find`` makes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.cache import claims
from app.cache.db import make_engine
from app.ehr.client import EhrClient
from app.settings import DEMO_API_KEY, DEMO_SCOPES
from app.sync.load import load_window
from app.sync.windows import day_start
from benchmarks.processes import Child, process_env
from sandbox_ehr.process import SandboxProcess
from tests.booking_support import DERMATOLOGY, OFFICE_VISIT, RULES_PATH, load_test_rules

HORIZON_DAYS = 10
SECRET = "gateway-test-secret"
WRITE_TIMEOUT = 2.0
AUTH = {"X-API-Key": DEMO_API_KEY}
READ_ONLY_KEY = "gateway-tests-read-only-key"
# One keep-alive client for every request of the tests, authenticated with the demo key.
http = httpx.Client(headers=AUTH, timeout=60)


@dataclass
class Gateway:
    """One EHR flavour end to end: sandbox, cache database, API process(es)."""

    flavour: str
    sandbox: SandboxProcess
    db_url: str
    env: dict[str, str]
    apis: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine: Engine = make_engine(self.db_url)
        self.rules = load_test_rules()

    @property
    def api(self) -> str:
        """The first API's FHIR base."""
        return f"{self.apis[0].url}/fhir"

    @property
    def ehr(self) -> str:
        return self.sandbox.base_url

    @property
    def control(self) -> str:
        return self.sandbox.control_url

    def client(self) -> EhrClient:
        return EhrClient(self.sandbox.base_url, fhir_version=self.flavour)

    def reset(self) -> None:
        """Fresh EHR state, no faults, empty overlay, cache loaded from the EHR."""
        assert http.delete(f"{self.control}/faults").status_code == 204
        http.post(f"{self.control}/config", json={"hold_seconds": 300}).raise_for_status()
        http.post(f"{self.control}/reset").raise_for_status()
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM slot_claims"))
            conn.execute(text("DELETE FROM slots"))
        self.load()
        http.delete(f"{self.control}/stats").raise_for_status()

    def load(self) -> None:
        with self.client() as client:
            start = day_start(datetime.now(UTC))
            load_window(self.engine, client, start, start + timedelta(days=HORIZON_DAYS))

    # -- looking at state ---------------------------------------------------------

    def claims(self) -> list[claims.Claim]:
        with Session(self.engine) as session:
            rows = session.execute(text("SELECT claim_id FROM slot_claims")).scalars().all()
            return [c for cid in set(rows) for c in claims.claims_of(session, cid)]

    def stats(self) -> dict[str, Any]:
        return http.get(f"{self.control}/stats").json()  # type: ignore[no-any-return]

    def requests(self, method: str, path_template: str) -> int:
        return int(self.stats()["requests"].get(f"{method} {path_template}", 0))

    def ehr_slot_status(self, slot_id: str) -> str:
        return str(http.get(f"{self.ehr}/Slot/{slot_id}").json()["status"])

    def fault(self, **rule: Any) -> None:
        http.post(f"{self.control}/faults", json=rule).raise_for_status()

    def find_slot_ids(self, day: date, **params: str) -> set[str]:
        """Slots offered by our ``$find`` for a day (dermatology office visits by default)."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        query = {
            "start": start.isoformat(),
            "end": (start + timedelta(days=1)).isoformat(),
            "visit-type": OFFICE_VISIT,
            "specialty": DERMATOLOGY,
        }
        response = http.get(
            f"{self.api}/Appointment/$find", params={**query, **params, "_count": "1000"}
        )
        assert response.status_code == 200, response.text
        return {
            ref["reference"].split("/", 1)[1]
            for entry in response.json().get("entry", [])
            if entry["resource"]["resourceType"] == "Appointment"
            for ref in entry["resource"].get("slot", [])
        }

    # -- offers -------------------------------------------------------------------

    def offers(
        self,
        day: date,
        *,
        visit_type: str = OFFICE_VISIT,
        specialty: str | None = None,
        practitioners: tuple[str, ...] = (),
        patient: str | None = None,
    ) -> list[dict[str, Any]]:
        """The proposed Appointments our ``$find`` offers for a day, in its order."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        query = [
            ("start", start.isoformat()),
            ("end", (start + timedelta(days=1)).isoformat()),
            ("visit-type", visit_type),
            ("_count", "1000"),
        ]
        query += [("specialty", specialty)] if specialty else []
        query += [("practitioner", ",".join(practitioners))] if practitioners else []
        query += [("patient-reference", patient)] if patient else []
        response = http.get(f"{self.api}/Appointment/$find", params=query)
        assert response.status_code == 200, response.text
        return [
            entry["resource"]
            for entry in response.json().get("entry", [])
            if entry["resource"]["resourceType"] == "Appointment"
        ]


def api_env(db_url: str, sandbox: SandboxProcess, flavour: str) -> dict[str, str]:
    """The API's environment: no broker (the API runs its tasks in process)."""
    values = {
        "SLOTSYNC_DATABASE_URL": db_url,
        "SLOTSYNC_EHR_BASE_URL": sandbox.base_url,
        "SLOTSYNC_EHR_FHIR_VERSION": flavour,
        # The sandbox declares $hold/$book in both versions; each flavour's stack drives
        # one booking path, named here rather than left to when the CapabilityStatement
        # is read (tests/integration/test_booking_path.py covers that choice).
        "SLOTSYNC_EHR_BOOKING": "appointment" if flavour == "r4" else "operations",
        "SLOTSYNC_EHR_TIMEOUT_SECONDS": str(WRITE_TIMEOUT),
        "SLOTSYNC_PROPOSAL_SECRET": SECRET,
        "SLOTSYNC_HORIZON_DAYS": str(HORIZON_DAYS),
        "SLOTSYNC_RULES_PATH": str(RULES_PATH),
        "SLOTSYNC_API_KEYS": json.dumps(
            {DEMO_API_KEY: DEMO_SCOPES, READ_ONLY_KEY: ["system/Appointment.read"]}
        ),
    }
    return process_env(values)
