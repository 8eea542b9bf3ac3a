"""Keeping the cache a faithful copy of the EHR: services called by Celery tasks, CLI and API."""
