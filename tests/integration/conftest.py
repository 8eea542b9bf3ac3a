"""Fixtures of the integration tests that sync against an EHR."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.sync_support import SandboxEhr


@pytest.fixture
def sandbox() -> Iterator[Callable[..., SandboxEhr]]:
    """Opens in-process sandbox EHRs (``SandboxEhr(...)`` arguments), closed after the test."""
    with contextlib.ExitStack() as stack:

        def open_sandbox(*args: Any, **kwargs: Any) -> SandboxEhr:
            return stack.enter_context(SandboxEhr(*args, **kwargs))

        yield open_sandbox
