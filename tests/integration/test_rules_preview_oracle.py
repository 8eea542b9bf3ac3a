"""The rules preview against its oracle, on the sandbox organisation.

The demo's organisation (the sandbox EHR and ``rules/examples/multi-clinic.yaml``) is
loaded into a cache once; for each kind of rules change, the preview's gained and lost
offers must equal running ``$find`` (``find_appointments``, no ``_count``) over the
whole horizon under each rules file, once, and subtracting the sets -- for every
patient cohort the preview composes for. The examples must be explained by the rule
the edit touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from sqlalchemy.orm import Session

from app.availability.catalog import Catalog, read_catalog
from app.availability.preview import changes_by_part, preview_horizon, preview_rules
from app.availability.service import MAX_SLOT_LENGTH, find_appointments, warm_offers
from app.availability.slot_index import SlotIndex
from app.cache import repository as repo
from app.cache.db import make_engine
from app.core.domain import ProposedAppointment
from rules.hours import Calendar
from rules.loader import parse_rules
from rules.offer_memo import OfferMemo
from rules.preview import GAINED, LOST, OfferKey, as_offer_key, cohorts
from rules.request import FindRequest, PatientInfo
from rules.schema import RulesFile
from sandbox_ehr.process import SandboxProcess
from tests.integration.test_rules_init import _start, load_from
from tests.paths import EXAMPLE_RULES

Edit = Callable[[dict[str, Any]], None]
OFFICE = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type|office-visit"
VACCINE = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type|vaccine"


def _hours(d: dict[str, Any]) -> None:
    for day in ("mon", "tue", "wed", "thu", "fri"):
        d["organization"]["opening_hours"][day] = ["09:00-11:00"]


def _lead(d: dict[str, Any]) -> None:
    d["defaults"]["min_lead_minutes"] = 3 * 24 * 60


def _buffer(d: dict[str, Any]) -> None:
    d["visit_types"][1]["buffer_after_minutes"] = 15  # follow-up visits


def _eligibility(d: dict[str, Any]) -> None:
    d["visit_types"][3]["eligibility"]["min_age_years"] = 21  # annual physical, was 18
    d["visit_types"][1]["eligibility"] = {"genders": ["female"]}  # follow-up, was anyone


def _service_type(d: dict[str, Any]) -> None:
    d["visit_types"][0]["slot_service_types"] = [VACCINE]  # office visits on vaccine slots


# kind -> (edit, whose examples are checked, the explain reason the other file gives
# for them, the path the cause is at)
CHANGES: dict[str, tuple[Edit, str, str, str]] = {
    "hours": (_hours, LOST, "outside-hours", "organization.opening_hours."),
    "lead-time": (_lead, LOST, "lead-time", "defaults.min_lead_minutes"),
    # the live file's hours, replacing the shorter ones: gained offers, explained by the
    # hours of the rules they replace
    "wider-hours": (_hours, GAINED, "outside-hours", "organization.opening_hours."),
    "buffer": (_buffer, LOST, "buffer", "visit_types[1].buffer_after_minutes"),
    "eligibility": (_eligibility, LOST, "eligibility", "visit_types["),
    "service-type": (_service_type, LOST, "service-type", "visit_types[0].slot_service_types"),
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with _start() as sp:
        yield sp


@pytest.fixture(scope="module")
def loaded(sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('preview') / 'cache.sqlite3'}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        load_from(sandbox, db_url, monkeypatch)
    yield db_url


def _live() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE_RULES.read_text())
    assert isinstance(data, dict)
    return data


def _rules(data: dict[str, Any]) -> RulesFile:
    return parse_rules(yaml.safe_dump(data, sort_keys=False))


def _key(offer: ProposedAppointment, schedule_of: dict[str, str], catalog: Catalog) -> OfferKey:
    """An offer as the preview compares them: its optional assets' slots left out."""
    optional = {p.ref for p in offer.participants if p.required == "optional"}
    kept = tuple(
        sid
        for sid in offer.slot_ids
        if optional.isdisjoint(catalog.schedules[schedule_of[sid]].actor_refs)
    )
    primary = offer.participants[0].ref
    return OfferKey(
        offer.service_types[0], offer.schedule_ids[0], primary, offer.start, offer.end, kept
    )


