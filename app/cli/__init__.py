"""``slotsync``: one module per command group; :mod:`app.cli.main.main` parses and dispatches."""
