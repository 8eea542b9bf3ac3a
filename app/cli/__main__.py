"""``python -m app.cli``: the same as the ``slotsync`` command."""

from app.cli.main import main

raise SystemExit(main())
