"""Opaque, stateless page cursors.

A cursor carries the normalised search parameters, the page size, the total of
the first page and the last (start, id) key served, so that the ``next`` link
works for GET and POST searches alike, costs O(page) to follow at any depth, and
stays stable while slots change (keyset paging never repeats or skips a slot
that did not itself change).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import msgspec

from sandbox_ehr.errors import bad_request

CURSOR_PARAM = "_cursor"


@dataclass(frozen=True, slots=True)
class Cursor:
    params: list[tuple[str, str]]
    after: int | None
    total: int | None
    count: int


def encode(cursor: Cursor) -> str:
    raw = msgspec.json.encode(
        {"p": cursor.params, "k": cursor.after, "t": cursor.total, "c": cursor.count}
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = msgspec.json.decode(raw)
        params = [(str(k), str(v)) for k, v in data["p"]]
        after = data["k"]
        total = data["t"]
        count = int(data["c"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise bad_request(f"invalid or expired page cursor {token[:40]!r}") from exc
    if (after is not None and (not isinstance(after, int) or not 0 <= after < 2**62)) or count < 0:
        raise bad_request("invalid page cursor")
    return Cursor(params, after, total if isinstance(total, int) else None, count)
