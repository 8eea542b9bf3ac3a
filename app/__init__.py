"""slotsync: Argonaut Scheduling Use Case 3 application server.

Importing this package must stay cheap and free of web/database imports so that
workers, the CLI and the pure rules engine can use `app.core.domain` and
`app.settings` without pulling in FastAPI.
"""
