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


CLI_LIBRARIES = """
import sys
import {module}
import httpx
with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204))) as client:
    assert client.get("http://ehr.test/").status_code == 204
print(sorted(m for m in ("rich", "pygments", "httpx._main") if sys.modules.get(m) is not None))
"""


@pytest.mark.parametrize("module", ["app.api.main", "workers.tasks"])
def test_server_processes_leave_out_httpx_command_line_client(module: str) -> None:
    """httpx imports its CLI (rich and pygments with it, ~9 MB) unless told not to;
    app/__init__ tells it, and httpx itself still works."""
    out = subprocess.run(
        [sys.executable, "-c", CLI_LIBRARIES.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
