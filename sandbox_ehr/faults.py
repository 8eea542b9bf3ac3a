"""Fault injection rules, configured through ``/_sandbox/faults``.

A rule matches requests by method and path pattern (shell-style, e.g.
``/fhir/Slot/$prefetch`` or ``/fhir/Appointment/*``) or, for the ``notify-*``
kinds, notifications (optionally of one subscription). It fires ``times`` times
(unlimited when absent), each time with ``probability`` (seeded, so runs repeat).

Kinds (request side): ``latency`` (adds ``latency_ms``, the request then proceeds;
combines with other rules), ``slow-answer`` (the request is served at once, its
answer held back ``latency_ms``: what the server did, e.g. a notification it
sent, may reach others before the client hears the answer), ``error``
(OperationOutcome with ``status``, default 503; ``500``/``503`` are accepted as
kind aliases), ``429`` (``Retry-After:
retry_after`` seconds), ``timeout`` (hangs ``hang_seconds``, then drops the
connection), ``reset`` (TCP reset, no response), ``truncate`` (the real body cut in
half: invalid JSON), ``invalid-json`` (a 200 whose body is not JSON),
``short-page`` (a valid Bundle with half its entries and no ``next`` link),
``no-includes`` (a Bundle without its ``include`` entries, as from a server that
ignores ``_include``).
Kinds (notification side): ``notify-duplicate`` (sent twice), ``notify-out-of-order``
(sent after the following event), ``notify-drop`` (never sent: the event number
has a gap).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from sandbox_ehr.errors import bad_request

REQUEST_KINDS = {
    "latency",
    "slow-answer",
    "error",
    "429",
    "timeout",
    "reset",
    "truncate",
    "invalid-json",
    "short-page",
    "no-includes",
}
NOTIFY_KINDS = {"notify-duplicate", "notify-out-of-order", "notify-drop"}
ALIASES = {"500": ("error", 500), "503": ("error", 503)}


@dataclass
class FaultRule:
    id: str
    kind: str
    path: str = "*"
    method: str | None = None
    latency_ms: int = 0
    status: int = 503
    retry_after: int = 1
    hang_seconds: float = 30.0
    times: int | None = None
    probability: float = 1.0
    seed: int = 0
    subscription: str | None = None
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("_rng")
        return out

    def try_fire(self) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.probability < 1.0 and self._rng.random() >= self.probability:
            return False
        self.fired += 1
        return True


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """A JSON number of the field's kind (no strings or booleans), not negative."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative number")
    return kind(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


class Faults:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._n = 0

    def clear(self) -> None:
        self.rules.clear()

    def add(self, spec: dict[str, Any]) -> FaultRule:
        if not isinstance(spec, dict):
            raise bad_request("a fault rule is a JSON object")
        spec = dict(spec)
        kind = str(spec.pop("kind", ""))
        if kind in ALIASES:
            kind, status = ALIASES[kind]
            spec.setdefault("status", status)
        if kind not in REQUEST_KINDS | NOTIFY_KINDS:
            raise bad_request(
                f"unknown fault kind {kind!r}; one of {sorted(REQUEST_KINDS | NOTIFY_KINDS)}"
            )
        allowed = {
            "path",
            "method",
            "latency_ms",
            "status",
            "retry_after",
            "hang_seconds",
            "times",
            "probability",
            "seed",
            "subscription",
        }
        unknown = set(spec) - allowed
        if unknown:
            raise bad_request(f"unknown fault rule field(s) {sorted(unknown)}")
        self._n += 1
        try:
            rule = FaultRule(id=f"fault-{self._n}", kind=kind, **spec)
            rule.path = _text(rule.path)
            rule.method = _text(rule.method).upper() if rule.method is not None else None
            rule.subscription = _text(rule.subscription) if rule.subscription is not None else None
            rule.latency_ms = _number(rule.latency_ms, int)
            rule.status = _number(rule.status, int)
            rule.retry_after = _number(rule.retry_after, int)
            rule.hang_seconds = _number(rule.hang_seconds, float)
            rule.probability = _number(rule.probability, float)
            rule.seed = _number(rule.seed, int)
            rule.times = _number(rule.times, int) if rule.times is not None else None
            if not 0.0 <= rule.probability <= 1.0:
                raise ValueError("probability must be within 0..1")
            if kind == "error" and not 400 <= int(rule.status) <= 599:
                raise ValueError("status must be an HTTP error status")
        except (TypeError, ValueError) as exc:
            raise bad_request(f"invalid fault rule: {exc}") from exc
        rule._rng.seed(rule.seed)
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def for_request(self, method: str, path: str) -> tuple[int, list[FaultRule], FaultRule | None]:
        """(added latency in ms, the latency rules that fired, the terminal rule that fires)."""
        latency = 0
        delays: list[FaultRule] = []
        terminal = None
        for rule in self.rules:
            if rule.kind in NOTIFY_KINDS:
                continue
            if rule.method and rule.method != method:
                continue
            if not fnmatchcase(path, rule.path):
                continue
            if rule.kind == "latency":
                if rule.try_fire():
                    latency += int(rule.latency_ms)
                    delays.append(rule)
            elif terminal is None and rule.try_fire():
                terminal = rule
        return latency, delays, terminal

    def for_notification(self, subscription_id: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.kind not in NOTIFY_KINDS:
                continue
            if rule.subscription and rule.subscription != subscription_id:
                continue
            if rule.try_fire():
                return rule
        return None
