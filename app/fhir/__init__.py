"""FHIR version adapters: the only code that knows FHIR JSON shapes."""
