"""The architecture contracts (``[tool.importlinter]`` in pyproject.toml) hold, and they
bite: a forbidden arrow or a cycle planted in a copy of the tree breaks the build."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

PACKAGES = ("app", "rules", "workers", "sandbox_ehr", "benchmarks")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(REPO / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("*.pyc"))
    return root


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("app/cache/db.py", "import app.api.main", "The cache knows nothing of HTTP"),
        ("rules/hours.py", "import app.cache.db", "The rules engine sees only the domain core"),
        ("app/sync/messages.py", "import workers.tasks", "Nothing in app imports the workers"),
        ("app/core/ids.py", "import app.sync.runs", "app's layers point one way"),
        ("app/api/deps.py", "import sqlalchemy", "Routers hold no SQL"),
        ("app/cache/rows.py", "import app.cache.repository", "No import cycles"),
        ("benchmarks/processes.py", "import tests.factories", "Benchmarks do not import the tests"),
    ],
)
def test_a_planted_violation_breaks_its_contract(
    tree_copy: Path, module: str, planted: str, contract: str
) -> None:
    path = tree_copy / module
    original = path.read_text()
    path.write_text(original + f"\n{planted}  # planted by the test\n")
    try:
        done = lint_imports(tree_copy)
    finally:
        path.write_text(original)
    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), done.stdout
