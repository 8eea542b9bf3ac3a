"""The ``_cursor`` of ``$find``'s ``next`` links: where the next page starts, in the link.

Stateless, so any replica can serve any page: the cursor is the order key of the last
offer on the previous page (see :class:`rules.request.Page`), as base64url JSON. It
names only a position in the answer's order, so it is not secret and needs no
signature; one that does not decode is a 400.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import msgspec

from app.core.errors import InvalidParameter
from rules.request import PageKey

NAME = "_cursor"
MAX_LENGTH = 4096


def encode(key: PageKey) -> str:
    start, pref, ref, schedule_id = key
    raw = msgspec.json.encode([start.isoformat(), pref, ref, schedule_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(token: str) -> PageKey:
    try:
        if len(token) > MAX_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        start, pref, ref, schedule_id = msgspec.json.decode(raw)
        if not all(isinstance(v, str) for v in (ref, schedule_id)) or type(pref) is not int:
            raise ValueError("wrong types")
        key: PageKey = (_aware(start), pref, ref, schedule_id)
    except (ValueError, TypeError, RecursionError, binascii.Error, msgspec.DecodeError):
        raise InvalidParameter(
            f"parameter '{NAME}' is not a cursor from a next link of this server",
            expression=NAME,
        ) from None
    return key


def _aware(value: object) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    if moment is None or moment.tzinfo is None:
        raise ValueError("not an instant")
    return moment
