"""The pharmacy's handlers on the in-memory ledger store: no Redis, no broker, no channel."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.common.formulary import load_formulary
from services.kernel.status import Status
from services.pharmacy.domain.commands import DispenseMedication, LookupPrescription, ReverseDispense
from services.pharmacy.domain.errors import (InsuranceUnavailable, InvalidRequest, NotFound, NotPermitted, Refused,
                                             RequestConflict)
from services.pharmacy.domain.events import ClaimReversalRequested, ClaimSubmitted, DispenseReversed, \
    MedicationDispensed, PrescriptionClosed, PrescriptionIssued
from services.pharmacy.domain.model import PrescribedLine, Prescription, Quote, QuotedAmounts, SoldLine
from services.pharmacy.handlers import Dependencies, Pharmacy
from tests.support.memory_pharmacy import MemoryLedgerStore

DRUGS = load_formulary(Path(__file__).resolve().parents[3] / "reference" / "v1" / "formulary.csv")
PARACETAMOL, AMOXICILLIN = "N02BE01-500T", "J01CR02-1GT"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


class Signatures:
    def __init__(self):
        self.forged: set[bytes] = set()

    def verify(self, document: bytes) -> bool:
        return document not in self.forged


class FakeInsurance:
    def __init__(self):
        self.calls, self.down = [], False

    async def quote(self, card, day, prescription, lines, pharmacy):
        self.calls.append((card, day, prescription.facility_code))
        if self.down:
            raise InsuranceUnavailable("insurance did not answer: UNAVAILABLE")
        return Quote("q", "0123456789", card, {l.line_number: QuotedAmounts(l.quantity * l.unit_price_vnd,
                                                                            l.quantity * l.unit_price_vnd * 4 // 5,
                                                                            l.quantity * l.unit_price_vnd // 5, 100)
                                               for l in lines})


@pytest.fixture
def world():
    store, insurance, signatures, clock = MemoryLedgerStore(), FakeInsurance(), Signatures(), Clock()
    handlers = Pharmacy(Dependencies(store, DRUGS, signatures, insurance, clock))
    return handlers, store, insurance, signatures, clock


async def issued(handlers, card=""):
    rx = Prescription(f"01001{uuid.uuid4().hex[:7]}-c", "01001", card, ("J02.9",), date(2026, 12, 4),
                      (PrescribedLine(1, PARACETAMOL, 20), PrescribedLine(2, AMOXICILLIN, 14)),
                      document=uuid.uuid4().bytes)
    await handlers.on_prescription_issued(PrescriptionIssued(rx))
    return rx


def sale(code, *lines, key="k1", card=None, pharmacist=False):
    return DispenseMedication(code, "pharmacy-a", key, card, tuple(SoldLine(*line) for line in lines), pharmacist)


async def test_a_bhyt_sale_is_quoted_recorded_and_published_with_its_claim(world):
    handlers, store, insurance, _, _ = world
    rx = await issued(handlers)
    result = await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 10, 500, False), card="DN4010123456789"))
    assert result.remaining == {1: 10, 2: 14} and result.status is Status.PARTIALLY_DISPENSED
    assert (result.receipt.fund_total_vnd, result.receipt.patient_total_vnd) == (4000, 1000)
    assert [type(e) for e in store.outbox] == [MedicationDispensed, ClaimSubmitted]
    assert insurance.calls == [("DN4010123456789", date(2026, 11, 30), "01001")]


async def test_a_retry_answers_the_first_result_and_a_changed_retry_is_a_conflict(world):
    handlers, store, _, _, _ = world
    rx = await issued(handlers)
    first = await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 20, 500, False)))
    assert await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 20, 500, False))) == first
    with pytest.raises(RequestConflict):
        await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 19, 500, False)))
    assert len(store.outbox) == 1


async def test_nothing_is_recorded_when_the_insurer_does_not_answer(world):
    handlers, store, insurance, _, _ = world
    rx = await issued(handlers)
    insurance.down = True
    with pytest.raises(InsuranceUnavailable):
        await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 10, 500, False), card="DN4010123456789"))
    assert store.outbox == [] and (await store.ledger(rx.code)).remaining == {1: 20, 2: 14}


async def test_rules_that_need_no_insurer_refuse_before_asking_it(world):
    handlers, _, insurance, signatures, _ = world
    rx = await issued(handlers)
    with pytest.raises(Refused) as too_many:
        await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 21, 500, False), card="DN4010123456789"))
    assert too_many.value.rule == "QUANTITY_EXCEEDS_REMAINING" and "remaining 20" in str(too_many.value)
    with pytest.raises(InvalidRequest) as wrong_drug:
        await handlers.dispense(sale(rx.code, (1, AMOXICILLIN, 1, 500, False), card="DN4010123456789"))
    assert wrong_drug.value.rule == "DRUG_NOT_PRESCRIBED"
    with pytest.raises(NotPermitted):
        await handlers.dispense(sale(rx.code, (1, "N02BE01-500E", 1, 500, True)))
    signatures.forged.add(rx.document)
    with pytest.raises(Refused) as forged:
        await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 1, 500, False)))
    assert forged.value.rule == "SIGNATURE_INVALID"
    assert insurance.calls == []


async def test_the_card_recorded_by_the_hospital_must_be_the_one_presented(world):
    handlers, store, _, _, _ = world
    rx = await issued(handlers, card="DN4010000000001")
    with pytest.raises(Refused) as refused:
        await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 1, 500, False), card="DN4010123456789"))
    assert refused.value.rule == "BHYT_CARD_NOT_PATIENTS" and store.outbox == []


async def test_a_cancelled_prescription_is_not_dispensed_and_lookup_says_so(world):
    handlers, _, _, _, _ = world
    rx = await issued(handlers)
    await handlers.on_prescription_closed(PrescriptionClosed(rx.code, "cancelled"))
    with pytest.raises(Refused) as refused:
        await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 1, 500, False)))
    assert refused.value.rule == "PRESCRIPTION_CANCELLED"
    assert (await handlers.lookup(LookupPrescription(rx.code.upper()))).status is Status.CANCELLED
    with pytest.raises(NotFound):
        await handlers.lookup(LookupPrescription("01001aaaaaaa-c"))


async def test_a_sale_is_reversed_once_by_its_pharmacy_within_the_window(world):
    handlers, store, _, _, clock = world
    rx = await issued(handlers)
    done = await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 20, 500, False), card="DN4010123456789"))
    reverse = ReverseDispense(done.receipt.dispense_id, "pharmacy-a", "wrong patient")
    with pytest.raises(NotPermitted):
        await handlers.reverse(ReverseDispense(done.receipt.dispense_id, "pharmacy-b", "x"))
    clock.now += timedelta(hours=23)
    assert (await handlers.reverse(reverse)).ledger.remaining == {1: 20, 2: 14}
    assert (await handlers.reverse(reverse)).ledger.remaining == {1: 20, 2: 14}
    assert [type(e) for e in store.outbox[2:]] == [DispenseReversed, ClaimReversalRequested]
    late = await handlers.dispense(sale(rx.code, (1, PARACETAMOL, 5, 500, False), key="k2"))
    clock.now += timedelta(hours=25)
    with pytest.raises(Refused) as refused:
        await handlers.reverse(ReverseDispense(late.receipt.dispense_id, "pharmacy-a", "x"))
    assert refused.value.rule == "REVERSAL_WINDOW_ENDED"
