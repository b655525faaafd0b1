"""The insurance service's Redis keyspace: members and their three identifiers, quotes,
adjudicated claims (read model), the accumulator mirror, the prescriptions it has seen,
and the controlled-prescription windows for doctor-shopping alerts."""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import date, datetime, timedelta, timezone

from services.common.packed import pack, unpack
from services.common.scripts import lua
from services.kernel.calendar import local_day
from services.kernel.retention import DEFAULT_RETENTION, LONGEST_WINDOW, epoch_ms, live_until, window_end
from services.insurance.domain.adjudication import (
    Adjudication,
    LineDecision,
    QuotedLine,
)
from services.insurance.domain.alerts import WINDOW, ControlledPrescription
from services.insurance.domain.identifiers import Identifier
from services.insurance.domain.model import CardPeriod, Member
from services.insurance.domain.prescriptions import Patient, PrescriptionFacts, Visit
from services.insurance.domain.state import VisitState, YearState

P = "insurance"
QUOTE_TTL_SECONDS = 30 * 24 * 3600

def _member_json(m: Member) -> str:
    doc = {"member_id": m.member_id, "citizen_id": m.citizen_id, "full_name": m.full_name,
           "date_of_birth": m.date_of_birth.isoformat(), "sex": m.sex,
           "cards": [{"card_code": c.card_code, "valid_from": c.valid_from.isoformat(),
                      "valid_to": c.valid_to.isoformat(), "registered_facility": c.registered_facility}
                     for c in m.cards],
           "copay_exempt_from": m.copay_exempt_from.isoformat() if m.copay_exempt_from else "",
           "five_years_from": m.five_years_from.isoformat() if m.five_years_from else ""}
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


def _member_from_json(raw: bytes) -> Member:
    d = json.loads(raw)
    cards = tuple(sorted((CardPeriod(c["card_code"], date.fromisoformat(c["valid_from"]),
                                     date.fromisoformat(c["valid_to"]), c["registered_facility"])
                          for c in d["cards"]), key=lambda c: c.valid_from))
    optional = lambda v: date.fromisoformat(v) if v else None  # noqa: E731
    return Member(d["member_id"], d["citizen_id"], d["full_name"], date.fromisoformat(d["date_of_birth"]), d["sex"],
                  cards, optional(d["copay_exempt_from"]), optional(d["five_years_from"]))


def _adjudication_packed(a: Adjudication) -> bytes:
    doc = {f.name: getattr(a, f.name) for f in fields(a)}
    doc["adjudicated_at"] = a.adjudicated_at.isoformat()
    doc["dispensed_on"] = a.dispensed_on.isoformat() if a.dispensed_on else None
    doc["lines"] = [asdict(line) for line in a.lines]
    return pack(doc)


def _adjudication_of(raw: bytes) -> Adjudication:
    d = unpack(raw)
    d["adjudicated_at"] = datetime.fromisoformat(d["adjudicated_at"])
    d["dispensed_on"] = date.fromisoformat(d["dispensed_on"]) if d["dispensed_on"] else None
    d["lines"] = tuple(LineDecision(**line) for line in d["lines"])
    return Adjudication(**d)


def facts_packed(f: PrescriptionFacts) -> bytes:
    v = f.visit
    return pack({"code": f.code, "facility_code": f.facility_code, "citizen_id": f.patient.citizen_id,
                       "card": f.patient.card, "lines": [list(line) for line in f.lines],
                       "visit": [v.key, v.other_costs_vnd, v.day.isoformat() if v.day else None,
                                 v.stated_at.isoformat()], "not_available": sorted(f.not_available),
                       "valid_until": f.valid_until.isoformat() if f.valid_until else None})


def facts_of(raw) -> PrescriptionFacts:
    d = unpack(raw)
    key, costs, day, stated_at = d["visit"]
    return PrescriptionFacts(d["code"], d["facility_code"], Patient(d["citizen_id"], d["card"]),
                             tuple(tuple(line) for line in d["lines"]),
                             Visit(key, costs, date.fromisoformat(day) if day else None,
                                   datetime.fromisoformat(stated_at)), frozenset(d.get("not_available", ())),
                             date.fromisoformat(d["valid_until"]) if d.get("valid_until") else None)


