"""The pharmacy's ledger store in memory: the same contract as the Redis one (see
tests/contract/test_pharmacy_store.py), for handler tests without Redis or Kafka."""
from __future__ import annotations

import copy

from services.pharmacy.domain import dispensing
from services.pharmacy.domain.dispensing import (AlreadyApplied, AlreadyReversed, Applied, DispenseOutcome,
                                                 DispensePlan, LedgerMissing, RecordMissing, ReversalPlan, Reversed,
                                                 ReverseOutcome, StateChanged)
from services.pharmacy.domain.events import Event
from services.pharmacy.domain.model import Closed, DispenseRecord, Ledger, PriorDispense, Prescription


class MemoryLedgerStore:
    def __init__(self) -> None:
        self.ledgers: dict[str, Ledger] = {}
        self.closed_early: dict[str, tuple[str, str]] = {}
        self.settled: set[str] = set()
        self.announced: set[str] = set()
        self.priors: dict[tuple[str, str, str], PriorDispense] = {}
        self.records: dict[str, DispenseRecord] = {}
        self.outbox: list[Event] = []

    async def open_ledger(self, prescription: Prescription, carried=None, settled=True) -> bool:
        if prescription.code in self.ledgers:
            return False
        carried = carried or {}
        status, successor = self.closed_early.pop(prescription.code, ("active" if settled else "awaiting", ""))
        self.ledgers[prescription.code] = Ledger(
            prescription, status, {l.line_number: l.quantity - min(carried.get(l.line_number, 0), l.quantity)
                                   for l in prescription.lines}, successor)
        if settled:
            self.settled.add(prescription.code)
        return True

    async def close_ledger(self, code: str, status: str, successor: str = "", closed_at=None):
        ledger = self.ledgers.get(code)
        if ledger is None:
            self.closed_early.setdefault(code, (status, successor))
            return None
        if ledger.recorded_status in ("active", "awaiting"):
            ledger = Ledger(ledger.prescription, status, ledger.remaining, successor)
            self.ledgers[code] = ledger
        if code not in self.settled:
            return None
        return Closed(ledger.prescription, ledger.recorded_status, ledger.successor, ledger.dispensed)

    async def activate(self, code: str, carried) -> bool:
        ledger = self.ledgers.get(code)
        if ledger is None or code in self.settled:
            return False
        remaining = {n: q - min(carried.get(n, 0), ledger.prescribed[n]) for n, q in ledger.remaining.items()}
        status = "active" if ledger.recorded_status == "awaiting" else ledger.recorded_status
        self.ledgers[code] = Ledger(ledger.prescription, status, remaining, ledger.successor)
        self.settled.add(code)
        return True

    async def announce(self, event) -> bool:
        code = event.closed.prescription.code
        if code in self.announced:
            return False
        self.announced.add(code)
        self.outbox.append(event)
        return True

    async def ledger(self, code: str) -> Ledger | None:
        ledger = self.ledgers.get(code)
        return copy.deepcopy(ledger) if ledger else None

    async def prior(self, code: str, pharmacy: str, key: str) -> PriorDispense | None:
        return self.priors.get((code, pharmacy, key))

    async def prior_and_ledger(self, code: str, pharmacy: str, key: str):
        return await self.prior(code, pharmacy, key), await self.ledger(code)

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
            return StateChanged(rule, line, ledger.remaining[line] if rule == "QUANTITY_EXCEEDS_REMAINING" else None,
                                ledger.successor)
        remaining = dict(ledger.remaining)
        for line, quantity in plan.quantities:
            remaining[line] -= quantity
        self.ledgers[command.code] = Ledger(ledger.prescription, ledger.recorded_status, remaining, ledger.successor)
        self.records[plan.record.dispense_id] = plan.record
        self.priors[(command.code, command.pharmacy, command.idempotency_key)] = PriorDispense(
            command.fingerprint(), plan.receipt, dict(remaining))
        self.outbox.extend(plan.events)
        return Applied(dict(remaining))

    async def dispense_record(self, code: str, dispense_id: str) -> DispenseRecord | None:
        record = self.records.get(dispense_id)
        return record if record is not None and record.code == code else None

    async def dispenses(self, code: str) -> list[DispenseRecord]:
        return [r for r in self.records.values() if r.code == code]

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
        self.ledgers[record.code] = Ledger(ledger.prescription, ledger.recorded_status, remaining, ledger.successor)
        self.records[record.dispense_id] = DispenseRecord(**{**record.__dict__, "reversed_at": plan.reversed_at})
        self.outbox.extend(plan.events)
        return Reversed()
