"""Asset matching: which units can fill each asset a visit type needs, and which of
them is free for one offer.

Separate from the scan because it answers a different question: the scan asks when
the primary asset is free; matching says which units are candidates at all (the
rule's codes and ids, the request's practitioner, specialty, location and address
parameters, the same-site requirement) and, for a span the scan found, a free unit
of every other asset. The first is worked out once per visit type; the second,
:meth:`AssetMatcher.find_assets`, runs for every candidate start and is kept lean.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from rules.assets import Accepts, AssetIndex, Qualifier, Unit
from rules.offers import Found, found
from rules.request import FindRequest
from rules.schema import KIND_RESOURCE_TYPE, VisitTypeRule
from rules.tokens import TokenSet


@dataclass(frozen=True, slots=True)
class Requirement:
    """A non-primary asset of a visit type with the units that can fill it."""

    index: int
    optional: bool
    same_site: bool
    by_site: dict[str | None, list[Unit]]
    everywhere: list[Unit]
    accepts: Accepts | None  # whether a slot qualifies; None: every slot does

    def pool(self, site: str | None) -> list[Unit]:
        if self.same_site and site is not None:
            return self.by_site.get(site, [])
        return self.everywhere


class AssetMatcher:
    """The units that can fill each asset of one visit type for one request, and
    a free one of each for a given span."""

    def __init__(
        self,
        request: FindRequest,
        rule: VisitTypeRule,
        index: AssetIndex,
        primary: int,
        qualifiers: list[Qualifier],
        *,
        join: bool,
        before: timedelta,
        after: timedelta,
    ):
        self.request = request
        self.rule = rule
        self.index = index
        self.primary = primary
        self.qualifiers = qualifiers
        self.join = join
        self.before = before
        self.after = after
        self.buffered = bool(before or after)

    def requirements(self) -> tuple[list[Requirement], list[Requirement]]:
        """The other assets, split into those that decide whether an offer exists (up
        to the last required one) and the optional ones after it, which only add a
        participant: those are looked up for the offers kept, not for every candidate."""
        others = [self._requirement(i) for i in range(len(self.rule.assets)) if i != self.primary]
        last = max((n for n, r in enumerate(others) if not r.optional), default=-1)
        return others[: last + 1], others[last + 1 :]

    def _requirement(self, i: int) -> Requirement:
        requirement = self.rule.assets[i]
        units = self._units(i)
        by_site: dict[str | None, list[Unit]] = defaultdict(list)
        for unit in units:
            by_site[unit.site].append(unit)
        return Requirement(
            index=i,
            optional=requirement.optional,
            same_site=requirement.same_location_as_practitioner,
            by_site=by_site,
            everywhere=units,
            accepts=self.qualifiers[i].predicate,
        )

    def find_assets(
        self,
        primary: Unit,
        start: datetime,
        end: datetime,
        requirements: list[Requirement],
        used: set[str],
    ) -> list[Found] | None:
        """A free unit for each requirement (an optional one when available), never
        one in ``used`` (which grows with each unit found); None when a required one
        has none."""
        parts: list[Found] = []
        for requirement in requirements:
            for unit in requirement.pool(primary.site):
                if unit.ref in used:
                    continue
                time = unit.free
                span = time.span(start, end, self.join, requirement.accepts)
                if span is None:
                    continue
                if self.buffered and not time.covers(start - self.before, end + self.after):
                    continue
                used.add(unit.ref)
                parts.append(found(requirement.index, unit, *span))
                break
            else:
                if not requirement.optional:
                    return None
        return parts

    def _units(self, i: int) -> list[Unit]:
        """Units that can fill requirement ``i``, in the rule's preference order."""
        requirement = self.rule.assets[i]
        codes = TokenSet(requirement.codes)
        ids = {ref: n for n, ref in enumerate(requirement.ids)}
        units = [
            u
            for u in self.index.by_type.get(KIND_RESOURCE_TYPE[requirement.kind], [])
            if (not ids or u.ref in ids) and (not codes or codes.any_of(u.codes))
        ]
        units.sort(key=lambda u: (ids.get(u.ref, len(ids)), u.ref, u.schedule.id))
        return units

    def primary_units(self) -> list[Unit]:
        """Primary candidates narrowed by the request's practitioner, specialty and
        location parameters and the rule's clinics."""
        request, rule = self.request, self.rule
        is_practitioner = rule.assets[self.primary].kind == "practitioner"
        if request.practitioners and not is_practitioner:
            return []
        specialties = TokenSet(request.specialties)
        if specialties and not is_practitioner and not specialties.any_of(rule.specialties):
            return []
        locations = set(request.locations)
        strings = [s.casefold() for s in request.location_strings]
        out = []
        for unit in self._units(self.primary):
            if rule.locations and unit.site not in rule.locations:
                continue
            if request.practitioners and unit.ref not in request.practitioners:
                continue
            if specialties and is_practitioner and not specialties.any_of(unit.codes):
                continue
            if locations and not self._at_location(unit, locations):
                continue
            if strings and not self._matches_address(unit, strings):
                continue
            out.append(unit)
        return out

    def _at_location(self, unit: Unit, locations: set[str]) -> bool:
        places = [unit.ref, *(self.index.ancestors(unit.site) if unit.site else [])]
        return not locations.isdisjoint(places)

    def _matches_address(self, unit: Unit, strings: list[str]) -> bool:
        address = self.index.actor(unit.site).address if unit.site else None
        if not address:
            return False
        folded = address.casefold()
        return any(s in folded for s in strings)
