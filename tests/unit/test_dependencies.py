"""The server runs on its runtime dependencies alone: the sandbox EHR's (numpy) and the
tests' stay in their extras, and one JSON library (msgspec) serves every process."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.paths import REPO

SERVER_MODULES = (
    "app.api.main",
    "app.cli.main",
    "workers.tasks",
    "app.sync.load",
    "rules.composer",
)


def test_server_processes_import_nothing_from_the_extras() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in SERVER_MODULES)
        + "print(sorted(m for m in ('numpy', 'pytest', 'psutil') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_runtime_dependencies_leave_out_the_sandbox_and_a_second_json_library() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    assert "numpy" not in runtime and "orjson" not in runtime
    assert any(d.startswith("numpy") for d in project["optional-dependencies"]["sandbox"])
    for package in ("app", "workers", "rules", "sandbox_ehr", "benchmarks", "tests"):
        for source in (REPO / package).rglob("*.py"):
            assert "import " + "orjson" not in source.read_text(), source
