"""Throttling of repeated failed authentication, per client address.

A client that fails to authenticate ``limit`` times within ``window`` seconds gets 429
with ``Retry-After`` (until its oldest failure leaves the window) instead of another
credential check: guessing keys or tokens gets slow, and a misconfigured client is told
so clearly. In process, per API process: enough to blunt guessing without a shared store.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_CLIENTS = 10_000  # addresses remembered at once; the quietest are forgotten first


class FailedAuthThrottle:
    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None if it may now."""
        if self.limit <= 0:
            return None
        now = self._clock()
        with self._lock:
            times = self._failures.get(client)
            if times is None:
                return None
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < self.limit:
                return None
            return times[0] + self.window - now

    def failed(self, client: str) -> None:
        if self.limit <= 0:
            return
        with self._lock:
            times = self._failures.pop(client, None) or deque(maxlen=self.limit)
            times.append(self._clock())
            self._failures[client] = times  # most recent last
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)
