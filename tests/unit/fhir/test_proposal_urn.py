"""Proposal fullUrls are the uuid5 of the proposal id in slotsync's namespace."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from app.fhir.bundle import _PROPOSALS, proposal_urn


@given(st.text())
def test_the_written_out_urn_is_uuid5(proposal_id: str) -> None:
    urn = proposal_urn(proposal_id)
    assert urn == f"urn:uuid:{uuid.uuid5(_PROPOSALS, proposal_id)}"
    parsed = uuid.UUID(urn.removeprefix("urn:uuid:"))
    assert parsed.version == 5 and parsed.variant == uuid.RFC_4122
