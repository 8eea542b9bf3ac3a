"""The booking path follows the EHR's CapabilityStatement as last read, not its version."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from sqlalchemy.orm import Session

from app.cache.models import EhrCapabilitiesRow
from app.fhir.ehr_capabilities import EhrCapabilities
from app.sync.capabilities import current_booking_path
from tests.sync_support import settings

BASE = "http://ehr.test/fhir"


def declare(engine, caps: EhrCapabilities) -> None:
    with Session(engine) as s, s.begin():
        s.merge(
            EhrCapabilitiesRow(
                base_url=BASE,
                fetched_at=datetime.now(UTC),
                summary=msgspec.json.encode(caps.as_json()).decode(),
            )
        )


def test_declared_operations_choose_the_path_whatever_the_version(engine):
    r4 = settings(ehr_base_url=BASE, ehr_fhir_version="r4")
    stu3 = settings(ehr_base_url=BASE, ehr_fhir_version="stu3")
    # nothing read yet: the version's default
    assert current_booking_path(engine, r4) == "appointment"
    assert current_booking_path(engine, stu3) == "operations"

    declare(engine, EhrCapabilities(fhir_version="4.0.1", operations=frozenset({"hold", "book"})))
    assert current_booking_path(engine, r4) == "operations"
    declare(engine, EhrCapabilities(fhir_version="3.0.2", operations=frozenset({"prefetch"})))
    assert current_booking_path(engine, stu3) == "appointment"  # no $hold/$book declared

    # a setting that names a path wins over what the EHR declares
    assert current_booking_path(engine, settings(ehr_base_url=BASE, ehr_booking="operations")) == (
        "operations"
    )
