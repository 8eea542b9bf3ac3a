"""Rendered proposed Appointments are valid STU3 argo-appt and R4 resources."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.appointment import Appointment as R4Appointment
from fhir.resources.STU3.appointment import Appointment as STU3Appointment

from app.core.domain import Actor, Participant, ProposedAppointment
from app.core.times import second_instant
from app.fhir.appointment import (
    ARGO_APPT_PROFILE,
    DISPLAYS,
    display_of,
    render_displays,
    to_r4,
    to_stu3,
)
from rules.appointment_id import IDENTIFIER_SYSTEM, decode, fhir_id
from rules.loader import load_rules
from rules.request import PatientInfo
from tests.paths import REPO
from tests.unit.rules.factories import (
    DERM,
    SECRET,
    at,
    example_world,
    vt,
)

IG = REPO / "tests" / "fixtures" / "ig"  # copies of the Argonaut Scheduling IG files used here
ARGO_APPT = IG / "StructureDefinition-argo-appt.json"


def argo_appt_problems(resource: dict[str, Any]) -> list[str]:
    """The argo-appt profile's required elements, read from its StructureDefinition."""
    profile = json.loads(ARGO_APPT.read_text())
    problems = []
    for element in profile["snapshot"]["element"]:
        path = element["path"].split(".")[1:]
        if not path or element.get("min", 0) < 1:
            continue
        if len(path) == 1 and path[0] not in resource:
            problems.append(f"missing {element['path']}")
        if len(path) == 2:
            for item in resource.get(path[0], []):
                if path[1] not in item:
                    problems.append(f"missing {element['path']}")
        repeated = isinstance(resource.get(path[0]), list) and len(resource[path[0]]) != 1
        if element.get("max") == "1" and len(path) == 1 and repeated:
            problems.append(f"{element['path']} must occur once")
    return problems


def proposed() -> ProposedAppointment:
    return ProposedAppointment(
        id="TOKEN-abc_123",
        start=datetime(2026, 3, 9, 13, 0, tzinfo=UTC),
        end=datetime(2026, 3, 9, 13, 30, tzinfo=UTC),
        slot_ids=("s1", "s2", "r1"),
        participants=(
            Participant("Practitioner/pr-1", "Dr One"),
            Participant("Location/clinic-1"),
            Participant("Device/dev-1", required="optional"),
            Participant("Patient/p-1", "Jo Doe"),
        ),
        service_types=(vt("consult"),),
        specialties=(DERM,),
        appointment_type="http://hl7.org/fhir/v2/0276|ROUTINE",
        visit_type_display="Dermatology consultation",
    )


PERIOD = (datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 12, tzinfo=UTC))


def test_stu3_rendering_is_argo_appt() -> None:
    from app.core.domain import Actor

    actors = {"Location/clinic-1": Actor("Location/clinic-1", display="Napa Office")}
    resource = to_stu3(proposed(), PERIOD, actors)
    STU3Appointment.model_validate(resource)
    assert argo_appt_problems(resource) == []
    assert resource["meta"] == {"profile": [ARGO_APPT_PROFILE]}
    assert resource["id"] == fhir_id("TOKEN-abc_123")
    assert resource["identifier"] == [{"system": IDENTIFIER_SYSTEM, "value": "TOKEN-abc_123"}]
    assert resource["status"] == "proposed"
    assert (resource["start"], resource["end"], resource["minutesDuration"]) == (
        "2026-03-09T13:00:00Z",
        "2026-03-09T13:30:00Z",
        30,
    )
    assert resource["serviceType"] == [
        {
            "coding": [
                {
                    "system": "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type",
                    "code": "consult",
                    "display": "CONSULTATION",
                }
            ],
            "text": "Dermatology consultation",
        }
    ]
    assert resource["specialty"][0]["coding"][0]["display"] == "Dermatology"
    assert resource["appointmentType"]["coding"][0] == {
        "system": "http://hl7.org/fhir/v2/0276",
        "code": "ROUTINE",
        "display": "Routine appointment - default if not valued",
    }
    assert resource["slot"] == [{"reference": f"Slot/{s}"} for s in ("s1", "s2", "r1")]
    assert resource["participant"] == [
        {
            "actor": {"reference": "Practitioner/pr-1", "display": "Dr One"},
            "required": "required",
            "status": "needs-action",
        },
        {
            "actor": {"reference": "Location/clinic-1", "display": "Napa Office"},
            "required": "required",
            "status": "needs-action",
        },
        {"actor": {"reference": "Device/dev-1"}, "required": "optional", "status": "needs-action"},
        {
            "actor": {"reference": "Patient/p-1", "display": "Jo Doe"},
            "required": "required",
            "status": "needs-action",
        },
    ]
    assert resource["requestedPeriod"] == [
        {"start": "2026-03-09T00:00:00Z", "end": "2026-03-12T00:00:00Z"}
    ]


