"""Re-reading schedule windows from the EHR right after a write changed them.

After a conflict (the EHR says a slot is gone) or a confirmed cancellation the
cache must catch up now, not at the next notification. The service hands the
affected (schedule, start, end) windows to a ``refresh`` callable; the default
the API wires in is the sync pipeline's per-schedule refresh
(:func:`app.sync.refresh.refresh_windows`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple

log = logging.getLogger(__name__)


class Window(NamedTuple):
    schedule_id: str
    start: datetime
    end: datetime


# Re-reads windows from the EHR. Whatever it returns is ignored (``refresh_windows``
# returns its chunk results), hence ``object`` rather than ``None``.
Refresh = Callable[[Sequence[Window]], object]


def refresh_quietly(refresh: Refresh, windows: Sequence[Window]) -> None:
    """Run ``refresh`` and log a failure: the write already happened, the sync catches up."""
    if not windows:
        return
    try:
        refresh(windows)
    except Exception:
        log.warning("refresh of %d window(s) after a write failed", len(windows), exc_info=True)