def _find_everything(
    session: Session,
    rules: RulesFile,
    catalog: Catalog,
    index: SlotIndex,
    now: datetime,
    span: tuple[datetime, datetime],
    patient: PatientInfo | None,
) -> set[OfferKey]:
    """The oracle: one $find (the service the router calls, proposals built and signed)
    over the whole span, every visit type, no _count."""
    found = find_appointments(
        session,
        FindRequest(start=span[0], end=span[1], patient=patient, count=None),
        rules=rules,
        catalog=catalog,
        slot_index=index,
        now=now,
        sign=lambda payload: f"signed-{payload.start.isoformat()}",
    )
    cached = repo.cached_slots(session, None, span[0] - MAX_SLOT_LENGTH, span[1])
    schedule_of = {sid: slot.schedule_id for sid, slot in cached.items()}
    return {_key(a, schedule_of, catalog) for a in found.appointments}


def _one_zone(catalog: Catalog) -> Catalog:
    """The catalog with no zone stated by the EHR: every site keeps the organisation's
    hours in its zone, and the preview composes a day at a time (the sandbox's clinics
    are in four zones, for which it composes a week at a time)."""
    actors = {ref: replace(actor, timezone=None) for ref, actor in catalog.actors.items()}
    return replace(catalog, actors=actors)


@pytest.mark.parametrize("zones", ["clinic-zones", "one-zone"])
@pytest.mark.parametrize("kind", list(CHANGES))
def test_the_preview_equals_find_under_each_file_subtracted(
    loaded: str, kind: str, zones: str
) -> None:
    edit, direction, reason, cause = CHANGES[kind]
    data = copy.deepcopy(_live())
    edit(data)
    old, new = _rules(_live()), _rules(data)
    if direction == GAINED:
        old, new = new, old
    now = datetime.now(UTC)
    engine = make_engine(loaded)
    try:
        with Session(engine) as session:
            catalog = read_catalog(session)
            if zones == "one-zone":
                catalog = _one_zone(catalog)
                assert len(Calendar(old, catalog.actors).zones()) == 1
            else:
                assert len(Calendar(old, catalog.actors).zones()) > 1
            index = SlotIndex(lookback=MAX_SLOT_LENGTH)
            first, last = preview_horizon(old, new, now)
            previewed_any = 0
            for cohort in cohorts(old, new, now.date()):
                gained, lost = set(), set()
                for side, offer in changes_by_part(
                    session,
                    old=old,
                    new=new,
                    catalog=catalog,
                    slot_index=index,
                    now=now,
                    cohort=cohort,
                ):
                    (gained if side == GAINED else lost).add(as_offer_key(offer))
                # the oracle: one exhaustive $find over the horizon per file, every
                # visit type, this cohort's patient
                before, after = (
                    _find_everything(
                        session, rules, catalog, index, now, (first, last), cohort.patient
                    )
                    for rules in (old, new)
                )
                assert before, "the sandbox organisation offers nothing"
                assert (gained, lost) == (after - before, before - after), cohort.label
                previewed_any += len(gained) + len(lost)
            assert previewed_any, f"the {kind} change changes no offer"

            preview = preview_rules(
                session, old=old, new=new, catalog=catalog, slot_index=index, now=now
            )
            # as the API runs it: $find's warm offer memo for the rules in force
            memo = OfferMemo()
            warm_offers(session, rules=old, catalog=catalog, slot_index=index, memo=memo, now=now)
            served = preview_rules(
                session, old=old, new=new, catalog=catalog, slot_index=index, now=now, memo=memo
            )
    finally:
        engine.dispose()
    assert [t.as_json() for t in served.tallies] == [t.as_json() for t in preview.tallies]
    assert preview.changes and all(c.path for c in preview.changes)
    changed = [t for t in preview.tallies if t.gained or t.lost]
    assert changed
    for tally in changed:
        assert sum(r[GAINED] for r in tally.schedules.values()) == tally.gained
        assert sum(r[LOST] for r in tally.visit_types.values()) == tally.lost
        assert sum(r[LOST] + r[GAINED] for r in tally.days.values()) == tally.lost + tally.gained
        assert tally.offers_after - tally.offers_before == tally.gained - tally.lost
    examples = [e for t in changed for e in t.examples[direction]]
    assert examples, f"no {direction} example"
    explained = [e for e in examples if e.reason == reason]
    assert explained, [(e.reason, e.rule) for e in examples]
    assert all(e.cause is not None and e.cause.path.startswith(cause) for e in explained), [
        (e.rule, e.cause) for e in explained
    ]
    if kind == "eligibility":  # both edits show, each for the patients it rules out
        rules_named = {e.rule for e in explained}
        assert rules_named == {
            "visit_types[1].eligibility.genders",
            "visit_types[3].eligibility.min_age_years",
        }
