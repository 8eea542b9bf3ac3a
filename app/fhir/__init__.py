"""FHIR version adapters: the only place that knows STU3 and R4 resource shapes."""
