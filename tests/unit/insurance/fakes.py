"""An in-memory InsuranceStore for unit tests of the stream agents."""
from __future__ import annotations

from services.insurance.domain.alerts import WINDOW


class MemoryInsuranceStore:
    def __init__(self, members=()):
        self.members = {m.member_id: m for m in members}
        self.prescriptions, self.quotes, self.claims, self.years, self.windows = {}, {}, {}, {}, {}

    async def member(self, ssn):
        return self.members.get(ssn)

    async def prescription(self, code):
        return self.prescriptions.get(code)

    async def save_prescription(self, code, lines):
        self.prescriptions[code] = {line.line_number: line for line in lines}

    async def quote(self, quote_id):
        return self.quotes.get(quote_id)

    async def save_adjudication(self, adjudicated, year_state=None):
        self.claims[adjudicated.claim_id] = adjudicated
        if year_state is not None:
            self.years[(adjudicated.member_id, year_state[0])] = year_state[1]

    async def adjudication(self, claim_id):
        return self.claims.get(claim_id)

    async def year(self, member_id, year):
        return self.years.get((member_id, year))

    async def controlled_history(self, patient_key, new):
        window = self.windows.setdefault(patient_key, {})
        window[new.code] = new
        return [p for p in window.values() if p.code != new.code and abs(p.issued_at - new.issued_at) <= WINDOW]