def test_argo_appt_check_finds_missing_elements() -> None:
    resource = to_stu3(proposed(), PERIOD, {})
    del resource["requestedPeriod"]
    del resource["participant"][0]["status"]
    resource["participant"][1] = {"required": "required", "status": "needs-action"}
    assert sorted(argo_appt_problems(resource)) == [
        "missing Appointment.participant.actor",
        "missing Appointment.participant.status",
        "missing Appointment.requestedPeriod",
    ]


def test_r4_rendering_uses_r4_systems_and_validates() -> None:
    resource = to_r4(proposed(), PERIOD, {})
    R4Appointment.model_validate(resource)
    assert "meta" not in resource
    assert resource["appointmentType"]["coding"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/v2-0276"
    )
    assert resource["appointmentType"]["coding"][0]["display"].startswith("Routine")
    assert resource["status"] == "proposed"


def test_instant_is_utc_z_and_refuses_naive_times() -> None:
    minus_five = datetime.fromisoformat("2026-03-09T08:00:00-05:00")
    assert second_instant(minus_five) == "2026-03-09T13:00:00Z"
    with pytest.raises(ValueError):
        second_instant(datetime(2026, 3, 9, 8, 0))


def test_display_table_is_generated_from_the_ig_expansions() -> None:
    expansions = json.loads((IG / "expansions.json").read_text())
    namespace: dict[str, Any] = {}
    exec(render_displays(expansions), namespace)  # the generator's output is the table
    assert namespace["DISPLAYS"] == DISPLAYS
    code_system = json.loads((IG / "CodeSystem-visit-type.json").read_text())
    for concept in code_system["concept"]:
        assert display_of(vt(concept["code"])) == concept["display"]
    assert display_of("http://terminology.hl7.org/CodeSystem/v2-0276|WALKIN") is not None
    assert display_of("http://local|x") is None


def test_example_rules_compose_valid_appointments_for_every_visit_type() -> None:
    rules = load_rules(REPO / "rules" / "examples" / "multi-clinic.yaml")
    world = example_world()
    start, end = at("2026-03-10 00:00"), at("2026-03-11 00:00")
    patient = PatientInfo(ref="Patient/p-1", display="Jo Doe", new_patient=True)
    result = world.find(rules, start, end, now=start - timedelta(days=3), patient=patient)
    offered = {a.service_types[0].rpartition("|")[2] for a in result.appointments}
    expected = {
        *("office-visit", "follow-up", "new-patient", "physical", "well-child", "vaccine"),
        *("consult", "minor-surgery", "ekg", "echo", "x-ray", "ultrasound", "mri"),
    }
    assert offered == expected
    for appt in result.appointments:
        payload = decode(appt.id, SECRET)
        assert payload.slot_ids == appt.slot_ids
        stu3 = to_stu3(appt, (start, end), world.actors)
        STU3Appointment.model_validate(stu3)
        assert argo_appt_problems(stu3) == []
        R4Appointment.model_validate(to_r4(appt, (start, end), world.actors))


def test_elements_come_in_the_order_fhir_lists_them() -> None:
    period = PERIOD
    order = ["resourceType", "id", "meta", "identifier", "status", "serviceType", "specialty",
             "appointmentType", "start", "end", "minutesDuration", "slot", "participant",
             "requestedPeriod"]  # fmt: skip
    stu3 = to_stu3(proposed(), period, {})
    r4 = to_r4(proposed(), period, {})
    assert list(stu3) == [k for k in order if k in stu3] and "meta" in stu3
    assert list(r4) == [k for k in order if k in r4] and "meta" not in r4
    assert stu3["requestedPeriod"] == [
        {"start": second_instant(period[0]), "end": second_instant(period[1])}
    ]


def test_a_participant_without_display_takes_the_actors() -> None:
    appt = proposed()
    nameless = Participant(ref=appt.participants[0].ref, display=None, required="required")
    appt = ProposedAppointment(**{**{f: getattr(appt, f) for f in appt.__slots__},
                                  "participants": (nameless,)})  # fmt: skip
    actor = Actor(ref=nameless.ref, display="Dr From Catalog")
    rendered = to_stu3(appt, PERIOD, {nameless.ref: actor})
    assert rendered["participant"][0]["actor"] == {
        "reference": nameless.ref, "display": "Dr From Catalog"
    }  # fmt: skip
