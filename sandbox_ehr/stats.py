"""Request and notification counters, so tests can see what a client really called."""

from __future__ import annotations

from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()  # "GET /fhir/Slot/$prefetch" (route template)
        self.paths: Counter[str] = Counter()  # "GET /fhir/Slot/sl-00000001" (raw path)
        self.statuses: Counter[str] = Counter()  # "GET /fhir/Slot/$prefetch 503"
        self.faults: Counter[str] = Counter()  # fault rule id -> times fired
        self.notifications: Counter[str] = Counter()  # "sub-1 event-notification" etc.
        self.notification_failures: Counter[str] = Counter()

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "paths": dict(self.paths),
            "statuses": dict(self.statuses),
            "faults": dict(self.faults),
            "notifications": dict(self.notifications),
            "notificationFailures": dict(self.notification_failures),
        }
