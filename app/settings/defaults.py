"""Development defaults and the scopes they grant: they make `make demo` work out of the box
and are refused in production (see :func:`app.settings.model.production_problems`)."""

DEV_WEBHOOK_SECRET = "dev-webhook-secret-change-me"
DEV_PROPOSAL_SECRET = "development-proposal-secret-change-me"
DEMO_API_KEY = "slotsync-demo-key"
ADMIN_SCOPE = "slotsync/admin"
METRICS_SCOPE = "slotsync/metrics"
DEMO_SCOPES = [
    "system/Appointment.read",
    "system/Appointment.write",
    "system/Patient.write",
    "system/Coverage.write",
    ADMIN_SCOPE,
    METRICS_SCOPE,
]
MIN_SECRET_LENGTH = 24
DEV_EHR_BASE_URL = "http://127.0.0.1:8100/fhir"
# Fragments of the placeholders that example files and older instructions carried
# ("change-me-to-a-long-random-password", "replace-with-a-random-secret-..."): a
# value containing one was copied, not generated.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-with", "replace-me")
