"""Where the cache and the broker live: embedded (SQLite, in-process tasks) unless set."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url


class StorageSettings(BaseSettings):
    """The cache database and the Redis broker, with their passwords."""

    data_dir: Path = Field(default=Path(".slotsync"), description="where the SQLite cache lives")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset = SQLite file in data_dir"
    )
    redis_url: str | None = Field(
        default=None, description="Celery broker and locks; unset = embedded in-process tasks"
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="password put into DATABASE_URL (replacing any there); a secret file in"
        " compose, shared with PostgreSQL's POSTGRES_PASSWORD_FILE",
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description="password put into REDIS_URL (replacing any there); a secret file in"
        " compose, shared with Redis' requirepass",
    )

    @property
    def effective_database_url(self) -> str:
        """The database URL with ``DATABASE_PASSWORD`` in it, or the embedded SQLite file."""
        if not self.database_url:
            return f"sqlite:///{(self.data_dir / 'cache.sqlite3').resolve()}"
        password = secret_text(self.database_password)
        if not password:
            return self.database_url
        url = make_url(self.database_url).set(password=password)
        return url.render_as_string(hide_password=False)

    @property
    def effective_redis_url(self) -> str | None:
        """The broker URL with ``REDIS_PASSWORD`` in it; None in embedded mode."""
        if not self.redis_url:
            return None
        password = secret_text(self.redis_password)
        return _redis_url_with_password(self.redis_url, password) if password else self.redis_url

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: tasks run in process."""
        return not self.redis_url


def secret_text(value: SecretStr | None) -> str | None:
    """A secret's text, None when unset."""
    return value.get_secret_value() if value is not None else None


def _redis_url_with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":  # no host part: redis-py reads ?password=
        query = "&".join(q for q in (parts.query, f"password={quote(password, safe='')}") if q)
        return urlunsplit(parts._replace(query=query))
    userinfo, _, host = parts.netloc.rpartition("@")
    username = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{username}:{quote(password, safe='')}@{host}"))
