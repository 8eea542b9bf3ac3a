"""What a caller is and may do: the :class:`Principal`, SMART scopes and how one grants
another, and the 401/403 answers (with their ``WWW-Authenticate`` challenges)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException

APPOINTMENT_READ = "system/Appointment.read"
APPOINTMENT_WRITE = "system/Appointment.write"
PATIENT_WRITE = "system/Patient.write"
COVERAGE_WRITE = "system/Coverage.write"

# SMART v2 permission letters equivalent to the v1 ``read``/``write`` we require.
_V2_EQUIVALENT = {"read": frozenset("rs"), "write": frozenset("cu")}


def scope_grants(held: Iterable[str], required: str) -> bool:
    """Whether any held scope grants ``required`` (``system/<Type>.<read|write>`` or a plain name).

    SMART wildcards (``system/*.read``, ``system/Appointment.*``) and v2 permission
    letters (``system/Appointment.rs`` for read, ``.cu``/``.cud``/``.cruds`` for write)
    are honoured. Names outside that pattern (the admin scope) only match exactly, so
    no wildcard ever makes a consumer an administrator.
    """
    context, slash, rest = required.partition("/")
    resource, dot, permission = rest.rpartition(".")
    smart = bool(slash and dot and resource and permission in _V2_EQUIVALENT)
    for scope in held:
        if scope == required:
            return True
        if not smart:
            continue
        h_context, h_slash, h_rest = scope.partition("/")
        h_resource, h_dot, h_permission = h_rest.rpartition(".")
        if not (h_slash and h_dot and h_context == context and h_resource in (resource, "*")):
            continue
        if h_permission in ("*", permission):
            return True
        letters = frozenset(h_permission.split("?", 1)[0])
        if letters <= frozenset("cruds") and _V2_EQUIVALENT[permission] <= letters:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` is safe to log (client id or key fingerprint)."""

    subject: str
    scopes: frozenset[str]
    method: Literal["jwt", "api-key"]

    def has(self, scope: str) -> bool:
        return scope_grants(self.scopes, scope)


def unauthorized(message: str, *, error: str = "invalid_token") -> HTTPException:
    return HTTPException(
        401,
        message,
        headers={"WWW-Authenticate": f'Bearer realm="slotsync", error="{error}"'},
    )


def forbidden(missing: Iterable[str]) -> HTTPException:
    needed = " ".join(missing)
    return HTTPException(
        403,
        f"insufficient scope: this request needs {needed}",
        headers={
            "WWW-Authenticate": f'Bearer realm="slotsync", error="insufficient_scope", '
            f'scope="{needed}"'
        },
    )
