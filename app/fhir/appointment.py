"""Proposed appointments as FHIR Appointment JSON (STU3 Argonaut ``argo-appt``, R4).

Built as plain dicts because ``$find`` answers are a hot path (fhir.resources
validation costs ~100x ``msgspec.json.encode``); the tests validate every shape with
fhir.resources STU3 and R4B models and the argo-appt required elements.

``Appointment.id`` is a short hash of the proposal token and the token itself is
in ``identifier`` (system ``urn:slotsync:proposal``): see
:mod:`rules.appointment_id` for why. Participants include Device actors for
required equipment; argo-appt lists only Location/Patient/Practitioner/
HealthcareService as actor targets, but the EHR must know which device is used,
and the base Appointment allows it.

:data:`DISPLAYS` is generated, not typed: ``python -m app.fhir.appointment
<ig>/expansions.json`` prints it from the IG's value set expansions (visit-type,
appt-type with v2-0276, specialty); a test checks it is up to date.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from app.core.domain import Actor, ProposedAppointment, split_token
from app.core.times import second_instant
from rules.appointment_id import IDENTIFIER_SYSTEM, fhir_id

ARGO_APPT_PROFILE = "http://fhir.org/guides/argonaut-scheduling/StructureDefinition/argo-appt"
V2_0276_STU3 = "http://hl7.org/fhir/v2/0276"
V2_0276_R4 = "http://terminology.hl7.org/CodeSystem/v2-0276"
_R4_SYSTEMS = {V2_0276_STU3: V2_0276_R4}
_STU3_SYSTEMS = {r4: stu3 for stu3, r4 in _R4_SYSTEMS.items()}
_EXPANDED_VALUE_SETS = ("visit-type", "appt-type", "specialty")

# BEGIN GENERATED DISPLAYS
DISPLAYS: dict[str, dict[str, str]] = {
    "http://fhir.org/guides/argonaut-scheduling/CodeSystem/appt-type": {
        "new-patient": "New Patient",
        "post-op": "Post-Op",
        "pre-op": "Pre-Op",
        "same-day": "Same Day",
        "urgent": "Urgent",
    },
    "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type": {
        "breast-imaging": "BREAST IMAGING",
        "consult": "CONSULTATION",
        "ct": "COMPUTED TOMOGRAPHY SCAN(CT)",
        "dental": "DENTAL",
        "dxa": "DUAL-ENERGY X-RAY ABSORPTIOMETRY(DXA)",
        "echo": "ECHOCARDIOGRAPHY(ECHO)",
        "echo-stresstest": "ECHOCARDIOGRAPHY(ECHO) STRESS TEST",
        "ed-followup": "EDUCATION FOLLOW UP",
        "eeg": "ELECTROENCEPHALOGRAPHY(EEG)",
        "egd": "ESOPHAGOGASTRODUODENOSCOPY(EGD)",
        "ekg": "ELECTROCARDIOGRAM(EKG)",
        "evaluation": "EVALUATION",
        "flu-shot-clinic": "INFLUENZA VACCINATION CLINIC",
        "fluoroscopy": "FLUOROSCOPY",
        "follow-up": "FOLLOW UP",
        "home-health": "HOME HEALTH VISIT",
        "injection": "INJECTION",
        "inter-rad": "INTERVENTIONAL RADIOLOGY",
        "lab": "LABORATORY TESTS",
        "minor-surgery": "MINOR SURGERY",
        "mri": "MAGNETIC RESONANCE IMAGING(MRI)",
        "new-patient": "NEW PATIENT",
        "nuc-med": "NUCLEAR MEDICINE",
        "occup-therapy": "OCCUPATIONAL THERAPY",
        "office-visit": "OFFICE VISIT",
        "physical": "PHYSICAL",
        "post-op": "POST-OPERATIVE(POST-OP)",
        "pre-admit-testing": "PRE-ADMISSION TESTING VISIT",
        "pre-op": "PRE-OPERATIVE(PRE-OP)",
        "procedure": "PROCEDURE",
        "same-day": "SAME DAY",
        "stress-test": "STRESS TEST",
        "surgery": "SURGERY",
        "treatment": "TREATMENT",
        "ultrasound": "ULTRASOUND",
        "urgent": "URGENT",
        "vaccine": "VACCINATION",
        "vision": "VISION",
        "walk-in": "WALK IN",
        "well-child": "WELL CHILD",
        "x-ray": "X-RAY",
    },
    "http://hl7.org/fhir/v2/0276": {
        "CHECKUP": "A routine check-up, such as an annual physical",
        "EMERGENCY": "Emergency appointment",
        "FOLLOWUP": "A follow up visit from a previous appointment",
        "ROUTINE": "Routine appointment - default if not valued",
        "WALKIN": "A previously unscheduled walk-in visit",
    },
    "http://snomed.info/sct": {
        "3711000175101": "Behavioral health",
        "3721000175105": "Home health care",
        "3811000175106": "Skilled nursing specialty",
        "394537008": "Pediatrics",
        "394538003": "Pediatric neurology",
        "394539006": "Pediatric surgery",
        "394576009": "Accident & emergency",
        "394577000": "Anesthetics",
        "394578005": "Audiological medicine",
        "394579002": "Cardiology",
        "394580004": "Clinical genetics",
        "394581000": "Community medicine",
        "394582007": "Dermatology",
        "394583002": "Endocrinology",
        "394584008": "Gastroenterology",
        "394585009": "Obstetrics and gynecology",
        "394586005": "Gynecology",
        "394587001": "Psychiatry",
        "394588006": "Child and adolescent psychiatry",
        "394589003": "Nephrology",
        "394590007": "Thoracic medicine",
        "394591006": "Neurology",
        "394592004": "Clinical oncology",
        "394593009": "Medical oncology",
        "394594003": "Ophthalmology",
        "394595002": "Pathology",
        "394596001": "Chemical pathology",
        "394597005": "Histopathology",
        "394598000": "Immunopathology",
        "394599008": "Neuropathology",
        "394600006": "Clinical pharmacology",
        "394601005": "Clinical physiology",
        "394602003": "Rehabilitation - specialty",
        "394603008": "Cardiothoracic surgery",
        "394604002": "Ear, nose and throat surgery",
        "394605001": "Oral surgery",
        "394606000": "Restorative dentistry",
        "394607009": "Pediatric dentistry",
        "394608004": "Orthodontics",
        "394609007": "General surgery",
        "394610002": "Neurosurgery",
        "394611003": "Plastic surgery - specialty",
        "394612005": "Urology",
        "394649004": "Nuclear medicine - specialty",
        "394732004": "Surgical specialties",
        "394733009": "Medical specialties",
        "394734003": "Radiological specialties",
        "394801008": "Trauma & orthopedics",
        "394802001": "General medicine",
        "394803006": "Clinical hematology",
        "394804000": "Clinical cytogenetics and molecular genetics",
        "394805004": "Clinical immunology/allergy",
        "394806003": "Palliative medicine",
        "394807007": "Infectious diseases (specialty)",
        "394808002": "Genito-urinary medicine",
        "394809005": "Clinical neuro-physiology",
        "394810000": "Rheumatology",
        "394811001": "Geriatric medicine",
        "394812008": "Dental medicine specialties",
        "394813003": "Medical ophthalmology",
        "394814009": "General practice (specialty)",
        "394815005": "Mental handicap (specialty)",
        "394816006": "Mental illness (specialty)",
        "394817002": "Forensic psychiatry",
        "394818007": "Old age psychiatry",
        "394819004": "Blood transfusion (specialty)",
        "394820005": "Medical microbiology",
        "394821009": "Occupational medicine",
        "394882004": "Pain management (specialty)",
        "394913002": "Psychotherapy (specialty)",
        "394914008": "Radiology - specialty",
        "394915009": "General pathology (specialty)",
        "394916005": "Hematopathology",
        "408439002": "Allergy - specialty",
        "408440000": "Public health medicine",
        "408441001": "Endodontics - specialty",
        "408442008": "Hemophilia - specialty",
        "408443003": "General medical practice",
        "408444009": "General dental practice",
        "408445005": "Neonatology",
        "408446006": "Gynecological oncology",
        "408447002": "Respite care - specialty",
        "408448007": "Tropical medicine",
        "408449004": "Surgical dentistry",
        "408450004": "Sleep studies - specialty",
        "408454008": "Clinical microbiology",
        "408455009": "Interventional radiology - specialty",
        "408456005": "Thoracic surgery",
        "408457001": "Maxillofacial surgery",
        "408459003": "Pediatric cardiology",
        "408460008": "Prosthodontics",
        "408461007": "Periodontics",
        "408462000": "Burns care",
        "408463005": "Vascular surgery",
        "408464004": "Colorectal surgery",
        "408465003": "Oral and maxillofacial surgery",
        "408466002": "Cardiac surgery",
        "408467006": "Adult mental illness - specialty",
        "408468001": "Learning disability - specialty",
        "408469009": "Breast surgery",
        "408470005": "Obstetrics",
        "408471009": "Cardiothoracic transplantation",
        "408472002": "Hepatology",
        "408473007": "Public health dentistry",
        "408474001": "Hepatobiliary and pancreatic surgery",
        "408475000": "Diabetic medicine",
        "408477008": "Transplantation surgery",
        "408478003": "Critical care medicine",
        "408479006": "Upper gastrointestinal surgery",
        "408480009": "Clinical immunology",
        "409967009": "Toxicology",
        "409968004": "Preventive medicine",
        "410001006": "Military medicine",
        "410005002": "Dive medicine",
        "416304004": "Osteopathic manipulative medicine",
        "417887005": "Pediatric otolaryngology",
        "418002000": "Pediatric oncology",
        "418018006": "Dermatologic surgery",
        "418058008": "Pediatric gastroenterology",
        "418112009": "Pulmonary medicine",
        "418535003": "Pediatric immunology",
        "418652005": "Pediatric hematology",
        "418862001": "Pediatric infectious diseases",
        "418960008": "Otolaryngology",
        "419043006": "Urological oncology",
        "419170002": "Pediatric pulmonology",
        "419192003": "Internal medicine",
        "419215006": "Pediatric intensive care",
        "419321007": "Surgical oncology",
        "419365004": "Pediatric nephrology",
        "419472004": "Pediatric rheumatology",
        "419610006": "Pediatric endocrinology",
        "419677000": "Pediatric neurology oncology",
        "419772000": "Family practice",
        "419815003": "Radiation oncology",
        "419917007": "Pediatric emergency medicine",
        "419983000": "Pediatric ophthalmology",
        "420112009": "Pediatric bone marrow transplantation",
        "420208008": "Pediatric genetics",
        "420419008": "Eye muscle surgery",
        "420708009": "Refractive surgery",
        "420985004": "Vitreo-retinal surgery",
        "421582004": "Corneal surgery",
        "421661004": "Blood banking and transfusion medicine (specialty)",
        "421885009": "Glaucoma surgery",
        "422171003": "Ophthalmic plastic surgery",
        "422191005": "Ophthalmic surgery",
        "422349000": "Cataract surgery",
        "445715009": "Blood and marrow transplantation",
        "715184008": "Aerospace medicine",
        "718359001": "Regenerative medicine",
    },
}
# END GENERATED DISPLAYS


def display_of(token: str) -> str | None:
    """The IG's display for a coded value (STU3 or R4 system), when the IG knows it."""
    system, code = split_token(token)
    system = _STU3_SYSTEMS.get(system or "", system)
    return DISPLAYS.get(system or "", {}).get(code)


