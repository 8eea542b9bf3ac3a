"""Content coding of the answers kept packed: gzip for a client that takes it.

Why: ``$find`` answers are kept gzip-coded in the answer memo
(:mod:`app.availability.answer_memo`). Every common HTTP client (httpx, requests,
okhttp, browsers' fetch) sends ``Accept-Encoding: gzip``, and to such a client the kept
bytes go out as they are. The API process does not unpack them (0.2 ms a broad
answer) and the network carries a fifth of the bytes (24 kB for 136 kB). A client
that does not take gzip (curl without ``--compressed``) gets the body unpacked.
"""

from __future__ import annotations

from starlette.datastructures import Headers

from app.availability.answer_memo import unpack
from app.fhir.media import accepted_types

from .responses import FhirResponse

GZIP_CODINGS = frozenset({"gzip", "x-gzip"})  # x-gzip: the old name, still equivalent
VARY = "Accept-Encoding"


def gzip_accepted(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header lets a response be gzip-coded (RFC 9110,
    12.5.3): gzip named without ``q=0``, or ``*`` and gzip not named at all.

    No header at all: no. The RFC then allows any coding, but the clients that send
    none (curl, hand-written scripts) seldom decode one."""
    if not accept_encoding:
        return False
    allowed = accepted_types(accept_encoding)  # the same list-with-q syntax as Accept
    if allowed & GZIP_CODINGS:
        return True
    named = {part.split(";", 1)[0].strip().lower() for part in accept_encoding.split(",")}
    return "*" in allowed and not named & GZIP_CODINGS


def packed_response(headers: Headers, packed: bytes, plain: bytes | None = None) -> FhirResponse:
    """A FHIR response of a gzip-coded body (:func:`~app.availability.answer_memo.pack`):
    as it is when the request accepts gzip, else unpacked (``plain``: the body, when
    the caller has it at hand). ``Vary`` tells caches that the coding follows the
    request's ``Accept-Encoding``."""
    if gzip_accepted(headers.get("accept-encoding")):
        return FhirResponse(packed, headers={"Content-Encoding": "gzip", "Vary": VARY})
    return FhirResponse(unpack(packed) if plain is None else plain, headers={"Vary": VARY})
