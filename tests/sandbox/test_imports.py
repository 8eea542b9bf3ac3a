"""The sandbox stands in for an external EHR: no import cycles, nothing from slotsync."""

from __future__ import annotations

import grimp


def test_sandbox_has_no_import_cycles_and_imports_nothing_from_slotsync():
    graph = grimp.build_graph("sandbox_ehr", "app", "rules", "workers")
    modules = sorted(m for m in graph.modules if m.split(".")[0] == "sandbox_ehr")
    cycles = [
        (a, b)
        for a in modules
        for b in graph.find_modules_directly_imported_by(a)
        if graph.chain_exists(importer=b, imported=a)
    ]
    assert cycles == []
    outside = {
        (a, b)
        for a in modules
        for b in graph.find_modules_directly_imported_by(a)
        if b.split(".")[0] in ("app", "rules", "workers")
    }
    assert outside == set()
