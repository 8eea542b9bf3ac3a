"""Sandbox EHR: a realistic FHIR scheduling server (Argonaut STU3 or plain R4).

slotsync is developed, tested, demonstrated and benchmarked against it over real
HTTP. Entry points: :func:`sandbox_ehr.cli.main` (``slotsync sandbox-ehr``),
:func:`sandbox_ehr.app.create_app` (ASGI app), :func:`sandbox_ehr.process.start_sandbox`
(a real child process for tests and benchmarks). Importing this package is cheap.
"""
