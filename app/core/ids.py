"""FHIR ids: the one pattern every id we accept or route on must match."""

from __future__ import annotations

import re

# FHIR's id datatype: 1 to 64 of letters, digits, "-" and ".".
FHIR_ID_PATTERN = r"[A-Za-z0-9\-.]{1,64}"
FHIR_ID = re.compile(FHIR_ID_PATTERN)


def is_fhir_id(value: str) -> bool:
    return FHIR_ID.fullmatch(value) is not None
