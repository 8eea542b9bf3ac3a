"""Alembic migration environment for the slot cache (run via `slotsync db upgrade`)."""
