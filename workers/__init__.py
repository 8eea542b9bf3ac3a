"""Celery workers: thin task wrappers around the sync services in app.sync."""