def _visit_of(raw) -> VisitState | None:
    return VisitState.from_json(unpack(raw)) if raw else None


def _year_json(y: YearState) -> str:
    return json.dumps({"copay": y.copay, "exempt_from": y.exempt_from.isoformat() if y.exempt_from else None,
                       "exempt_claim": y.exempt_claim}, sort_keys=True)


def _year_from_json(raw: bytes) -> YearState:
    d = json.loads(raw)
    return YearState(d["copay"], date.fromisoformat(d["exempt_from"]) if d["exempt_from"] else None, d["exempt_claim"])


class RedisInsuranceStore:
    def __init__(self, redis, retention: timedelta = DEFAULT_RETENTION):
        self.redis = redis
        self.retention = retention
        self._upsert = redis.register_script(lua(__file__, "upsert_member"))

    # Members

    @staticmethod
    def _member_key(ssn: str) -> str:
        return f"{P}:member:{{{ssn}}}"

    async def upsert_member(self, member: Member) -> tuple[str, str]:
        """('changed' | 'same' | 'conflict', detail). The citizen id is claimed first (SET NX: a
        citizen id that belongs to someone else stops here, before anything is written), then
        the member, then its cards' index keys; each step is idempotent, so an import that stops
        half-way is finished by running it again. One key per step: Redis Cluster-safe."""
        citizen_key = f"{P}:idx:cccd:{member.citizen_id}"
        owner = await self.redis.set(citizen_key, member.member_id, nx=True, get=True)
        owner = owner.decode() if isinstance(owner, bytes) else owner
        if owner and owner != member.member_id:
            return "conflict", owner
        outcome = await self._upsert(keys=[self._member_key(member.member_id)], args=[_member_json(member)])
        async with self.redis.pipeline(transaction=False) as pipe:
            for card in member.cards:
                pipe.set(f"{P}:idx:card:{card.card_code}", member.member_id)
            await pipe.execute()
        return (outcome.decode() if isinstance(outcome, bytes) else outcome), ""

    async def member(self, ssn: str) -> Member | None:
        raw = await self.redis.get(self._member_key(ssn))
        return _member_from_json(raw) if raw else None

    async def resolve(self, identifier: Identifier) -> Member | None:
        if identifier.kind == "ssn":
            return await self.member(identifier.value)
        ssn = await self.redis.get(f"{P}:idx:{identifier.kind}:{identifier.value}")
        return await self.member(ssn.decode()) if ssn else None

    # Quotes

    async def save_quote(self, quote_id: str, member_id: str, lines: list[QuotedLine]) -> None:
        doc = {"member_id": member_id, "lines": [asdict(line) for line in lines]}
        await self.redis.set(f"{P}:quote:{quote_id}", pack(doc), ex=QUOTE_TTL_SECONDS)

    async def quote(self, quote_id: str) -> dict[int, QuotedLine] | None:
        raw = await self.redis.get(f"{P}:quote:{quote_id}") if quote_id else None
        if raw is None:
            return None
        return {line["line_number"]: QuotedLine(**line) for line in unpack(raw)["lines"]}

    # Claims (read model) and the accumulator mirror

    async def save_adjudication(self, adjudication: Adjudication, year: tuple[int, YearState] | None = None,
                                visit: tuple[str, VisitState] | None = None) -> None:
        """The claim's outcome and, in the same round trip, the member's accumulator for its
        year and its visit's sales (what a quote at the counter adds a sale to)."""
        sold_on = adjudication.dispensed_on or local_day(adjudication.adjudicated_at)
        async with self.redis.pipeline(transaction=False) as pipe:
            # live state only: a claim can change until its sale's reversal window ends
            pipe.set(f"{P}:claim:{adjudication.claim_id}", _adjudication_packed(adjudication),
                     pxat=epoch_ms(live_until(sold_on, self.retention)))
            if year is not None:
                key = f"{P}:accumulator:{{{adjudication.member_id}}}"
                pipe.hset(key, str(year[0]), _year_json(year[1]))
                # a year's co-payment counts until the next year's end (late claims, reversals)
                kept = epoch_ms(window_end(date(year[0] + 1, 12, 31)) + self.retention)
                pipe.pexpireat(key, kept, nx=True)
                pipe.pexpireat(key, kept, gt=True)
            if visit is not None:
                # live state only: the visit's prescriptions (issued on its day) can be sold at
                # most LONGEST_WINDOW after it, then reversed for a day
                pipe.set(self._visit_key(adjudication.member_id, visit[0]), pack(visit[1].to_json()),
                         pxat=epoch_ms(live_until(visit[1].day + LONGEST_WINDOW, self.retention)))
            await pipe.execute()

    @staticmethod
    def _visit_key(member_id: str, key: str) -> str:
        return f"{P}:visit:{{{member_id}}}:{key}"

    async def visit(self, member_id: str, key: str) -> VisitState | None:
        raw = await self.redis.get(self._visit_key(member_id, key))
        return _visit_of(raw)

    async def adjudication(self, claim_id: str) -> Adjudication | None:
        raw = await self.redis.get(f"{P}:claim:{claim_id}")
        return _adjudication_of(raw) if raw else None

    async def year_and_visit(self, member_id: str, year: int, visit_key: str | None
                             ) -> tuple[YearState | None, VisitState | None]:
        if visit_key is None:
            return await self.year(member_id, year), None
        async with self.redis.pipeline(transaction=False) as pipe:   # one hash slot: the member's
            pipe.hget(f"{P}:accumulator:{{{member_id}}}", str(year))
            pipe.get(self._visit_key(member_id, visit_key))
            year_raw, visit_raw = await pipe.execute()
        return (_year_from_json(year_raw) if year_raw else None,
                _visit_of(visit_raw))

    async def year(self, member_id: str, year: int) -> YearState | None:
        raw = await self.redis.hget(f"{P}:accumulator:{{{member_id}}}", str(year))
        return _year_from_json(raw) if raw else None

    # Prescriptions seen on rx.prescriptions.v1

    async def save_prescription(self, facts: PrescriptionFacts) -> None:
        """Kept until a claim of it can no longer come (a retention after its window and a last
        sale's reversal); without a known window, LONGEST_WINDOW after it was issued."""
        last_day = facts.valid_until or (local_day(facts.visit.stated_at) + LONGEST_WINDOW)
        await self.redis.set(f"{P}:rx:{facts.code}", facts_packed(facts),
                             pxat=epoch_ms(live_until(last_day, self.retention)))

    async def prescription(self, code: str) -> PrescriptionFacts | None:
        raw = await self.redis.get(f"{P}:rx:{code}")
        return facts_of(raw) if raw is not None else None

    # Controlled prescriptions per patient, for doctor shopping

    async def controlled_history(self, patient_key: str, new: ControlledPrescription) -> list[ControlledPrescription]:
        """Adds the prescription to the patient's list and returns the others within a window
        on either side of it (they arrive in any order)."""
        key = f"{P}:controlled:{{{patient_key}}}"
        score = new.issued_at.timestamp()
        member = f"{new.code}|{new.prescriber}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {member: score})
            pipe.zrangebyscore(key, score - WINDOW.total_seconds(), score + WINDOW.total_seconds(), withscores=True)
            pipe.expire(key, int(WINDOW.total_seconds() * 3))
            _, rows, _ = await pipe.execute()
        history = []
        for raw, at in rows:
            code, prescriber = (raw.decode() if isinstance(raw, bytes) else raw).split("|", 1)
            if code != new.code:
                history.append(ControlledPrescription(code, prescriber, datetime.fromtimestamp(at, timezone.utc)))
        return history
