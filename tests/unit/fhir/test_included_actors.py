"""An ``_include``d Location of $find states what the cache knows of it, valid in both
FHIR versions."""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class as r4_model
from fhir.resources.STU3 import get_fhir_model_class as stu3_model

from app.core.domain import Actor, ContactPoint, Position, PostalAddress
from app.fhir.bundle import actor_resource

CLINIC = Actor(
    ref="Location/clinic-1",
    display="Springfield Clinic",
    address="1 Main St, Springfield, Hampden County, MA, 01101",
    postal_address=PostalAddress(
        line=("1 Main St",),
        city="Springfield",
        district="Hampden County",
        state="MA",
        postal_code="01101",
        country="US",
    ),
    telecom=(
        ContactPoint("phone", "413-555-0101", "work"),
        ContactPoint("url", "https://clinic.example"),
    ),
    position=Position(42.101483, -72.589811),
)


@pytest.mark.parametrize("model", [stu3_model, r4_model], ids=["stu3", "r4"])
def test_an_included_location_states_address_telecom_and_position(model):
    resource = actor_resource(CLINIC)
    model("Location").model_validate(resource)
    assert resource["address"] == {
        "text": CLINIC.address,
        "line": ["1 Main St"],
        "city": "Springfield",
        "district": "Hampden County",
        "state": "MA",
        "postalCode": "01101",
        "country": "US",
    }
    assert resource["telecom"] == [
        {"system": "phone", "value": "413-555-0101", "use": "work"},
        {"system": "url", "value": "https://clinic.example"},
    ]
    assert resource["position"] == {"latitude": 42.101483, "longitude": -72.589811}


def test_an_included_location_without_them_states_its_text_only():
    resource = actor_resource(Actor(ref="Location/x", display="X", address="downtown"))
    assert resource == {
        "resourceType": "Location",
        "id": "x",
        "name": "X",
        "address": {"text": "downtown"},
    }
