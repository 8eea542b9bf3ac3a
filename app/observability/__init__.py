"""Logs, metrics and sync health: importable by the API, the workers and the CLI alike."""
