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
from services.pharmacy.domain import dispensing
from services.pharmacy.domain.commands import DispenseMedication, LookupPrescription, ReverseDispense
from services.pharmacy.domain.dispensing import AlreadyReversed, RecordMissing, Reversed
from services.pharmacy.domain.errors import NotFound
from services.pharmacy.domain.events import PrescriptionClosed, PrescriptionIssued
from services.pharmacy.domain.model import DispenseResult, LookupResult, ReversalResult
from services.pharmacy.ports import Insurance, LedgerStore, SignatureCheck

log = structlog.get_logger("pharmacy")


@dataclass(frozen=True)
class Dependencies:
    store: LedgerStore
    drugs: dict[str, Drug]
    signatures: SignatureCheck
    insurance: Insurance
    clock: Callable[[], datetime]


class Pharmacy:
    def __init__(self, deps: Dependencies):
        self.deps = deps

    async def lookup(self, query: LookupPrescription) -> LookupResult:
        code = dispensing.valid_code(query.code)
        ledger = await self.deps.store.ledger(code)
        if ledger is None:
            raise NotFound(f"no prescription {code}")
        return LookupResult(ledger, ledger.status_on(local_day(self.deps.clock())),
                            self.deps.signatures.verify(ledger.prescription.document))

    async def dispense(self, command: DispenseMedication) -> DispenseResult:
        dispensing.check_dispense_request(command)
        store = self.deps.store
        prior = await store.prior(command.code, command.pharmacy, command.idempotency_key)
        if prior is not None:
            return dispensing.replay(command, prior)
        ledger = await store.ledger(command.code)
        checked = dispensing.check_dispense(
            command, ledger, drugs=self.deps.drugs, now=self.deps.clock(),
            signature_valid=ledger is not None and self.deps.signatures.verify(ledger.prescription.document))
        quote = None
        if command.bhyt_card is not None:
            quote = await self.deps.insurance.quote(command.bhyt_card, local_day(checked.now), ledger.prescription,
                                                    checked.quote_lines())
        plan = dispensing.plan_dispense(checked, quote, dispense_token=secrets.token_hex(8),
                                        claim_token=secrets.token_hex(16))
        result = dispensing.settle(plan, await store.dispense(plan))
        if result.receipt.dispense_id == plan.receipt.dispense_id:
            log.info("dispense.accepted", code=command.code, dispense=plan.receipt.dispense_id,
                     pharmacy=command.pharmacy, lines=len(command.lines), payer="bhyt" if quote else "self")
        return result

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
        await self.deps.store.open_ledger(event.prescription)

    async def on_prescription_closed(self, event: PrescriptionClosed) -> None:
        await self.deps.store.close_ledger(event.code, event.status)