def to_stu3(
    appt: ProposedAppointment,
    requested_period: tuple[datetime, datetime],
    actors: Mapping[str, Actor],
) -> dict[str, Any]:
    """An Argonaut (STU3) proposed Appointment: ``status`` proposed, participants needs-action."""
    return _appointment(appt, requested_period, actors, r4=False)


def to_r4(
    appt: ProposedAppointment,
    requested_period: tuple[datetime, datetime],
    actors: Mapping[str, Actor],
) -> dict[str, Any]:
    """The same appointment as an R4 Appointment (R4 code systems, no Argonaut profile)."""
    return _appointment(appt, requested_period, actors, r4=True)


def _appointment(
    appt: ProposedAppointment,
    requested_period: tuple[datetime, datetime],
    actors: Mapping[str, Actor],
    *,
    r4: bool,
) -> dict[str, Any]:
    """The resource, its elements made in the order FHIR's JSON lists them (a ``$find``
    page renders a hundred: no second pass to order them).

    Only the coded concepts are shared between resources (see :func:`_cached_concept`);
    everything else is the resource's own, since fhir.resources' validation and the
    booking path change what they are given."""
    resource: dict[str, Any] = {"resourceType": "Appointment", "id": fhir_id(appt.id)}
    if not r4:
        resource["meta"] = {"profile": [ARGO_APPT_PROFILE]}
    resource["identifier"] = [{"system": IDENTIFIER_SYSTEM, "value": appt.id}]
    resource["status"] = "proposed"
    if appt.service_types:
        resource["serviceType"] = [
            _cached_concept(token, r4, appt.visit_type_display if n == 0 else None)
            for n, token in enumerate(appt.service_types)
        ]
    if appt.specialties:
        resource["specialty"] = [_cached_concept(token, r4, None) for token in appt.specialties]
    if appt.appointment_type:
        resource["appointmentType"] = _cached_concept(appt.appointment_type, r4, None)
    resource["start"] = second_instant(appt.start)
    resource["end"] = second_instant(appt.end)
    resource["minutesDuration"] = appt.minutes
    if appt.slot_ids:
        resource["slot"] = [{"reference": f"Slot/{slot_id}"} for slot_id in appt.slot_ids]
    resource["participant"] = [
        _participant(p.ref, p.display, p.required, p.status, actors) for p in appt.participants
    ]
    resource["requestedPeriod"] = [
        {"start": second_instant(requested_period[0]), "end": second_instant(requested_period[1])}
    ]
    return resource


