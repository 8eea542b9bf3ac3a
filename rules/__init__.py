"""Rules engine: the organisation's business rules and the appointment composer.

Public modules: ``schema`` (the rules file models and JSON Schema), ``loader``
(parse with line-numbered errors, hot reload), ``request`` (FindRequest and
results), ``composer`` (pure composition of proposed appointments),
``appointment_id`` (stateless signed proposal ids), ``check`` (what a rules file
would offer). The composer's stages, internal: ``selection`` (visit types
merged, ``_count`` and pages), ``candidates`` (one visit type's scan),
``planning`` (the same from ``offer_memo``), ``matching`` (units per asset),
``ordering`` (cap, ordering, ``_count``), ``building`` (signed proposals) and
``offers`` (the shapes they share). Internal helpers: ``assets`` (free time per
asset), ``hours`` (opening hours per clinic), ``eligibility``, ``tokens``.
Importable without FastAPI, Celery or a database.
"""
