"""Stateless ids for proposed appointments.

A proposed appointment exists only in a ``$find`` answer; ``$hold``/``$book`` may
reach any API replica later, so the id itself must let the server rebuild the
appointment (visit type, time, slots, participants) and prove it issued it.

Design, because a FHIR STU3 id is limited to ``[A-Za-z0-9\\-\\.]{1,64}`` and a signed
list of several slot ids does not fit:

* the **token** (:func:`encode`) is the full signed proposal:
  ``base64url(version byte || HMAC-SHA256(secret, body)[:16] || deflate(json body))``
  without padding. It is carried in ``Appointment.identifier`` (system
  :data:`IDENTIFIER_SYSTEM`) and is what ``$hold``/``$book`` accept as ``appt-id``
  (also found in the identifier of an ``appt-resource`` sent back to us);
* ``Appointment.id`` is :func:`fhir_id` of the token, a short content hash
  (``p`` + 32 hex digits): a valid, stable FHIR id, but not resolvable by itself.

The token is deterministic (no timestamps inside), so the same offer gets the
same id in every answer and on every replica. Tampering with any byte changes the
MAC and :func:`decode` raises :class:`InvalidAppointmentId`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial

from app.core.domain import VISIT_TYPE_SYSTEM
from app.core.errors import SlotsyncError

IDENTIFIER_SYSTEM = "urn:slotsync:proposal"
_VERSION = 1
_MAC_BYTES = 16
_MAX_TOKEN_CHARS = 4096
_MAX_BODY_BYTES = 16384


# json.dumps with non-default options builds a new encoder per call; $find signs
# thousands of offers per answer, so build the (identical) encoder once.
_BODY_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class InvalidAppointmentId(SlotsyncError, ValueError):
    """The token was not issued by us with this secret, or is malformed."""


@dataclass(frozen=True, slots=True)
class ProposalPayload:
    """What a proposed appointment is: enough to rebuild and re-check it."""

    visit_type: str  # token "system|code"
    start: datetime
    end: datetime
    slot_ids: tuple[str, ...]
    participants: tuple[str, ...]  # actor references, e.g. "Practitioner/pr-1"


def encode(payload: ProposalPayload, secret: bytes) -> str:
    """Sign ``payload`` into a compact URL-safe token."""
    system, _, code = payload.visit_type.rpartition("|")
    visit_type = code if system == VISIT_TYPE_SYSTEM else payload.visit_type
    body = _BODY_ENCODER.encode(
        [
            visit_type,
            _epoch(payload.start),
            _epoch(payload.end),
            list(payload.slot_ids),
            list(payload.participants),
        ]
    ).encode("utf-8")
    # raw deflate with a 512-byte window and the smallest state: the body is tiny,
    # and setting up the default state cost ~50 us per offer $find returns (any
    # raw-deflate reader with the default window reads it)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -9, 1)
    packed = deflater.compress(body) + deflater.flush()
    raw = bytes([_VERSION]) + _mac(secret, packed) + packed
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def signer(secret: bytes, remember: int = 1 << 14) -> Callable[[ProposalPayload], str]:
    """:func:`encode` with ``secret``, remembering the last ``remember`` tokens: a
    token depends on its payload alone, and the same offers recur in answer after
    answer, so signing one again costs a lookup instead of deflate and HMAC (~50 us).
    Each remembered token holds ~350 bytes with its payload: 16,384 of them (164
    broad pages of distinct offers) are ~6 MB of an API process; 65,536 were 23 MB
    once varied traffic had filled them."""
    return lru_cache(maxsize=remember)(partial(encode, secret=secret))


def decode(token: str, secret: bytes) -> ProposalPayload:
    """Verify and unpack a token from :func:`encode`."""
    if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_CHARS:
        raise InvalidAppointmentId("appointment id has an invalid length")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidAppointmentId("appointment id is not base64url") from exc
    if len(raw) <= 1 + _MAC_BYTES or raw[0] != _VERSION:
        raise InvalidAppointmentId("appointment id has an unknown format")
    mac, packed = raw[1 : 1 + _MAC_BYTES], raw[1 + _MAC_BYTES :]
    if not hmac.compare_digest(mac, _mac(secret, packed)):
        raise InvalidAppointmentId("appointment id signature does not match")
    try:
        inflater = zlib.decompressobj(-15)
        body = inflater.decompress(packed, _MAX_BODY_BYTES)
    except zlib.error as exc:
        raise InvalidAppointmentId("appointment id payload is malformed") from exc
    if inflater.unconsumed_tail:
        raise InvalidAppointmentId("appointment id is too large")
    try:
        visit_type, start, end, slot_ids, participants = json.loads(body)
        if not all(isinstance(s, str) for s in [visit_type, *slot_ids, *participants]):
            raise TypeError("expected strings")
        return ProposalPayload(
            visit_type=visit_type if "|" in visit_type else f"{VISIT_TYPE_SYSTEM}|{visit_type}",
            start=datetime.fromtimestamp(int(start), UTC),
            end=datetime.fromtimestamp(int(end), UTC),
            slot_ids=tuple(slot_ids),
            participants=tuple(participants),
        )
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        # Only reachable with a valid MAC, i.e. our own secret used for another format.
        raise InvalidAppointmentId("appointment id payload is malformed") from exc


def fhir_id(token: str) -> str:
    """The ``Appointment.id`` for a token: short, stable, a valid STU3/R4 id. Not
    remembered: hashing costs ~0.5 us, and a cache of 65,536 ids held 13.6 MB."""
    return "p" + hashlib.sha256(token.encode("ascii")).hexdigest()[:32]


def _mac(secret: bytes, packed: bytes) -> bytes:
    if not secret:
        raise ValueError("an appointment id secret is required")
    return hmac.digest(secret, packed, hashlib.sha256)[:_MAC_BYTES]


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("proposal times must be timezone-aware")
    return int(moment.timestamp())
