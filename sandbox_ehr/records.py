"""Resources clients write: Appointments, Patients, Coverage (kept in memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from sandbox_ehr.errors import not_found

if TYPE_CHECKING:
    from sandbox_ehr.state import Sandbox


class Records:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.resources: dict[str, dict[str, Any]] = {}

    def clear(self) -> None:
        self.resources.clear()

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        found = self.resources.get(f"{rtype}/{rid}")
        if found is None:
            raise not_found(f"{rtype}/{rid}")
        return found

    async def search(self, request: Request, rtype: str) -> Response:
        raise not_found(f"resource type {rtype}")
