from datetime import UTC, datetime

import pytest

from app.availability.params import parse_find_query
from app.core.errors import InvalidParameter


def parse(**params):
    items = []
    for k, v in params.items():
        for value in v if isinstance(v, list) else [v]:
            items.append((k.replace("_", "-") if k != "_count" else k, value))
    return parse_find_query(items).request


def test_dates_and_offsets_become_utc():
    q = parse(start="2030-01-07T09:00:00-05:00", end="2030-01-08")
    assert q.start == datetime(2030, 1, 7, 14, 0, tzinfo=UTC)
    assert q.end == datetime(2030, 1, 8, tzinfo=UTC)


def test_aliases_and_repeats():
    parsed = parse_find_query(
        [
            ("start", "2030-01-07"),
            ("end", "2030-01-09"),
            ("provider", "Practitioner/1"),
            ("practitioner", "https://ehr.example/fhir/Practitioner/2"),
            ("location", "Location/a,Location/b"),
            (
                "service-type",
                "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type|ekg",
            ),
            ("specialty", "http://snomed.info/sct|394579002"),
            ("location-string", "Springfield, IL"),
            ("patient", "Patient/9"),
            ("reason", "http://snomed.info/sct|1234"),
            ("foo", "bar"),
        ]
    )
    q = parsed.request
    assert q.practitioners == ("Practitioner/1", "Practitioner/2")
    assert q.locations == ("Location/a", "Location/b")
    assert q.visit_types == (
        "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type|ekg",
    )
    assert q.specialties == ("http://snomed.info/sct|394579002",)
    assert q.location_strings == ("Springfield, IL",)  # a string, never split on commas
    assert q.patient is not None and q.patient.ref == "Patient/9"
    assert parsed.ignored == ("reason", "foo (unknown)")


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([("end", "2030-01-02")], "start"),
        ([("start", "2030-01-02")], "end"),
        ([("start", "tomorrow"), ("end", "2030-01-02")], "start"),
        ([("start", "2030-01-02T10:00:00"), ("end", "2030-01-03")], "start"),
        ([("start", "2030-01-03"), ("end", "2030-01-02")], "end"),
        ([("start", "2030-01-01"), ("end", "2032-01-02")], "end"),
        ([("start", "2030-01-01"), ("end", "2030-01-02"), ("_count", "0")], "_count"),
        ([("start", "2030-01-01"), ("end", "2030-01-02"), ("_count", "x")], "_count"),
        (
            [("start", "2030-01-01"), ("end", "2030-01-02"), ("provider", "Location/1")],
            "practitioner",
        ),
        ([("start", "2030-01-01"), ("start", "2030-01-02"), ("end", "2030-01-03")], "start"),
    ],
)
def test_bad_input_names_the_parameter(items, param):
    with pytest.raises(InvalidParameter) as err:
        parse_find_query(items)
    assert err.value.expression == param
