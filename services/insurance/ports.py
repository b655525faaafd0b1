"""What the insurance handlers need from the world. The Redis adapter and the in-memory one
in tests/support pass the same contract tests (tests/contract/test_insurance_store.py)."""
from __future__ import annotations

from typing import Protocol

from services.insurance.domain.adjudication import Adjudication, QuotedLine
from services.insurance.domain.alerts import ControlledPrescription
from services.insurance.domain.identifiers import Identifier
from services.insurance.domain.model import Member
from services.insurance.domain.prescriptions import PrescriptionFacts
from services.insurance.domain.state import VisitState, YearState


class InsuranceStore(Protocol):
    """Members and their identifiers, quotes, adjudicated claims with a mirror of each
    member's yearly accumulator, the prescriptions seen, and each patient's controlled
    prescriptions. Every write is idempotent: writing the same thing twice leaves one."""

    async def upsert_member(self, member: Member) -> tuple[str, str]:
        """('changed' | 'same', '') or ('conflict', the member id that holds the citizen id).
        Card periods merge with those already known."""

    async def member(self, member_id: str) -> Member | None: ...

    async def resolve(self, identifier: Identifier) -> Member | None:
        """The member a card code, social security number or citizen id names."""

    async def save_quote(self, quote_id: str, member_id: str, lines: list[QuotedLine]) -> None: ...

    async def quote(self, quote_id: str) -> dict[int, QuotedLine] | None: ...

    async def save_adjudication(self, adjudication: Adjudication, year: tuple[int, YearState] | None = None,
                                visit: tuple[str, VisitState] | None = None) -> None:
        """The claim's latest outcome and, with it, the member's accumulator for that year and
        the state of the claim's visit (key, state)."""

    async def visit(self, member_id: str, key: str) -> VisitState | None:
        """The member's visit as the adjudicator last left it."""

    async def adjudication(self, claim_id: str) -> Adjudication | None: ...

    async def year(self, member_id: str, year: int) -> YearState | None: ...

    async def year_and_visit(self, member_id: str, year: int, visit_key: str | None
                             ) -> tuple[YearState | None, VisitState | None]:
        """Both at once (a quote needs both; one round trip); no visit asked for, None."""

    async def save_prescription(self, facts: PrescriptionFacts) -> None: ...

    async def prescription(self, code: str) -> PrescriptionFacts | None: ...

    async def controlled_history(self, patient_key: str, new: ControlledPrescription) -> list[ControlledPrescription]:
        """Adds `new` to the patient's list and returns the others within the doctor-shopping
        window on either side of it."""


class SignatureCheck(Protocol):
    def verify(self, document: bytes) -> bool: ...
