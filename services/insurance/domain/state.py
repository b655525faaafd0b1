"""A member's adjudication state, kept by the adjudicator keyed by member id: the yearly
co-payment accumulators, what each claim did, and which event last changed each claim
(to tell a redelivery from a new event). Immutable: every change returns a new value."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from types import MappingProxyType
from typing import Mapping

SUBMITTED, REVERSAL = "submitted", "reversal"


@dataclass(frozen=True)
class YearState:
    copay: int = 0                     # dong the member paid as co-payment this calendar year
    exempt_from: date | None = None    # exempt from co-payment from this day on
    exempt_claim: str | None = None    # the claim that crossed the threshold

    def exempt_on(self, day: date) -> bool:
        return self.exempt_from is not None and self.exempt_from <= day


@dataclass(frozen=True)
class ClaimMark:
    day: date
    copay: int
    status: str
    event: str = ""                    # the ClaimSubmitted event that was adjudicated
    reversal_event: str = ""           # the ClaimReversalRequested event that reversed it

    @property
    def year(self) -> int:
        return self.day.year


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class MemberState:
    years: Mapping[int, YearState] = field(default_factory=dict)
    claims: Mapping[str, ClaimMark] = field(default_factory=dict)
    dispenses: Mapping[str, str] = field(default_factory=dict)   # dispense id -> the claim that claimed it

    def year(self, year: int) -> YearState:
        return self.years.get(year, YearState())

    def exempt_on(self, day: date) -> bool:
        return self.year(day.year).exempt_on(day)

    def with_year(self, year: int, value: YearState) -> MemberState:
        return replace(self, years=_frozen({**self.years, year: value}))

    def with_claim(self, claim_id: str, mark: ClaimMark, dispense_id: str | None = None) -> MemberState:
        dispenses = {**self.dispenses, dispense_id: claim_id} if dispense_id else self.dispenses
        return replace(self, claims=_frozen({**self.claims, claim_id: mark}), dispenses=_frozen(dispenses))

    def handled(self, claim_id: str, kind: str, event_id: str) -> bool:
        """True when this very event already changed this claim: a redelivery."""
        mark = self.claims.get(claim_id)
        if mark is None:
            return False
        return (mark.event if kind == SUBMITTED else mark.reversal_event) == event_id

    def marked(self, claim_id: str, kind: str, event_id: str) -> MemberState:
        """Records which event changed the claim. A submission is marked once: a second
        submission of the same claim id changes nothing, so its event is not the one."""
        mark = self.claims.get(claim_id)
        if mark is None or (kind == SUBMITTED and mark.event):
            return self
        changed = replace(mark, event=event_id) if kind == SUBMITTED else replace(mark, reversal_event=event_id)
        return self.with_claim(claim_id, changed)

    # A plain JSON form, for the table that keeps it.

    def to_json(self) -> dict:
        return {"years": {str(y): {"copay": s.copay, "exempt_from": s.exempt_from.isoformat() if s.exempt_from else None,
                                   "exempt_claim": s.exempt_claim} for y, s in self.years.items()},
                "claims": {c: {"day": m.day.isoformat(), "copay": m.copay, "status": m.status, "event": m.event,
                               "reversal_event": m.reversal_event} for c, m in self.claims.items()},
                "dispenses": dict(self.dispenses)}

    @classmethod
    def from_json(cls, doc: dict | None) -> MemberState:
        if not doc:
            return cls()
        years = {int(y): YearState(s["copay"], date.fromisoformat(s["exempt_from"]) if s["exempt_from"] else None,
                                   s["exempt_claim"]) for y, s in doc.get("years", {}).items()}
        claims = {c: ClaimMark(date.fromisoformat(m["day"]), m["copay"], m["status"], m.get("event", ""),
                               m.get("reversal_event", "")) for c, m in doc.get("claims", {}).items()}
        return cls(_frozen(years), _frozen(claims), _frozen(doc.get("dispenses", {})))
