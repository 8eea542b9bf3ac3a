"""Which requests get a gzip-coded answer: RFC 9110's Accept-Encoding, q-values and
wildcard included; no header means the plain body."""

from __future__ import annotations

import pytest

from app.api.encoding import gzip_accepted


@pytest.mark.parametrize(
    "header",
    [
        "gzip",
        "gzip, deflate",  # httpx, requests
        "gzip, deflate, br, zstd",  # browsers
        "deflate, gzip;q=0.5",
        "GZip",
        "x-gzip",
        "*",
        "br;q=1.0, *;q=0.1",
        " gzip ; q=1 ",
    ],
)
def test_gzip_is_taken(header: str) -> None:
    assert gzip_accepted(header)


@pytest.mark.parametrize(
    "header",
    [
        None,  # curl without --compressed: it could not read gzip
        "",
        "identity",
        "deflate",
        "br, zstd",
        "gzip;q=0",
        "gzip; q=0.000, deflate",
        "*, gzip;q=0",  # the wildcard does not undo a refusal
        "*;q=0",
        "gzipped",
    ],
)
def test_gzip_is_not_taken(header: str | None) -> None:
    assert not gzip_accepted(header)
