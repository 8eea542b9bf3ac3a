"""Sandbox EHR: a realistic FHIR scheduling server (Argonaut STU3 or R4, or a generic R4 server).

slotsync is developed, tested, demonstrated and benchmarked against it over real
HTTP, and integrators use it to try slotsync before connecting their own EHR.
Importing this package is cheap (no FastAPI, no numpy).

Entry points
    ``sandbox_ehr.cli.main(argv)`` (``slotsync sandbox-ehr`` / ``python -m sandbox_ehr``),
    ``sandbox_ehr.app.create_app(SandboxConfig) -> FastAPI``,
    ``sandbox_ehr.process.start_sandbox(...) -> SandboxProcess`` (a real child process).

FHIR API (base ``/fhir``; every error is an OperationOutcome)
    ``GET /metadata``                          CapabilityStatement of what is supported
    ``GET|POST /Slot/$prefetch`` (STU3 only)   free slots, start in [start, end); filters
        ``practitioner``, ``location-reference``, ``organization``, ``location-string``
        (kinds ANDed, repeats ORed), ``specialty``/``visit-type`` tokens, ``schedule``;
        ``_include`` Slot:schedule / Schedule:actor / *; ``_count``; paged with ``next``
    ``GET /Slot`` (both)                        ``schedule``, ``schedule.actor``, ``start``
        (ge/gt/le/lt/eq), ``status`` (all statuses when absent), ``_lastUpdated`` (gt/ge),
        ``_id``, the filters above, ``_include``, ``_count``
    ``GET /Schedule``  ``GET /Practitioner|Location|Device|Organization``   paged discovery
    ``GET /{type}/{id}``  reads of every resource type served
    ``POST /Appointment/$hold``, ``/Appointment/{id}/$hold``, ``$book`` likewise
        (Parameters ``appt-resource`` | ``appt-id``, ``patient-id``, ``comment``,
        ``cancelled-appt-id``; or a bare Appointment); 409 when a slot is taken
    ``PATCH /Appointment/{id}``   JSON Patch or FHIRPath Patch; status changes drive slots
    ``POST /Appointment``, ``PUT /Appointment/{id}`` (R4 only; status pending|booked|proposed)
    ``GET /Appointment?patient=&status=&date=&practitioner=&actor=&slot=&_id=``
    ``POST /Patient`` (returns the existing patient on identifier/demographics match),
    ``GET /Patient?identifier=&family=&given=&name=&birthdate=&gender=``
    ``POST /Coverage``, ``PUT /Coverage/{id}`` (type/beneficiary changes are rejected, 422)
    ``POST|GET /Subscription``, ``GET|DELETE /Subscription/{id}``, ``GET .../$status`` (R4)

Profiles (``--profile`` / ``start_sandbox(profile=...)``)
    ``sandbox`` (default): everything above. ``plain-r4`` (implies R4): a generic R4
    server. No ``$prefetch``/``$hold``/``$book`` (400 OperationOutcome, unknown
    operation) and no Subscription (404, unknown resource type), neither in the
    CapabilityStatement. ``POST|PUT|PATCH /Appointment`` store the Appointment as
    sent (any status, references checked, no conflict check) and never change a
    slot: booked slots stay free.
    ``DELETE /Slot/{id}`` (then 410; gone from searches and truth, invisible to
    ``_lastUpdated``), ``GET /Slot/_history?_since=`` (lists deletions). A ``_count``
    above ``--max-count`` (default 100) is a 400 OperationOutcome.

Control API (base ``/_sandbox``; never faulted): ``GET truth``, ``POST mutate``,
``POST reset``, ``GET|POST|DELETE faults``, ``DELETE faults/{id}``, ``GET|DELETE stats``,
``GET|POST config``, ``GET slot-appointments`` (Appointments per slot, double bookings;
``truth?available=true``: free and referenced by no active Appointment).
Shapes: :mod:`sandbox_ehr.routes_control` (truth, slot-appointments, mutate),
:mod:`sandbox_ehr.faults` (fault rules), :mod:`sandbox_ehr.notify` (notifications).

Identifiers: practitioners ``pr-<n>``, clinics ``clinic-<n>``, rooms ``room-<n>``,
devices ``dev-<n>``, organisations ``org-1``/``org-2``, schedules ``sch-pr-<n>``,
``sch-room-<n>``, ``sch-dev-<n>``, slots ``sl-<8 digits>`` (string order = creation
order), appointments ``appt-<n>``, patients ``pat-<n>`` (pat-1..pat-5 pre-registered),
coverage ``cov-<n>``, subscriptions ``sub-<n>``.
"""
