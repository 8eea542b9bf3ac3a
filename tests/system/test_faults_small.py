"""The fault suite (:mod:`benchmarks.faults`) at a small size: every scenario must end
with the cache equal to the EHR, slot by slot and field by field, and no run left
``running``, within the convergence timeout after the fault ended.

One stack (private PostgreSQL and Redis on spare ports, sandbox EHR, API, two worker
processes, beat) serves every scenario; before each, the API, workers and beat are
restarted on an emptied cache and an empty Redis. The recovery timings (chunk lease,
reaper period, quiet-run resend, retry backoff, first follow-up) are shortened here
(``faults.SMALL.timings``) so that the suite runs in minutes; ``make faults`` measures the
product's defaults. A scenario that does not converge costs its timeout (60 s).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks import faults


@pytest.fixture(scope="module")
def system() -> Iterator[faults.System]:
    with faults.running_system(faults.SMALL) as running:
        yield running


def _explain(result: dict[str, Any]) -> str:
    keep = (
        "fault",
        "trigger",
        "differ_at_end",
        "runs_left_running",
        "running_runs",
        "load_run",
        "runs_by_status",
        "status_summary",
    )
    detail = {k: result.get(k) for k in keep}
    return f"\n{faults.row(result)}\n{json.dumps(detail, indent=1, default=str)}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(faults.SCENARIOS))
def test_the_cache_equals_the_ehr_after(system: faults.System, name: str) -> None:
    result = faults.run_scenario(system, name)
    # not a finding about the product: the load ended before the fault could strike
    assert result["valid"], "harness: the load ended before the fault" + _explain(result)
    assert result["differ_at_end"]["total"] == 0, "slots differ" + _explain(result)
    assert result["runs_left_running"] == 0, "runs stuck running" + _explain(result)
    assert result["converged"], _explain(result)
