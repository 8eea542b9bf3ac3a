"""What an EHR says it supports, read from its CapabilityStatement (STU3 or R4).

Pure: a CapabilityStatement in, a plain :class:`EhrCapabilities` out. The sync and
booking paths ask it instead of assuming from the FHIR version: is there a
``$prefetch``, a ``$hold``/``$book``, Slot search by ``_lastUpdated``, Slot history
(deletions), Subscriptions, and does ``_count`` exist at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EhrCapabilities:
    fhir_version: str | None = None
    software: str | None = None
    operations: frozenset[str] = frozenset()  # "prefetch", "hold", "book", "find", ...
    interactions: dict[str, frozenset[str]] = field(default_factory=dict)  # type -> codes
    search_params: dict[str, frozenset[str]] = field(default_factory=dict)  # type -> names

    def searches(self, rtype: str, param: str) -> bool:
        return param in self.search_params.get(rtype, frozenset())

    def can(self, rtype: str, interaction: str) -> bool:
        return interaction in self.interactions.get(rtype, frozenset())

    @property
    def prefetch(self) -> bool:
        return "prefetch" in self.operations

    @property
    def hold_and_book(self) -> bool:
        return {"hold", "book"} <= self.operations

    @property
    def subscriptions(self) -> bool:
        return "Subscription" in self.interactions and self.can("Subscription", "create")

    @property
    def slot_changes_since(self) -> bool:
        """Slots changed since a moment can be searched for (incremental polling)."""
        return self.searches("Slot", "_lastUpdated")

    @property
    def slot_history(self) -> bool:
        """``Slot/_history`` lists deletions too (what ``_lastUpdated`` cannot see)."""
        return self.can("Slot", "history-type")

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["operations"] = sorted(self.operations)
        out["interactions"] = {k: sorted(v) for k, v in sorted(self.interactions.items())}
        out["search_params"] = {k: sorted(v) for k, v in sorted(self.search_params.items())}
        out["summary"] = {
            "prefetch": self.prefetch,
            "hold_and_book": self.hold_and_book,
            "subscriptions": self.subscriptions,
            "slot_changes_since": self.slot_changes_since,
            "slot_history": self.slot_history,
            "count": self.searches("Slot", "_count"),
        }
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EhrCapabilities:
        return cls(
            fhir_version=data.get("fhir_version"),
            software=data.get("software"),
            operations=frozenset(data.get("operations") or ()),
            interactions={k: frozenset(v) for k, v in (data.get("interactions") or {}).items()},
            search_params={k: frozenset(v) for k, v in (data.get("search_params") or {}).items()},
        )


def _operation_name(op: dict[str, Any]) -> str | None:
    """``$hold``, ``hold`` or a definition ``.../OperationDefinition/appointment-hold``: hold."""
    name = op.get("name")
    if not (isinstance(name, str) and name):
        definition = op.get("definition")
        name = definition.get("reference") if isinstance(definition, dict) else definition
        if not (isinstance(name, str) and name):
            return None
        name = name.split("|")[0].rstrip("/").rsplit("/", 1)[-1]
    name = name.removeprefix("$").lower()
    for resource in ("appointment-", "slot-", "schedule-"):
        name = name.removeprefix(resource)
    return name


def parse_capability_statement(body: Any) -> EhrCapabilities:
    """Read what we need; anything malformed is simply not a capability."""
    if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
        raise ValueError("not a CapabilityStatement")
    operations: set[str] = set()
    interactions: dict[str, frozenset[str]] = {}
    params: dict[str, frozenset[str]] = {}
    for rest in body.get("rest") or ():
        if not isinstance(rest, dict) or rest.get("mode", "server") != "server":
            continue
        for op in rest.get("operation") or ():
            if isinstance(op, dict) and (name := _operation_name(op)):
                operations.add(name)
        for res in rest.get("resource") or ():
            if not isinstance(res, dict) or not isinstance(res.get("type"), str):
                continue
            rtype = res["type"]
            codes = {i.get("code") for i in res.get("interaction") or () if isinstance(i, dict)} - {
                None
            }
            interactions[rtype] = frozenset(str(c) for c in codes)
            names = {p.get("name") for p in res.get("searchParam") or () if isinstance(p, dict)}
            params[rtype] = frozenset(str(n) for n in names - {None})
            for op in res.get("operation") or ():
                if isinstance(op, dict) and (name := _operation_name(op)):
                    operations.add(name)
    software = body.get("software")
    return EhrCapabilities(
        fhir_version=body.get("fhirVersion") if isinstance(body.get("fhirVersion"), str) else None,
        software=software.get("name") if isinstance(software, dict) else None,
        operations=frozenset(operations),
        interactions=interactions,
        search_params=params,
    )
