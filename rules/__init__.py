"""Rules engine: the organisation's business rules and the appointment composer.

``schema`` (the rules file models), ``loader`` (parse with line-numbered errors,
hot reload), ``composer`` (pure composition of proposed appointments),
``appointment_id`` (stateless signed proposal ids), ``check`` (what a rules file
would offer). Importable without FastAPI, Celery or a database.
"""
