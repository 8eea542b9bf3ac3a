"""Where the tests find the repository and their fixtures (never outside the repository)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
FHIR_EXAMPLES = FIXTURES / "fhir-examples"
EXAMPLE_RULES = REPO / "rules" / "examples" / "multi-clinic.yaml"
