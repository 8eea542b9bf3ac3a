"""A consumer app's backend, end to end: find -> register Patient -> hold -> book ->
retrieve -> cancel, against slotsync (the demo by default), printing each step.

    make demo                                   # in one terminal
    .venv/bin/python examples/consumer_walkthrough.py   # in another

Only httpx and the standard library: this is what your backend does over HTTP.
Options: --base-url (default http://127.0.0.1:8000/fhir), --api-key (default: the
demo key, or $SLOTSYNC_KEY), --days-ahead (the first day searched, default 1),
--record FILE (every response as JSON lines, for checking them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

VISIT_TYPES = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type"
PROPOSAL_SYSTEM = "urn:slotsync:proposal"
FHIR_JSON = "application/fhir+json"
DEMO_KEY = "slotsync-demo-key"

# The patient this walkthrough registers; registering again finds the same record.
PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:example:consumer-app", "value": "walkthrough-0001"}],
    "active": True,
    "name": [{"family": "Walker", "given": ["Pat"]}],
    "telecom": [{"system": "phone", "value": "555-555-0101", "use": "mobile"}],
    "gender": "female",
    "birthDate": "1990-05-17",
}


class Walkthrough:
    """The six calls, each printed, and (with ``record``) kept for checking."""

    def __init__(self, client: httpx.Client, record: list[dict[str, Any]] | None = None):
        self.client = client
        self.record = record

    def call(self, step: str, method: str, url: str, **kwargs: Any) -> Any:
        response = self.client.request(method, url, **kwargs)
        body = response.json()
        print(f"\n== {step}: {method} {response.request.url.path} -> {response.status_code}")
        if self.record is not None:
            self.record.append({"step": step, "status": response.status_code, "body": body})
        if response.status_code >= 400:
            issues = [i.get("diagnostics", i.get("code")) for i in body.get("issue", [])]
            raise SystemExit(f"{step} failed ({response.status_code}): {'; '.join(issues)}")
        return body

    def run(self, days_ahead: int) -> None:
        fhir_version = self.call("capabilities", "GET", "/metadata")["fhirVersion"]
        print(f"FHIR {fhir_version}")

        # 1. find: office visits over a week, three at a time (Bundle.total counts all)
        start = datetime.now(UTC).date() + timedelta(days=days_ahead)
        found = self.call(
            "find",
            "GET",
            "/Appointment/$find",
            params={
                "start": str(start),
                "end": str(start + timedelta(days=7)),
                "visit-type": f"{VISIT_TYPES}|office-visit",
                "_count": "3",
            },
        )
        offers = [e["resource"] for e in found.get("entry", []) if e["search"]["mode"] == "match"]
        print(f"{found['total']} offers match; the first {len(offers)}:")
        for offer in offers:
            who = ", ".join(p["actor"].get("display", "") for p in offer["participant"])
            print(f"  {offer['start']}  {who}")
        if not offers:
            raise SystemExit("no offers: is the demo loaded? (make demo)")
        offer = offers[0]
        token = next(i["value"] for i in offer["identifier"] if i["system"] == PROPOSAL_SYSTEM)

        # 2. register the patient (or find the existing record: 200 instead of 201)
        patient = self.call("register patient", "POST", "/Patient", json=PATIENT)
        print(f"Patient/{patient['id']}")

        # 3. hold the offer: its slots leave $find at once; the hold expires
        held = self._appointment(
            self.call(
                "hold",
                "POST",
                "/Appointment/$hold",
                json=_parameters(("appt-id", "valueString", token)),
            )
        )
        print(f"held Appointment/{held['id']} ({held['status']}) at {held['start']}")

        # 4. book the hold for the patient
        booked = self._appointment(
            self.call(
                "book",
                "POST",
                f"/Appointment/{held['id']}/$book",
                json=_parameters(("patient-id", "valueString", patient["id"])),
            )
        )
        print(f"booked Appointment/{booked['id']} ({booked['status']})")

        # 5. retrieve: the patient's appointments, and the one just booked
        mine = self.call(
            "patient's appointments",
            "GET",
            "/Appointment",
            params={"patient": f"Patient/{patient['id']}", "status": "booked"},
        )
        print(f"{len(mine.get('entry', []))} booked appointments for Patient/{patient['id']}")
        read = self.call("read appointment", "GET", f"/Appointment/{booked['id']}")
        print(f"Appointment/{read['id']} is {read['status']}")

        # 6. cancel (JSON Patch); the slots come back to $find once the EHR confirms
        cancelled = self.call(
            "cancel",
            "PATCH",
            f"/Appointment/{booked['id']}",
            content=json.dumps([{"op": "replace", "path": "/status", "value": "cancelled"}]),
            headers={"Content-Type": "application/json-patch+json"},
        )
        print(f"Appointment/{cancelled['id']} is {cancelled['status']}")

    @staticmethod
    def _appointment(bundle: dict[str, Any]) -> dict[str, Any]:
        """$hold and $book answer a Bundle holding the EHR's Appointment."""
        return next(
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment"
        )


def _parameters(*values: tuple[str, str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, kind: value} for name, kind, value in values],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/fhir")
    parser.add_argument("--api-key", default=os.environ.get("SLOTSYNC_KEY", DEMO_KEY))
    parser.add_argument("--days-ahead", type=int, default=1)
    parser.add_argument("--record", help="write every response as JSON lines to this file")
    args = parser.parse_args(argv)
    record: list[dict[str, Any]] = []
    headers = {"X-API-Key": args.api_key, "Accept": FHIR_JSON}
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=30) as client:
        try:
            Walkthrough(client, record).run(args.days_ahead)
        finally:
            if args.record:
                with open(args.record, "w", encoding="utf-8") as out:
                    out.writelines(json.dumps(r) + "\n" for r in record)
    print("\nDone: found, registered, held, booked, retrieved and cancelled.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
