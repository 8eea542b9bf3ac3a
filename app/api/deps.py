"""FastAPI dependencies: settings, a read session per request, the booking service."""

from __future__ import annotations

from collections.abc import Iterator
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


def get_autocommit_session(request: Request) -> Iterator[Session]:
    """For ``$find``: each statement stands alone, so no BEGIN and ROLLBACK round trips
    around the one query a request usually makes (its reads are ordered to be
    consistent without a shared snapshot; see :mod:`app.availability.slot_index`)."""
    with read_session(request.app.state.engine, autocommit=True) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
AutocommitSessionDep = Annotated[Session, Depends(get_autocommit_session)]


def get_booking(request: Request) -> BookingContext:
    return request.app.state.booking  # type: ignore[no-any-return]


BookingDep = Annotated[BookingContext, Depends(get_booking)]
