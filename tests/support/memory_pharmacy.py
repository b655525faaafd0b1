"""The pharmacy's ledger store in memory: the same contract as the Redis one (see
tests/contract/test_pharmacy_store.py), for handler tests without Redis or Kafka."""
from __future__ import annotations

import copy

from services.pharmacy.domain import dispensing
from services.pharmacy.domain.dispensing import (AlreadyApplied, AlreadyReversed, Applied, DispenseOutcome,
                                                 DispensePlan, LedgerMissing, RecordMissing, ReversalPlan, Reversed,
                                                 ReverseOutcome, StateChanged)
from services.pharmacy.domain.events import Event
from services.pharmacy.domain.model import DispenseRecord, Ledger, PriorDispense, Prescription


class MemoryLedgerStore:
    def __init__(self) -> None:
        self.ledgers: dict[str, Ledger] = {}
        self.closed_early: dict[str, str] = {}
        self.priors: dict[tuple[str, str, str], PriorDispense] = {}
        self.records: dict[str, DispenseRecord] = {}
        self.outbox: list[Event] = []

    async def open_ledger(self, prescription: Prescription) -> bool:
        if prescription.code in self.ledgers:
            return False
        status = self.closed_early.pop(prescription.code, "active")
        self.ledgers[prescription.code] = Ledger(prescription, status,
                                                 {l.line_number: l.quantity for l in prescription.lines})
        return True

    async def close_ledger(self, code: str, status: str) -> None:
        ledger = self.ledgers.get(code)
        if ledger is None:
            self.closed_early[code] = status
        else:
            self.ledgers[code] = Ledger(ledger.prescription, status, ledger.remaining)

    async def ledger(self, code: str) -> Ledger | None:
        ledger = self.ledgers.get(code)
        return copy.deepcopy(ledger) if ledger else None

    async def prior(self, code: str, pharmacy: str, key: str) -> PriorDispense | None:
        return self.priors.get((code, pharmacy, key))

    async def dispense(self, plan: DispensePlan) -> DispenseOutcome:
        command = plan.command
        prior = self.priors.get((command.code, command.pharmacy, command.idempotency_key))
        if prior is not None:
            return AlreadyApplied(prior)
        ledger = self.ledgers.get(command.code)
        if ledger is None:
            return LedgerMissing()
        broken = dispensing.state_refusal(ledger, plan.quantities, plan.today)
        if broken is not None:
            rule, line = broken
            return StateChanged(rule, line, ledger.remaining[line] if rule == "QUANTITY_EXCEEDS_REMAINING" else None)
        remaining = dict(ledger.remaining)
        for line, quantity in plan.quantities:
            remaining[line] -= quantity
        self.ledgers[command.code] = Ledger(ledger.prescription, ledger.recorded_status, remaining)
        self.records[plan.record.dispense_id] = plan.record
        self.priors[(command.code, command.pharmacy, command.idempotency_key)] = PriorDispense(
            command.fingerprint(), plan.receipt, dict(remaining))
        self.outbox.extend(plan.events)
        return Applied(dict(remaining))

    async def dispense_record(self, code: str, dispense_id: str) -> DispenseRecord | None:
        record = self.records.get(dispense_id)
        return record if record is not None and record.code == code else None

    async def reverse(self, plan: ReversalPlan) -> ReverseOutcome:
        record = self.records.get(plan.record.dispense_id)
        if record is None:
            return RecordMissing()
        if record.reversed_at is not None:
            return AlreadyReversed()
        ledger = self.ledgers[record.code]
        remaining = dict(ledger.remaining)
        for line, quantity in plan.quantities:
            remaining[line] += quantity
        self.ledgers[record.code] = Ledger(ledger.prescription, ledger.recorded_status, remaining)
        self.records[record.dispense_id] = DispenseRecord(**{**record.__dict__, "reversed_at": plan.reversed_at})
        self.outbox.extend(plan.events)
        return Reversed()
