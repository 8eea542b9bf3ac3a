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
# city -> (telephone area code, county, latitude, longitude of its centre)
PLACES: dict[str, tuple[str, str, float, float]] = {
    "New York": ("212", "New York County", 40.7128, -74.0060),
    "Boston": ("617", "Suffolk County", 42.3601, -71.0589),
    "Philadelphia": ("215", "Philadelphia County", 39.9526, -75.1652),
    "Baltimore": ("410", "Baltimore City", 39.2904, -76.6122),
    "Atlanta": ("404", "Fulton County", 33.7490, -84.3880),
    "Los Angeles": ("213", "Los Angeles County", 34.0522, -118.2437),
    "San Diego": ("619", "San Diego County", 32.7157, -117.1611),
    "Seattle": ("206", "King County", 47.6062, -122.3321),
    "Portland": ("503", "Multnomah County", 45.5152, -122.6784),
    "Sacramento": ("916", "Sacramento County", 38.5816, -121.4944),
    "Chicago": ("312", "Cook County", 41.8781, -87.6298),
    "Houston": ("713", "Harris County", 29.7604, -95.3698),
    "Dallas": ("214", "Dallas County", 32.7767, -96.7970),
    "Minneapolis": ("612", "Hennepin County", 44.9778, -93.2650),
    "St. Louis": ("314", "St. Louis City", 38.6270, -90.1994),
    "Denver": ("303", "Denver County", 39.7392, -104.9903),
    "Salt Lake City": ("801", "Salt Lake County", 40.7608, -111.8910),
    "Albuquerque": ("505", "Bernalillo County", 35.0844, -106.6504),
    "Boise": ("208", "Ada County", 43.6150, -116.2023),
    "Colorado Springs": ("719", "El Paso County", 38.8339, -104.8214),
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
