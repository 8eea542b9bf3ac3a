"""Signed, stateless proposal ids: round trip, tamper detection, FHIR id form."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.appointment_id import (
    InvalidAppointmentId,
    ProposalPayload,
    decode,
    encode,
    fhir_id,
    signer,
)

SECRET = b"s3cret"
PAYLOAD = ProposalPayload(
    visit_type="http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type|office-visit",
    start=datetime(2026, 3, 9, 13, 0, tzinfo=UTC),
    end=datetime(2026, 3, 9, 13, 20, tzinfo=UTC),
    slot_ids=("sl-pr-1-0800", "sl-pr-1-0815", "sl-room-3-0800", "sl-room-3-0810"),
    participants=("Practitioner/pr-1", "Location/clinic-1", "Location/room-3"),
)
FHIR_ID = re.compile(r"^[A-Za-z0-9\-\.]{1,64}$")


def test_round_trip_and_compact_url_safe_form() -> None:
    token = encode(PAYLOAD, SECRET)
    assert decode(token, SECRET) == PAYLOAD
    assert re.fullmatch(r"[A-Za-z0-9_\-]+", token)
    assert len(token) < 200
    assert encode(PAYLOAD, SECRET) == token  # deterministic: same offer, same id


def test_a_remembering_signer_signs_as_encode_does() -> None:
    sign = signer(SECRET, remember=2)
    later = replace(PAYLOAD, start=PAYLOAD.end, end=datetime(2026, 3, 9, 13, 40, tzinfo=UTC))
    for payload in (PAYLOAD, later, PAYLOAD, replace(later, slot_ids=("x",)), PAYLOAD):
        token = sign(payload)
        assert token == encode(payload, SECRET) and decode(token, SECRET) == payload
    assert signer(b"other")(PAYLOAD) != sign(PAYLOAD)


def test_local_visit_type_keeps_its_system() -> None:
    local = ProposalPayload(
        "http://clinic.example/vt|flu-drive",
        PAYLOAD.start,
        PAYLOAD.end,
        PAYLOAD.slot_ids,
        PAYLOAD.participants,
    )
    assert decode(encode(local, SECRET), SECRET).visit_type == "http://clinic.example/vt|flu-drive"


def test_every_single_character_change_is_detected() -> None:
    token = encode(PAYLOAD, SECRET)
    for i in range(len(token)):
        replacement = "A" if token[i] != "A" else "B"
        tampered = token[:i] + replacement + token[i + 1 :]
        with pytest.raises(InvalidAppointmentId):
            decode(tampered, SECRET)


def test_wrong_secret_truncation_and_garbage_are_rejected() -> None:
    token = encode(PAYLOAD, SECRET)
    for bad in (token[:-4], token + "AAAA", "", "not a token!", "A" * 5000, "AQ"):
        with pytest.raises(InvalidAppointmentId):
            decode(bad, SECRET)
    with pytest.raises(InvalidAppointmentId):
        decode(token, b"other-secret")


def test_fhir_id_is_a_valid_stable_short_id() -> None:
    token = encode(PAYLOAD, SECRET)
    assert FHIR_ID.match(fhir_id(token))
    assert fhir_id(token) == fhir_id(token)
    other = encode(replace(PAYLOAD, slot_ids=("x",)), SECRET)
    assert fhir_id(other) != fhir_id(token)


@given(
    slot_ids=st.lists(st.text(min_size=1, max_size=64), min_size=1, max_size=12),
    refs=st.lists(st.from_regex(r"[A-Z][a-z]{2,10}/[a-z0-9\-]{1,20}", fullmatch=True), max_size=6),
    minute=st.integers(min_value=0, max_value=60 * 24 * 365 * 5),
    length=st.integers(min_value=1, max_value=600),
)
def test_any_payload_round_trips(
    slot_ids: list[str], refs: list[str], minute: int, length: int
) -> None:
    start = datetime.fromtimestamp(1_700_000_000 + minute * 60, UTC)
    payload = ProposalPayload(
        PAYLOAD.visit_type,
        start,
        datetime.fromtimestamp(start.timestamp() + length * 60, UTC),
        tuple(slot_ids),
        tuple(refs),
    )
    token = encode(payload, SECRET)
    assert decode(token, SECRET) == payload
    assert FHIR_ID.match(fhir_id(token))