def _participant(
    ref: str | None,
    display: str | None,
    required: str,
    status: str,
    actors: Mapping[str, Actor],
) -> dict[str, Any]:
    actor: dict[str, str] = {}
    if ref:
        actor["reference"] = ref
        known = actors.get(ref)
        display = display or (known.display if known else None)
    if display:
        actor["display"] = display
    return {"actor": actor, "required": required, "status": status}


@lru_cache(maxsize=4096)
def _cached_concept(token: str, r4: bool, text: str | None) -> dict[str, Any]:
    """Every $find answer repeats a handful of concepts: built once and shared by the
    resources, which are only ever serialised (never changed once built)."""
    systems = _R4_SYSTEMS if r4 else {}
    system, code = split_token(token)
    coding: dict[str, str] = {}
    if system:
        coding["system"] = systems.get(system, system)
    coding["code"] = code
    display = display_of(token)
    if display:
        coding["display"] = display
    concept: dict[str, Any] = {"coding": [coding]}
    if text or display:
        concept["text"] = text or display
    return concept


def render_displays(expansions: Mapping[str, Any]) -> str:
    """Python source of :data:`DISPLAYS` from the IG's ``expansions.json`` Bundle."""
    tables: dict[str, dict[str, str]] = {}
    for entry in expansions["entry"]:
        value_set = entry["resource"]
        if value_set["url"].rsplit("/", 1)[1] not in _EXPANDED_VALUE_SETS:
            continue
        for concept in value_set["expansion"]["contains"]:
            tables.setdefault(concept["system"], {})[concept["code"]] = concept["display"]
    lines = ["DISPLAYS: dict[str, dict[str, str]] = {"]
    for system in sorted(tables):
        lines.append(f"    {json.dumps(system)}: {{")
        lines.extend(
            f"        {json.dumps(code)}: {json.dumps(tables[system][code])},"
            for code in sorted(tables[system])
        )
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        sys.stdout.write(render_displays(json.load(handle)))
