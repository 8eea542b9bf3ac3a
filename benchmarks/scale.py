"""``scale``: load and ``$find`` at sizes beyond ``make bench``'s (default 10M slots).

The same parts and the same result shape as ``all`` (``load`` and ``find`` keyed by
size, each with its median, spread and runs), without the freshness and plain-R4
parts, whose cost does not depend on the cache size; one run by default, since a 10M
run takes most of an hour. ``bench-readme`` adds its sizes to the README's growth
curve and chart. Memory: the sandbox, PostgreSQL and every API process each hold the
slots, so pick the largest size that fits (``--sizes 5000000``) and say so.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import suite


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="10000000", help="sandbox sizes, comma list")
    p.add_argument("--repeat", type=int, default=1, help="runs of every part (median, spread)")
    p.add_argument("--ehr-samples", type=int, default=3, help="real-time EHR requests")
    p.add_argument("--load-timeout", type=float, default=7200.0, help="seconds per load")
    p.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    p.add_argument(
        "--offer-memo-max-offers",
        type=int,
        default=None,
        help="the API's SLOTSYNC_OFFER_MEMO_MAX_OFFERS (default: the setting's 2M); a 10M-slot"
        " horizon holds more candidate offers than that, and a memo at its bound forgets"
        " them all and recomposes",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = suite.sizes_of(args)
    steps = suite.size_steps(
        sizes,
        quick=args.quick,
        ehr_samples=args.ehr_samples,
        load_timeout=args.load_timeout,
        offer_memo_max_offers=args.offer_memo_max_offers,
    )
    results: dict[str, Any] = {"sizes": sizes, "quick": bool(args.quick)}
    results.update(suite.run_rounds(steps, args.repeat, ("load", "find")))
    return results


def table(results: dict[str, Any]) -> str:
    return suite.table(results)
