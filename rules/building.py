"""Resource building: chosen offers turned into signed proposed appointments.

Separate from selection because it runs only for the offers a request keeps (a
page, or ``_count``), never for the candidates looked at: here are the
participants, specialties and the signed id of each proposal, with each
participant built once per composition.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.domain import Participant, ProposedAppointment
from rules.appointment_id import ProposalPayload
from rules.assets import AssetIndex, Unit
from rules.offers import Candidate
from rules.request import FindRequest
from rules.schema import VisitTypeRule
from rules.tokens import TokenSet

Signer = Callable[[ProposalPayload], str]


class Builder:
    """Turns chosen offers into signed :class:`ProposedAppointment`.

    An answer may hold thousands of offers among a few hundred participants, so each
    participant (an immutable value) is built once per composition and shared.
    """

    def __init__(self, request: FindRequest, index: AssetIndex, sign: Signer):
        self._index = index
        self._sign = sign
        patient = request.patient
        self._patient = (
            Participant(ref=patient.ref, display=patient.display)
            if patient is not None and (patient.ref or patient.display)
            else None
        )
        self._participants: dict[tuple[str, str], Participant] = {}
        self._specialties: dict[tuple[int, int, Unit], tuple[str, ...]] = {}

    def build(self, c: Candidate) -> ProposedAppointment:
        rule = c.rule
        participants: list[Participant] = []
        seen: set[str] = set()

        def add(ref: str, required: str) -> None:
            if ref not in seen:
                seen.add(ref)
                participants.append(self._participant(ref, required))

        primary_index, primary, _ = c.parts[0]
        add(primary.ref, "required")
        if c.site is not None:
            add(c.site, "required")
        for i, unit, _ in c.parts[1:]:  # in requirement order
            add(unit.ref, "optional" if rule.assets[i].optional else "required")
        if self._patient is not None:
            participants.append(self._patient)
        payload = ProposalPayload(
            visit_type=rule.code,
            start=c.start,
            end=c.end,
            slot_ids=c.slot_ids,
            participants=tuple(p.ref for p in participants if p.ref),
        )
        return ProposedAppointment(
            id=self._sign(payload),
            start=c.start,
            end=c.end,
            slot_ids=c.slot_ids,
            participants=tuple(participants),
            service_types=(rule.code,),
            specialties=self._specialties_of(rule, primary_index, primary),
            appointment_type=rule.appointment_type,
            visit_type_display=rule.display,
            schedule_ids=tuple(dict.fromkeys(unit.schedule.id for _, unit, _ in c.parts)),
        )

    def _participant(self, ref: str, required: str) -> Participant:
        key = (ref, required)
        participant = self._participants.get(key)
        if participant is None:
            display = self._index.actor(ref).display
            participant = self._participants[key] = Participant(
                ref=ref, display=display, required=required
            )
        return participant

    def _specialties_of(
        self, rule: VisitTypeRule, primary_index: int, primary: Unit
    ) -> tuple[str, ...]:
        key = (id(rule), primary_index, primary)  # the unit: its schedule adds codes
        found = self._specialties.get(key)
        if found is None:
            found = self._specialties[key] = _specialties(rule, primary_index, primary)
        return found


def _specialties(rule: VisitTypeRule, primary_index: int, primary: Unit) -> tuple[str, ...]:
    if rule.specialties:
        return tuple(rule.specialties)
    requirement = rule.assets[primary_index]
    if requirement.kind != "practitioner":
        return ()
    wanted = TokenSet(requirement.codes)
    return tuple(code for code in primary.codes if not wanted or wanted.matches(code))
