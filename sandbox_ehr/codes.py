"""Code systems, profile URLs and the synthetic organisation contract's code tables.

One place for every literal URL and code the sandbox emits, so that the generator,
the renderers and the tests agree with the shared organisation contract (the same
codes the example rules file uses).
"""

from __future__ import annotations

SNOMED = "http://snomed.info/sct"
VISIT_TYPE_SYSTEM = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type"
ROOM_KIND_SYSTEM = "http://slotsync.example/fhir/CodeSystem/room-kind"
DEVICE_KIND_SYSTEM = "http://slotsync.example/fhir/CodeSystem/device-kind"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
MRN_SYSTEM = "http://sandbox-ehr.example/fhir/sid/mrn"
TIMEZONE_EXT = "http://hl7.org/fhir/StructureDefinition/timezone"

IG = "http://fhir.org/guides/argonaut-scheduling"
PREFETCH_SLOT_PROFILE = f"{IG}/StructureDefinition/prefetch-slot"
SLOT_BUNDLE_PROFILE = f"{IG}/StructureDefinition/slot-bundle"
AVAIL_BUNDLE_PROFILE = f"{IG}/StructureDefinition/avail-bundle"
ARGO_APPT_PROFILE = f"{IG}/StructureDefinition/argo-appt"
SCHED_NOTIF_PROFILE = f"{IG}/StructureDefinition/argo-sched-notif"
SUB_NOTIF_PROFILE = f"{IG}/StructureDefinition/argo-sub-notif"
PAYLOAD_PROFILE_EXT = f"{IG}/StructureDefinition/extension-subscription-payloadprofile"
TRIGGER_EVENT_EXT = f"{IG}/StructureDefinition/extension-subscription-triggerevent"
EVENT_FOCUS_EXT = f"{IG}/StructureDefinition/extension-subscription-eventfocus"
STATUS_REASON_EXT = f"{IG}/StructureDefinition/extension-status-reason"

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
BACKPORT_STATUS_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription-status-r4"
BACKPORT_HEARTBEAT_EXT = f"{BACKPORT}/StructureDefinition/backport-heartbeat-period"
BACKPORT_PAYLOAD_EXT = f"{BACKPORT}/StructureDefinition/backport-payload-content"
BACKPORT_TIMEOUT_EXT = f"{BACKPORT}/StructureDefinition/backport-timeout"
SCHEDULE_TOPIC = "http://slotsync.example/fhir/SubscriptionTopic/schedule-slot-change"

# Specialty code -> display (SNOMED CT), in the contract's order.
SPECIALTIES: dict[str, str] = {
    "419772000": "Family practice",
    "394582007": "Dermatology",
    "394579002": "Cardiology",
    "394537008": "Paediatric specialty",
    "394914008": "Radiology",
}
FAMILY_PRACTICE, DERMATOLOGY, CARDIOLOGY, PAEDIATRICS, RADIOLOGY = SPECIALTIES

# Visit type code -> display, from the IG's visit-type CodeSystem.
VISIT_TYPES: dict[str, str] = {
    "office-visit": "OFFICE VISIT",
    "follow-up": "FOLLOW UP",
    "new-patient": "NEW PATIENT",
    "physical": "PHYSICAL",
    "well-child": "WELL CHILD",
    "vaccine": "VACCINATION",
    "consult": "CONSULTATION",
    "minor-surgery": "MINOR SURGERY",
    "ekg": "ELECTROCARDIOGRAM(EKG)",
    "echo": "ECHOCARDIOGRAPHY(ECHO)",
    "x-ray": "X-RAY",
    "ultrasound": "ULTRASOUND",
    "mri": "MAGNETIC RESONANCE IMAGING(MRI)",
}

# Which visit types a practitioner of each specialty offers (the contract).
SPECIALTY_VISIT_TYPES: dict[str, tuple[str, ...]] = {
    FAMILY_PRACTICE: ("office-visit", "follow-up", "new-patient", "physical"),
    PAEDIATRICS: ("office-visit", "well-child", "vaccine"),
    DERMATOLOGY: ("office-visit", "consult", "minor-surgery"),
    CARDIOLOGY: ("consult", "follow-up", "ekg", "echo"),
    RADIOLOGY: ("x-ray", "ultrasound", "mri"),
}

ROOM_KINDS: dict[str, str] = {
    "exam": "Exam room",
    "procedure": "Procedure room",
    "imaging": "Imaging room",
}
# Visit types a room of each kind can host (carried on the room's slots).
ROOM_VISIT_TYPES: dict[str, tuple[str, ...]] = {
    "exam": (
        "office-visit",
        "follow-up",
        "new-patient",
        "physical",
        "well-child",
        "vaccine",
        "consult",
    ),
    "procedure": ("minor-surgery", "ekg", "echo", "vaccine"),
    "imaging": ("x-ray", "ultrasound", "mri"),
}

DEVICE_KINDS: dict[str, str] = {
    "ekg": "Electrocardiograph",
    "ultrasound": "Ultrasound scanner",
    "xray": "X-ray unit",
    "mri": "MRI scanner",
}
DEVICE_VISIT_TYPES: dict[str, tuple[str, ...]] = {
    "ekg": ("ekg",),
    "ultrasound": ("ultrasound", "echo"),
    "xray": ("x-ray",),
    "mri": ("mri",),
}

TIME_ZONES: tuple[str, ...] = (
    "America/New_York",
    "America/Los_Angeles",
    "America/Chicago",
    "America/Denver",
)


def split_token(value: str) -> tuple[str | None, str]:
    """``"system|code"`` -> ``(system, code)``; a bare code or ``"|code"`` has no system."""
    system, sep, code = value.rpartition("|")
    if not sep:
        return None, value
    return (system or None), code
