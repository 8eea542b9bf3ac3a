"""Seeded vocabulary of the synthetic organisation: cities per time zone, streets, people's names.

Plain data, kept out of :mod:`sandbox_ehr.org` so that the generator reads as an algorithm.
"""

from __future__ import annotations

CITIES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "America/New_York": (
        ("New York", "NY", "100"),
        ("Boston", "MA", "021"),
        ("Philadelphia", "PA", "191"),
        ("Baltimore", "MD", "212"),
        ("Atlanta", "GA", "303"),
    ),
    "America/Los_Angeles": (
        ("Los Angeles", "CA", "900"),
        ("San Diego", "CA", "921"),
        ("Seattle", "WA", "981"),
        ("Portland", "OR", "972"),
        ("Sacramento", "CA", "958"),
    ),
    "America/Chicago": (
        ("Chicago", "IL", "606"),
        ("Houston", "TX", "770"),
        ("Dallas", "TX", "752"),
        ("Minneapolis", "MN", "554"),
        ("St. Louis", "MO", "631"),
    ),
    "America/Denver": (
        ("Denver", "CO", "802"),
        ("Salt Lake City", "UT", "841"),
        ("Albuquerque", "NM", "871"),
        ("Boise", "ID", "837"),
        ("Colorado Springs", "CO", "809"),
    ),
}
STREETS = (
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Elm St",
    "Park Blvd",
    "Lake Rd",
    "Hill St",
)
GIVEN_F = (
    "Anna",
    "Maria",
    "Grace",
    "Sofia",
    "Emily",
    "Olivia",
    "Priya",
    "Chen",
    "Fatima",
    "Laura",
)
GIVEN_M = (
    "James",
    "David",
    "Michael",
    "Omar",
    "Daniel",
    "Lucas",
    "Ravi",
    "Wei",
    "Samuel",
    "Peter",
)
FAMILY = (
    "Smith",
    "Johnson",
    "Garcia",
    "Nguyen",
    "Patel",
    "Kim",
    "Brown",
    "Miller",
    "Davis",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Moore",
    "Martin",
    "Lee",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
)
