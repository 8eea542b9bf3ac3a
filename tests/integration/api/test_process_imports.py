"""An API process loads PyJWT (and cryptography's bindings, 8 MB of RSS together) only
when it is configured to verify bearer tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = """
import sys
from app.api.main import create_app
from app.settings import Settings
tokens = {"jwt_shared_key": "k" * 32} if sys.argv[2] == "tokens" else {}
settings = Settings(database_url=sys.argv[1], **tokens)
app = create_app(settings)
assert app.state.settings is settings
print("jwt" in sys.modules)
"""


@pytest.mark.parametrize(("credentials", "loaded"), [("api-keys", False), ("tokens", True)])
def test_jwt_is_loaded_only_to_verify_tokens(
    tmp_path: Path, credentials: str, loaded: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'cache.sqlite3'}"
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, url, credentials],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(loaded)
