"""The EHR's answers are freed as soon as they are dropped, not at the next run of the
cyclic collector: a load reads pages of 1-2 MB each, several per thread at once."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import httpx
import pytest

from app.ehr.transport import RetryPolicy, send

BODY = b'{"resourceType": "Bundle", "entry": []}' * 1000


@pytest.fixture
def collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_an_answer_is_freed_by_reference_counting_and_still_reads_whole(collector_off):
    http = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, content=BODY)))
    response = send(http, "GET", "http://ehr.test/Slot", judge=lambda a: a, policy=RetryPolicy())
    assert response.content == BODY
    assert response.read() == BODY
    assert b"".join(response.iter_bytes()) == BODY
    freed = weakref.ref(response)
    del response
    assert freed() is None


def test_httpx_alone_keeps_an_answer_for_the_collector(collector_off):
    """What the above guards against: if httpx stops doing this, the fix can go."""
    http = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, content=BODY)))
    response = http.get("http://ehr.test/Slot")
    freed = weakref.ref(response)
    del response
    assert freed() is not None
    gc.collect()
    assert freed() is None
