"""What the pharmacy's handlers need from the world, as small contracts. The Redis adapter
and the in-memory one in tests/support pass the same contract tests."""
from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from services.pharmacy.domain.dispensing import DispenseOutcome, DispensePlan, ReversalPlan, ReverseOutcome
from services.pharmacy.domain.events import DispensingClosed
from services.pharmacy.domain.model import (Closed, DispenseRecord, Ledger, PriorDispense, Prescription, Quote,
                                            QuoteLine)


class LedgerStore(Protocol):
    """The dispensing ledger of every prescription, the sales, and the events to publish.

    `dispense` applies a plan atomically or not at all: it re-checks the idempotency key
    (AlreadyApplied), that the ledger exists (LedgerMissing) and every state rule of the plan
    (StateChanged naming the rule, and for a quantity the line and what remains); if all
    hold it takes the quantities, keeps the receipt under the key, keeps the sale's record
    and appends the plan's events to the outbox, and answers Applied with every line's
    remaining quantity. `reverse` gives the quantities back once (AlreadyReversed after)."""

    async def open_ledger(self, prescription: Prescription, carried: dict[int, int] | None = None,
                          settled: bool = True) -> bool:
        """True when this call created it; an existing ledger is never reset, and a ledger
        closed before it was opened keeps its final status. `carried` (line -> quantity) is
        what the codes it replaces dispensed against its lines, taken from what remains; an
        unsettled ledger (its predecessor's count is not known yet) sells nothing until
        `activate`d."""

    async def close_ledger(self, code: str, status: str, successor: str = "",
                           closed_at: datetime | None = None) -> Closed | None:
        """Final: no sale under the code is accepted after it; the first final status and
        successor win. What was dispensed, or None while the ledger is unsettled (never
        opened, or awaiting its own predecessor's count)."""

    async def activate(self, code: str, carried: dict[int, int]) -> bool:
        """Settles an unsettled ledger once with what its predecessors dispensed."""

    async def announce(self, event: DispensingClosed) -> bool:
        """Appends the event to the outbox once per code."""

    async def ledger(self, code: str) -> Ledger | None: ...

    async def prior(self, code: str, pharmacy: str, key: str) -> PriorDispense | None: ...

    async def prior_and_ledger(self, code: str, pharmacy: str, key: str) -> tuple[PriorDispense | None,
                                                                                   Ledger | None]:
        """Both of the above at once (a sale needs both; one round trip)."""

    async def dispense(self, plan: DispensePlan) -> DispenseOutcome: ...

    async def dispense_record(self, code: str, dispense_id: str) -> DispenseRecord | None: ...

    async def dispenses(self, code: str) -> list[DispenseRecord]:
        """Every sale under the code, reversed ones included, oldest first."""

    async def reverse(self, plan: ReversalPlan) -> ReverseOutcome: ...


class Insurance(Protocol):
    """Quotes what the fund and the patient pay for a sale against a signed prescription (the
    insurer checks the card is its patient's). Raises InsuranceUnavailable when it cannot
    answer in time, Refused when the card is not eligible or not the patient's, InvalidRequest
    for a malformed card."""

    async def quote(self, card: str, day: date, prescription: Prescription, lines: list[QuoteLine],
                    pharmacy: str) -> Quote: ...


class SignatureCheck(Protocol):
    """Whether a signed prescription document verifies against a registered prescriber's key."""

    def verify(self, document: bytes) -> bool: ...
