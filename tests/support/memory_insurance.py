"""The insurance store in memory: the same contract as the Redis one (see
tests/contract/test_insurance_store.py), for handler and agent tests without Redis."""
from __future__ import annotations

from services.insurance.domain.alerts import WINDOW


class MemoryInsuranceStore:
    def __init__(self, members=()):
        self.members = {m.member_id: m for m in members}
        self.index: dict[tuple[str, str], str] = {}
        for m in members:
            self._index(m)
        self.prescriptions, self.quotes, self.claims, self.years, self.windows = {}, {}, {}, {}, {}
        self.visits = {}

    def _index(self, member) -> None:
        self.index[("cccd", member.citizen_id)] = member.member_id
        for card in member.cards:
            self.index[("card", card.card_code)] = member.member_id

    async def upsert_member(self, member):
        owner = self.index.get(("cccd", member.citizen_id))
        if owner and owner != member.member_id:
            return "conflict", owner
        current = self.members.get(member.member_id)
        if current is not None:
            known = {(c.card_code, c.valid_from) for c in member.cards}
            extra = tuple(c for c in current.cards if (c.card_code, c.valid_from) not in known)
            member = type(member)(**{**member.__dict__,
                                     "cards": tuple(sorted(member.cards + extra, key=lambda c: c.valid_from))})
        changed = member != current
        self.members[member.member_id] = member
        self._index(member)
        return ("changed" if changed else "same"), ""

    async def member(self, ssn):
        return self.members.get(ssn)

    async def resolve(self, identifier):
        if identifier.kind == "ssn":
            return self.members.get(identifier.value)
        member_id = self.index.get((identifier.kind, identifier.value))
        return self.members.get(member_id) if member_id else None

    async def prescription(self, code):
        return self.prescriptions.get(code)

    async def save_prescription(self, facts):
        self.prescriptions[facts.code] = facts

    async def save_quote(self, quote_id, member_id, lines):
        self.quotes[quote_id] = {line.line_number: line for line in lines}

    async def quote(self, quote_id):
        return self.quotes.get(quote_id)

    async def save_adjudication(self, adjudication, year=None, visit=None):
        self.claims[adjudication.claim_id] = adjudication
        if year is not None:
            self.years[(adjudication.member_id, year[0])] = year[1]
        if visit is not None:
            self.visits[(adjudication.member_id, visit[0])] = visit[1]

    async def visit(self, member_id, key):
        return self.visits.get((member_id, key))

    async def adjudication(self, claim_id):
        return self.claims.get(claim_id)

    async def year(self, member_id, year):
        return self.years.get((member_id, year))

    async def year_and_visit(self, member_id, year, visit_key):
        return await self.year(member_id, year), (await self.visit(member_id, visit_key) if visit_key else None)

    async def controlled_history(self, patient_key, new):
        window = self.windows.setdefault(patient_key, {})
        window[new.code] = new
        return [p for p in window.values() if p.code != new.code and abs(p.issued_at - new.issued_at) <= WINDOW]
