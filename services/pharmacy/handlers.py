"""The pharmacy service's commands, query and ledger projection: each reads what its rules
need through the ports, lets the domain decide, and writes through the ledger store."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import structlog

from services.kernel.calendar import local_day
from services.kernel.drugs import Drug
from services.kernel.protected import DEFAULT as DEFAULT_PROTECTED, ProtectedHealth
from services.pharmacy.domain import dispensing
from services.pharmacy.domain.commands import DispenseMedication, ListDispenses, LookupPrescription, ReverseDispense
from services.pharmacy.domain.dispensing import AlreadyReversed, RecordMissing, Reversed
from services.pharmacy.domain.errors import NotFound, NotPermitted
from services.pharmacy.domain.events import DispensingClosed, PrescriptionClosed, PrescriptionIssued
from services.pharmacy.domain.model import DispenseRecord, DispenseResult, LookupResult, ReversalResult
from services.pharmacy.ports import Insurance, LedgerStore, SignatureCheck

log = structlog.get_logger("pharmacy")


@dataclass(frozen=True)
class Dependencies:
    store: LedgerStore
    drugs: dict[str, Drug]
    signatures: SignatureCheck
    insurance: Insurance
    clock: Callable[[], datetime]
    protected: ProtectedHealth = DEFAULT_PROTECTED


class Pharmacy:
    def __init__(self, deps: Dependencies):
        self.deps = deps

    async def lookup(self, query: LookupPrescription) -> LookupResult:
        code = dispensing.valid_code(query.code)
        ledger = await self.deps.store.ledger(code)
        if ledger is None:
            raise NotFound(f"no prescription {code}")
        hidden = self.deps.protected.protected_diagnosis(ledger.prescription.diagnoses)
        if hidden:   # a pharmacy is never the treating team: the identity stays hidden
            log.info("protected.read", code=code, reader_role="pharmacy",
                     purpose="dispensing", outcome="identity hidden")
        return LookupResult(ledger, ledger.status_on(local_day(self.deps.clock())),
                            self.deps.signatures.verify(ledger.prescription.document), hidden)

    async def dispense(self, command: DispenseMedication) -> DispenseResult:
        dispensing.check_dispense_request(command)
        store = self.deps.store
        prior, ledger = await store.prior_and_ledger(command.code, command.pharmacy, command.idempotency_key)
        if prior is not None:
            return dispensing.replay(command, prior)
        checked = dispensing.check_dispense(
            command, ledger, drugs=self.deps.drugs, now=self.deps.clock(),
            signature_valid=ledger is not None and self.deps.signatures.verify(ledger.prescription.document))
        quote = None
        if command.bhyt_card is not None:
            quote = await self.deps.insurance.quote(command.bhyt_card, local_day(checked.now), ledger.prescription,
                                                    checked.quote_lines(), command.pharmacy)
        plan = dispensing.plan_dispense(checked, quote, dispense_token=secrets.token_hex(8),
                                        claim_token=secrets.token_hex(16))
        result = dispensing.settle(plan, await store.dispense(plan))
        if result.receipt.dispense_id == plan.receipt.dispense_id:
            log.info("dispense.accepted", code=command.code, dispense=plan.receipt.dispense_id,
                     pharmacy=command.pharmacy, lines=len(command.lines), payer="bhyt" if quote else "self")
        return result

    async def dispenses(self, query: ListDispenses) -> list[DispenseRecord]:
        """Every sale under a code. Any pharmacy may see them (as it may look the code up); a
        prescriber only those of a prescription its facility issued."""
        code = dispensing.valid_code(query.code)
        ledger = await self.deps.store.ledger(code)
        if ledger is None:
            raise NotFound(f"no prescription {code}")
        if query.reader_role == "prescriber" and ledger.prescription.facility_code != query.reader:
            raise NotPermitted("NOT_ISSUING_FACILITY", f"{code} was issued by another facility")
        return await self.deps.store.dispenses(code)

    async def reverse(self, command: ReverseDispense) -> ReversalResult:
        code = dispensing.check_reversal_request(command)
        dispense_id = command.dispense_id.strip()
        record = await self.deps.store.dispense_record(code, dispense_id)
        plan = dispensing.plan_reversal(command, record, self.deps.clock())
        match await self.deps.store.reverse(plan):
            case RecordMissing():
                raise NotFound(f"no dispense {dispense_id}")
            case Reversed():
                log.info("dispense.reversed", code=code, dispense=dispense_id)
            case AlreadyReversed():
                pass
        ledger = await self.deps.store.ledger(code)
        if ledger is None:
            raise NotFound(f"no prescription {code}")
        return ReversalResult(dispense_id, ledger)

    # Ledger projection from rx.prescriptions.v1

    async def on_prescription_issued(self, event: PrescriptionIssued) -> None:
        """Opens the ledger. A replacement first closes the code it replaces (no sale under it
        after that) and starts with what was dispensed under it already taken; if that count is
        not known yet (the replaced code's own issue has not arrived), it waits, unsellable."""
        rx, store = event.prescription, self.deps.store
        if not rx.replaces_code:
            await store.open_ledger(rx)
        else:
            closed = await self._close(rx.replaces_code, "replaced", rx.code, event.at)
            if closed is None:
                await store.open_ledger(rx, settled=False)
            else:
                await store.open_ledger(rx, dispensing.carry_over(closed, rx))
        await self._settled(rx.code)

    async def on_prescription_closed(self, event: PrescriptionClosed) -> None:
        await self._close(event.code, event.status, event.successor, event.at)

    async def _close(self, code: str, status: str, successor: str = "", at: datetime | None = None):
        """`at`: when it was closed (the event's time, so that a replay finds the same); the
        ledger is kept live for the retention after it (adapters/lua/keep_live.lua)."""
        closed = await self.deps.store.close_ledger(code, status, successor, at or self.deps.clock())
        if closed is not None and await self.deps.store.announce(DispensingClosed(closed, self.deps.clock())):
            log.info("ledger.closed", code=code, status=closed.status, successor=closed.successor,
                     dispensed=sum(closed.dispensed.values()))
        return closed

    async def _settled(self, code: str) -> None:
        """A ledger just settled that was closed meanwhile: its count is now known, so it is
        announced, and its successor, if waiting on it, settles in turn."""
        while code:
            ledger = await self.deps.store.ledger(code)
            if ledger is None or ledger.recorded_status in ("active", "awaiting"):
                return
            closed = await self._close(code, ledger.recorded_status, ledger.successor)
            successor = await self.deps.store.ledger(ledger.successor) if ledger.successor else None
            if closed is None or successor is None:
                return
            if not await self.deps.store.activate(successor.prescription.code,
                                                  dispensing.carry_over(closed, successor.prescription)):
                return
            code = successor.prescription.code
