"""FastAPI dependencies: settings, a read session per request, the booking service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import Depends, Request

from app.booking.context import BookingContext
from app.cache.db import Session, read_session
from app.settings import Settings


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    with read_session(request.app.state.engine) as session:
        yield session


def autocommit_session(request: Request) -> AbstractContextManager[Session]:
    """For ``$find`` and the feed: each statement stands alone, so no BEGIN and
    ROLLBACK round trips around the one query a request usually makes (its reads are
    ordered to be consistent without a shared snapshot; see
    :mod:`app.availability.slot_index`).

    Opened by the endpoint inside its own worker thread, not as a dependency: FastAPI
    runs a sync generator dependency's enter and exit in the thread pool too, two more
    thread hand-offs per request, which cost a typical ``$find`` more than its query."""
    return read_session(request.app.state.engine, autocommit=True)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def get_booking(request: Request) -> BookingContext:
    return request.app.state.booking  # type: ignore[no-any-return]


BookingDep = Annotated[BookingContext, Depends(get_booking)]
