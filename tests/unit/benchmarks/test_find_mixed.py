"""The mixed ``$find`` workload: one broad request in five, each kind cycling through
all of its own start days (a workload that repeated one window would flatter the figure)."""

from __future__ import annotations

from datetime import date, timedelta

from benchmarks.find import broad, mixed_requests, typical


def _days(n: int, first: date = date(2027, 1, 4)) -> list[date]:
    return [first + timedelta(days=k) for k in range(n)]


def test_one_request_in_five_is_broad_and_every_start_day_is_asked() -> None:
    typical_days, broad_days = _days(80), _days(55)
    requests = mixed_requests(typical_days, broad_days)
    broad_asked = [r for r in requests if r in [broad(d) for d in broad_days]]
    typical_asked = [r for r in requests if r in [typical(d) for d in typical_days]]
    assert len(broad_asked) + len(typical_asked) == len(requests)
    assert len(broad_asked) * 5 == len(requests)
    assert all(requests[k] in broad_asked for k in range(4, len(requests), 5))
    assert {dict(r)["start"] for r in broad_asked} == {d.isoformat() for d in broad_days}
    assert {dict(r)["start"] for r in typical_asked} == {d.isoformat() for d in typical_days}
