"""The demo banner names a `slotsync` the user's shell can run from the project root."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.cli import demo
from app.settings import Settings


@pytest.fixture
def venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root holding .venv/bin/slotsync, this process's prefix and directory."""
    script = tmp_path / ".venv" / "bin" / "slotsync"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.setattr(demo.sys, "prefix", str(tmp_path / ".venv"))
    monkeypatch.chdir(tmp_path)
    return script


def banner(tmp_path: Path) -> str:
    return demo.demo_banner(
        Settings(data_dir=tmp_path),
        host="127.0.0.1",
        port=8000,
        start=date(2030, 1, 7),
        end=date(2030, 1, 8),
    )


def test_a_virtualenv_not_activated_gets_the_scripts_path(venv, monkeypatch, tmp_path):
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    assert demo.slotsync_command() == ".venv/bin/slotsync"
    assert " .venv/bin/slotsync status" in banner(tmp_path)


def test_another_slotsync_first_on_path_is_not_ours(venv, monkeypatch, tmp_path):
    other = tmp_path / "elsewhere" / "slotsync"
    monkeypatch.setattr(demo.shutil, "which", lambda name: str(other))
    assert demo.slotsync_command() == ".venv/bin/slotsync"


def test_an_activated_virtualenv_gets_the_plain_command(venv, monkeypatch, tmp_path):
    monkeypatch.setattr(demo.shutil, "which", lambda name: str(venv))
    assert demo.slotsync_command() == "slotsync"
    text = banner(tmp_path)
    assert " slotsync status" in text and ".venv/bin" not in text


def test_elsewhere_than_the_project_root_the_path_is_absolute(venv, monkeypatch, tmp_path):
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    assert demo.slotsync_command() == str(venv)


def test_without_a_script_in_the_prefix_the_plain_command(tmp_path, monkeypatch):
    monkeypatch.setattr(demo.sys, "prefix", str(tmp_path))
    assert demo.slotsync_command() == "slotsync"
