"""Typed path parameters: ``{id:fhirid}`` matches only a FHIR id.

So ``/Appointment/{id:fhirid}`` can never swallow ``/Appointment/$find`` (a wrong
method there stays a 405 with the right ``Allow``), and a malformed id is simply
not a route (404).
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor

from app.core.ids import FHIR_ID_PATTERN


class FhirIdConvertor(Convertor[str]):
    regex = FHIR_ID_PATTERN

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fhirid", FhirIdConvertor())
