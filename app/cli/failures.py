"""What the CLI says, in one line and with the next step, about conditions an operator
meets in normal life (a fresh database, a dependency down), instead of a traceback.

Exit status 3 (``app.cli.exit_codes.DEPENDENCY_EXIT``) for all of them: a dependency is
not there or not prepared. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import redis.exceptions
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from app.ehr.errors import EhrError
from app.settings import Settings

# A schema missing or behind: SQLite's words, PostgreSQL's SQLSTATEs (undefined table,
# undefined column). Not "does not exist" in general: a missing database says that too,
# and `db upgrade` cannot help with it.
_SQLITE_NO_SCHEMA = ("no such table", "no such column")
_PG_NO_SCHEMA = frozenset({"42P01", "42703"})


def explain(exc: BaseException, settings: Settings) -> str | None:
    """The operator's line for an expected failure, or None for a bug."""
    if isinstance(exc, OperationalError | ProgrammingError):
        text = str(exc.orig if exc.orig is not None else exc).lower()
        where = make_url(settings.effective_database_url).render_as_string(hide_password=True)
        if (
            any(marker in text for marker in _SQLITE_NO_SCHEMA)
            or getattr(exc.orig, "sqlstate", None) in _PG_NO_SCHEMA
        ):
            return (
                f"the cache database {where} has no schema (or an old one):"
                " run `slotsync db upgrade`"
            )
        if isinstance(exc, OperationalError):
            first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else ""
            return (
                f"cannot use the cache database {where}: {first};"
                " check that it runs and SLOTSYNC_DATABASE_URL"
            )
        return None
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"cannot reach Redis ({exc}); check that it runs and SLOTSYNC_REDIS_URL"
    if isinstance(exc, EhrError):
        return (
            f"the EHR at {settings.ehr_base_url} did not serve the request ({exc});"
            " check SLOTSYNC_EHR_BASE_URL and the EHR's health, then retry"
        )
    return None
