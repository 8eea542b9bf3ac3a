"""Version stamps and server-assigned ids of the resources clients write.

Shared by :mod:`sandbox_ehr.appointments` and :mod:`sandbox_ehr.patients`, which
version their resources the same way.
"""

from __future__ import annotations

import time
from collections.abc import Container
from typing import Any

from sandbox_ehr.timefmt import instant_ms


def stamp(
    resource: dict[str, Any], version: int, *, stu3: bool, profile: str | None = None
) -> dict[str, Any]:
    """Set ``meta.versionId`` and ``meta.lastUpdated`` (now); a profile is claimed in STU3 only."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant_ms(int(time.time() * 1000))
    if profile and stu3:
        meta["profile"] = [profile]
    resource["meta"] = meta
    return resource


class IdSequence:
    """Ids ``<prefix>-<n>`` in creation order, skipping any a client already chose (PUT)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.n = 0

    def next(self, taken: Container[str]) -> str:
        while True:
            self.n += 1
            candidate = f"{self.prefix}-{self.n}"
            if candidate not in taken:
                return candidate
