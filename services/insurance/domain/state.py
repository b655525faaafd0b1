"""A member's adjudication state, kept by the adjudicator keyed by member id: the yearly
co-payment accumulators, what each claim did, and which event last changed each claim
(to tell a redelivery from a new event). Immutable: every change returns a new value."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from types import MappingProxyType
from typing import Mapping

from services.insurance.domain.coverage import PricedLine, Sale

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


VISIT_KEPT = timedelta(days=400)   # a visit's claims arrive within its prescriptions' validity and reversal windows
# What the member's record keeps, so that it stays small (a Kafka changelog message) however
# many claims the member has: the marks of recent claims (what a redelivery or a reversal
# needs; a pharmacy reverses within 24 hours), the most recent visits, and this year's and
# last year's accumulators. What is pruned is still in the store (the adjudication of each
# claim, each visit), where the adjudicator looks when the record no longer has it.
MARKS_KEPT = timedelta(days=40)
MARKS_KEPT_MAX = 300
VISITS_KEPT_MAX = 100
# A pruned claim's id is still recognised, by a short digest, for its redeliveries.
PRUNED_KEPT_MAX = 20_000


@dataclass(frozen=True)
class VisitState:
    """One encounter's sales in the order they were adjudicated, and what each was paid last:
    the threshold is judged on all of them together (coverage.split_visit)."""
    day: date
    other_costs_vnd: int
    stated_at: str                     # ISO time of the hospital's latest statement of the other costs
    sales: tuple[Sale, ...] = ()
    paid: Mapping[str, tuple[tuple[int, int, int], ...]] = field(default_factory=dict)  # claim -> (insured, fund, copay) per line

    def with_costs(self, other_costs_vnd: int, stated_at: str) -> VisitState:
        if stated_at <= self.stated_at:
            return self
        return replace(self, other_costs_vnd=other_costs_vnd, stated_at=stated_at)

    def to_json(self) -> dict:
        # Immutable, so its JSON form is made once (a member's record is written at every claim).
        cached = self.__dict__.get("_json")
        if cached is None:
            cached = {"day": self.day.isoformat(), "other_costs_vnd": self.other_costs_vnd, "stated_at": self.stated_at,
                      "sales": [{"sale_id": s.sale_id, "benefit_percent": s.benefit_percent,
                                 "exempt_reason": s.exempt_reason, "lines": [dict(vars(line)) for line in s.lines]}
                                for s in self.sales],
                      "paid": {c: [list(p) for p in paid] for c, paid in self.paid.items()}}
            object.__setattr__(self, "_json", cached)
        return cached

    @classmethod
    def from_json(cls, doc: dict) -> VisitState:
        sales = tuple(Sale(s["sale_id"], tuple(PricedLine(**line) for line in s["lines"]), s["benefit_percent"],
                           s["exempt_reason"]) for s in doc["sales"])
        return cls(date.fromisoformat(doc["day"]), doc["other_costs_vnd"], doc["stated_at"], sales,
                   _frozen({c: tuple(tuple(p) for p in paid) for c, paid in doc["paid"].items()}))


def _digest(claim_id: str) -> str:
    return hashlib.blake2b(claim_id.encode(), digest_size=6).hexdigest()


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class MemberState:
    years: Mapping[int, YearState] = field(default_factory=dict)
    claims: Mapping[str, ClaimMark] = field(default_factory=dict)
    dispenses: Mapping[str, str] = field(default_factory=dict)   # dispense id -> the claim that claimed it
    visits: Mapping[str, VisitState] = field(default_factory=dict)
    claim_visits: Mapping[str, str] = field(default_factory=dict)  # claim id -> its visit key
    pruned_claims: tuple[str, ...] = ()  # digests of claims whose marks were pruned, oldest first

    def with_visit(self, key: str, visit: VisitState | None, claim_id: str = "", latest: date | None = None
                   ) -> MemberState:
        """The visit replaced (None: dropped); visits older than VISIT_KEPT before `latest` go."""
        visits = {**self.visits}
        if visit is None:
            visits.pop(key, None)
        else:
            visits[key] = visit
        if latest is not None:
            visits = {k: v for k, v in visits.items() if latest - v.day <= VISIT_KEPT}
        claim_visits = {c: k for c, k in {**self.claim_visits, **({claim_id: key} if claim_id else {})}.items()
                        if k in visits}
        return replace(self, visits=_frozen(visits), claim_visits=_frozen(claim_visits))

    def was_pruned(self, claim_id: str) -> bool:
        """This claim was adjudicated and its mark pruned: an event of it is a redelivery."""
        return claim_id not in self.claims and _digest(claim_id) in self.pruned_claims

    def pruned(self, today: date) -> MemberState:
        """The record bounded (see MARKS_KEPT): recent marks, recent visits, two years."""
        years = {y: v for y, v in self.years.items() if y >= today.year - 1}
        recent = [(c, m) for c, m in self.claims.items() if today - m.day <= MARKS_KEPT]
        claims = dict(sorted(recent, key=lambda cm: cm[1].day)[-MARKS_KEPT_MAX:])   # stable: adjudication order
        dispenses = {d: c for d, c in self.dispenses.items() if c in claims}
        visits = dict(sorted(self.visits.items(), key=lambda kv: kv[1].day)[-VISITS_KEPT_MAX:])
        claim_visits = {c: k for c, k in self.claim_visits.items() if k in visits}
        if (len(years), len(claims), len(visits)) == (len(self.years), len(self.claims), len(self.visits)):
            return self
        dropped = tuple(_digest(c) for c in self.claims if c not in claims)
        pruned_claims = (self.pruned_claims + dropped)[-PRUNED_KEPT_MAX:]
        return MemberState(_frozen(years), _frozen(claims), _frozen(dispenses), _frozen(visits), _frozen(claim_visits),
                           pruned_claims)

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
                "dispenses": dict(self.dispenses),
                "visits": {k: v.to_json() for k, v in self.visits.items()}, "claim_visits": dict(self.claim_visits),
                "pruned": " ".join(self.pruned_claims)}

    @classmethod
    def from_json(cls, doc: dict | None) -> MemberState:
        if not doc:
            return cls()
        years = {int(y): YearState(s["copay"], date.fromisoformat(s["exempt_from"]) if s["exempt_from"] else None,
                                   s["exempt_claim"]) for y, s in doc.get("years", {}).items()}
        claims = {c: ClaimMark(date.fromisoformat(m["day"]), m["copay"], m["status"], m.get("event", ""),
                               m.get("reversal_event", "")) for c, m in doc.get("claims", {}).items()}
        visits = {k: VisitState.from_json(v) for k, v in doc.get("visits", {}).items()}
        return cls(_frozen(years), _frozen(claims), _frozen(doc.get("dispenses", {})), _frozen(visits),
                   _frozen(doc.get("claim_visits", {})), tuple(doc.get("pruned", "").split()))
