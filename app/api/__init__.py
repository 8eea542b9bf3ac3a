"""HTTP surface (FastAPI): /fhir, /webhook, /admin, health."""
