"""A small scripted FHIR scheduling server for httpx.MockTransport (unit and integration tests).

It answers the reads slotsync makes (STU3 ``Slot/$prefetch`` GET/POST with actor
filters, R4 ``Slot`` search, ``Schedule`` search with actor includes, actor reads,
``Subscription`` create/list) from plain in-memory data, pages with ``total`` and
``next`` links, and fails on demand. The real-process tests use the sandbox EHR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec

from app.core.domain import Slot
from tests.factories import bundle, practitioner_json, schedule_json, slot_json

BASE = "http://ehr.test/fhir"


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Failure:
    path: str  # endswith match on the request path
    status: int = 503
    times: int = 1
    short: bool = False  # a valid Bundle cut to half its entries, without next link
    retry_after: str | None = None


@dataclass
class FakeEhr:
    schedules: dict[str, tuple[str, ...]] = field(default_factory=dict)  # id -> actor refs
    slots: dict[str, Slot] = field(default_factory=dict)
    page_size: int = 3
    failures: list[Failure] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    schedule_search: bool = True
    appointments: list[dict[str, Any]] = field(default_factory=list)  # R4 Appointment search
    on_subscribe: Callable[[dict[str, Any]], None] | None = None

    def appoint(self, slot_id: str, status: str = "booked") -> None:
        """An Appointment on the slot, which stays free (a generic R4 server)."""
        self.appointments.append(
            {
                "resourceType": "Appointment",
                "id": f"appt-{len(self.appointments) + 1}",
                "status": status,
                "start": self.slots[slot_id].start.isoformat(),
                "slot": [{"reference": f"Slot/{slot_id}"}],
                "participant": [{"actor": {"reference": "Patient/p"}, "status": "accepted"}],
            }
        )

    # -- scripting ---------------------------------------------------------------

    def add_schedule(self, sid: str, *actors: str) -> None:
        self.schedules[sid] = actors or (f"Practitioner/{sid}",)

    def put(self, *slots: Slot) -> None:
        for s in slots:
            self.slots[s.id] = s

    def book(self, slot_id: str) -> None:
        self.slots[slot_id] = replace(self.slots[slot_id], status="busy")

    def fail(self, path: str, **kw: Any) -> None:
        self.failures.append(Failure(path=path, **kw))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    # -- serving -----------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/fhir")
        failure = next((f for f in self.failures if path.endswith(f.path) and f.times > 0), None)
        if failure is not None and not failure.short:
            failure.times -= 1
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return httpx.Response(failure.status, headers=headers)
        params = list(request.url.params.multi_items())
        if request.method == "POST" and path == "/Slot/$prefetch" and not _get(params, "page"):
            body = msgspec.json.decode(request.content)
            for p in body["parameter"]:
                value = next(v for k, v in p.items() if k.startswith("value"))
                params.append((p["name"], value))
        if path in ("/Slot/$prefetch", "/Slot"):
            response = self._slots(path, params, prefetch=path.endswith("$prefetch"))
        elif path == "/Appointment":
            statuses = ",".join(_all(params, "status")).split(",")
            found = [a for a in self.appointments if a["status"] in statuses or statuses == [""]]
            return httpx.Response(200, json=bundle(found, None) | {"total": len(found)})
        elif path == "/Schedule":
            if not self.schedule_search:
                return httpx.Response(404)
            response = self._schedules(params)
        elif path == "/Subscription" and request.method == "POST":
            sub = dict(msgspec.json.decode(request.content))
            sub["id"] = f"sub-{len(self.subscriptions) + 1}"
            self.subscriptions.append(sub)
            if self.on_subscribe is not None:
                self.on_subscribe(sub)  # e.g. a handshake, before the answer leaves
            return httpx.Response(201, json=sub)
        elif path == "/Subscription":
            entries = [{"resource": s} for s in self.subscriptions]
            return httpx.Response(200, json={"resourceType": "Bundle", "entry": entries})
        elif path.count("/") == 2 and path.split("/")[1] in (
            "Practitioner",
            "Location",
            "Schedule",
        ):
            return self._read(path.lstrip("/"))
        else:
            return httpx.Response(404)
        if failure is not None and failure.short:
            failure.times -= 1
            response["entry"] = response["entry"][: len(response["entry"]) // 2]
            response.pop("link", None)
        return httpx.Response(200, json=response)

    def _read(self, ref: str) -> httpx.Response:
        rtype, rid = ref.split("/")
        if rtype == "Schedule" and rid in self.schedules:
            return httpx.Response(200, json=schedule_json(rid, list(self.schedules[rid])))
        if rtype == "Practitioner" and any(ref in a for a in self.schedules.values()):
            return httpx.Response(200, json=practitioner_json(rid, f"Dr {rid}"))
        return httpx.Response(404)

    def _slots(self, path: str, params: list[tuple[str, str]], prefetch: bool) -> dict[str, Any]:
        lo = hi = None
        if prefetch:
            lo, hi = _instant(_get(params, "start")), _instant(_get(params, "end"))
        for value in _all(params, "start"):
            if value.startswith("ge"):
                lo = _instant(value[2:])
            elif value.startswith("lt"):
                hi = _instant(value[2:])
        wanted = None
        schedule_param = _get(params, "schedule")
        if schedule_param:
            wanted = {v.split("/")[-1] for v in schedule_param.split(",")}
        practitioners = set(_all(params, "practitioner"))
        locations = set(_all(params, "location-reference"))
        statuses = set((_get(params, "status") or "").split(",")) - {""}
        updated = _get(params, "_lastUpdated")
        since = _instant(updated[2:]) if updated else None
        if prefetch:
            statuses = {"free"}
        chosen = []
        for s in sorted(self.slots.values(), key=lambda s: (s.start, s.id)):
            actors = set(self.schedules.get(s.schedule_id, ()))
            if (lo is not None and s.start < lo) or (hi is not None and s.start >= hi):
                continue
            if wanted is not None and s.schedule_id not in wanted:
                continue
            if practitioners and not practitioners & actors:
                continue
            if locations and not locations & actors:
                continue
            if statuses and s.status not in statuses:
                continue
            if since is not None and (s.last_updated is None or s.last_updated <= since):
                continue
            chosen.append(s)
        return self._page(path, params, chosen, include=bool(_all(params, "_include")))

    def _schedules(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        actor = _get(params, "actor")
        ids = [sid for sid, a in sorted(self.schedules.items()) if actor is None or actor in a]
        return self._page("/Schedule", params, ids, include=True)

    def _page(
        self, path: str, params: list[tuple[str, str]], items: list[Any], include: bool
    ) -> dict[str, Any]:
        n = int(_get(params, "page") or 0)
        chunk = items[n * self.page_size : (n + 1) * self.page_size]
        resources: list[dict[str, Any]] = []
        schedule_ids: list[str] = []
        for item in chunk:
            if isinstance(item, Slot):
                res = slot_json(item)
                if item.last_updated:
                    res["meta"] = {"lastUpdated": item.last_updated.isoformat()}
                resources.append(res)
                schedule_ids.append(item.schedule_id)
            else:
                resources.append(schedule_json(item, list(self.schedules[item])))
        if include:
            for sid in dict.fromkeys(schedule_ids):
                if sid in self.schedules:
                    resources.append(schedule_json(sid, list(self.schedules[sid])))
            refs = {
                ref
                for sid in (schedule_ids or [i for i in chunk if isinstance(i, str)])
                for ref in self.schedules.get(sid, ())
                if ref.startswith("Practitioner/")
            }
            resources += [practitioner_json(r.split("/")[1], f"Dr {r}") for r in sorted(refs)]
        next_url = None
        if (n + 1) * self.page_size < len(items):
            query = [(k, v) for k, v in params if k != "page"] + [("page", str(n + 1))]
            next_url = f"{BASE}{path}?{urlencode(query)}"
        page = bundle(resources, next_url)
        page["total"] = len(items)
        for entry in page["entry"]:
            if entry["resource"]["resourceType"] == "Schedule" and path == "/Schedule":
                entry["search"]["mode"] = "match"
        return page


def _get(params: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in params if k == name), None)


def _all(params: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in params if k == name]
