"""One suite, two ledger stores: the Redis adapter and the in-memory one the handler tests
use must answer every case the same way (services/pharmacy/ports.py states the contract)."""
from __future__ import annotations

import dataclasses
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from eprescription.common.v1 import common_pb2

from services.common import dates
from services.kernel.drugs import Drug
from services.pharmacy.adapters.events import prescription_of, wire_form
from services.pharmacy.adapters.redis_store import RedisLedgerStore
from services.pharmacy.domain import dispensing
from services.pharmacy.domain.commands import DispenseMedication, ReverseDispense
from services.pharmacy.domain.dispensing import (AlreadyApplied, AlreadyReversed, Applied, LedgerMissing,
                                                 RecordMissing, Reversed, StateChanged)
from services.pharmacy.domain.errors import Refused
from services.pharmacy.domain.model import Quote, QuotedAmounts, SoldLine
from tests.support import memory_and_redis
from tests.support.memory_pharmacy import MemoryLedgerStore

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)
CONTRACT_DB = 3  # a Redis database of its own: no relay ships (or trims) what these tests append
DRUGS = {code: Drug(code, code, (), "", "", "oral", "", "tablet", "none", False, False, True, 80, 1000)
         for code in ("A", "B")}


class RedisBackend:
    def __init__(self, client):
        self.client = client
        # The cases' dates are fixed and Redis expires keys by its own clock: a retention long
        # enough that no ledger here expires (expiry has its own tests: test_live_state_expiry.py).
        self.store = RedisLedgerStore(client, shards=4, retention=timedelta(days=365 * 100))

    async def published(self) -> list[tuple[str, str]]:
        """(topic, key) of every event appended to the outbox, oldest first."""
        found = []
        for stream in self.store.layout.streams():
            for _, fields in await self.client.xrange(stream):
                found.append((fields[b"topic"].decode(), fields[b"key"].decode()))
        return found


class MemoryBackend:
    def __init__(self):
        self.store = MemoryLedgerStore()

    async def published(self) -> list[tuple[str, str]]:
        return [(topic, key) for topic, key, _ in map(wire_form, self.store.outbox)]


backend = memory_and_redis(MemoryBackend, RedisBackend, CONTRACT_DB)


def prescription(*lines, valid_until=date(2026, 12, 4), batch=None):
    rx = common_pb2.Prescription(code=f"01001{uuid.uuid4().hex[:7]}-c", facility_code="01001",
                                 valid_until=dates.to_proto(valid_until))
    rx.patient.identifier.citizen_id = "001203004567"
    for n, (drug, qty) in enumerate(lines or [("A", 20), ("B", 10)], start=1):
        rx.lines.add(line_number=n, drug_code=drug, quantity=qty, batch_number=1 if batch and n == 1 else 0)
    if batch:
        rx.batches.add(number=1, start=dates.to_proto(batch[0]), end=dates.to_proto(batch[1]))
    return prescription_of(rx.SerializeToString(deterministic=True))


def command(code, *lines, key=None, card=None):
    return DispenseMedication(code, "pharmacy-a", key or str(uuid.uuid4()), card,
                              tuple(SoldLine(n, d, q, 1000, False) for n, d, q in lines))


async def plan_for(store, cmd, now=NOW, quote=None):
    checked = dispensing.check_dispense(cmd, await store.ledger(cmd.code), drugs=DRUGS, signature_valid=True, now=now)
    return dispensing.plan_dispense(checked, quote, dispense_token=uuid.uuid4().hex, claim_token=uuid.uuid4().hex)


async def test_a_ledger_opens_once_and_a_second_issue_does_not_reset_it(backend):
    store, rx = backend.store, prescription()
    assert await store.ledger(rx.code) is None
    assert await store.open_ledger(rx) is True
    assert isinstance(await store.dispense(await plan_for(store, command(rx.code, (1, "A", 5)))), Applied)
    assert await store.open_ledger(rx) is False
    ledger = await store.ledger(rx.code)
    assert ledger.remaining == {1: 15, 2: 10} and ledger.recorded_status == "active"
    assert ledger.prescription == rx


async def test_a_cancel_that_overtakes_the_issue_wins(backend):
    store, rx = backend.store, prescription()
    await store.close_ledger(rx.code, "cancelled")
    assert await store.ledger(rx.code) is None
    await store.open_ledger(rx)
    assert (await store.ledger(rx.code)).recorded_status == "cancelled"


async def test_a_sale_takes_its_quantities_keeps_its_receipt_and_publishes_once(backend):
    store, rx = backend.store, prescription()
    await store.open_ledger(rx)
    quote = Quote("q-1", "0123456789", "DN4010123456789", {1: QuotedAmounts(5000, 4000, 1000, 100)})
    cmd = command(rx.code, (1, "A", 5), card="DN4010123456789")
    plan = await plan_for(store, cmd, quote=quote)
    assert await store.dispense(plan) == Applied({1: 15, 2: 10})
    prior = await store.prior(rx.code, "pharmacy-a", cmd.idempotency_key)
    assert (prior.fingerprint, prior.receipt, prior.remaining) == (cmd.fingerprint(), plan.receipt, {1: 15, 2: 10})
    assert await store.dispense_record(rx.code, plan.receipt.dispense_id) == plan.record
    assert await backend.published() == [("rx.dispenses.v1", rx.code), ("rx.claims.v1", "0123456789")]

    again = await store.dispense(await plan_for(store, cmd, quote=quote))
    assert again == AlreadyApplied(prior)
    assert (await store.ledger(rx.code)).remaining == {1: 15, 2: 10}
    assert len(await backend.published()) == 2


async def test_the_store_rechecks_what_remains_when_another_sale_came_first(backend):
    store, rx = backend.store, prescription()
    await store.open_ledger(rx)
    stale = await plan_for(store, command(rx.code, (1, "A", 15)))
    assert isinstance(await store.dispense(await plan_for(store, command(rx.code, (1, "A", 10)))), Applied)
    assert await store.dispense(stale) == StateChanged("QUANTITY_EXCEEDS_REMAINING", 1, 10)
    with pytest.raises(Refused) as refused:
        dispensing.settle(stale, StateChanged("QUANTITY_EXCEEDS_REMAINING", 1, 10))
    assert (refused.value.rule, refused.value.subject) == ("QUANTITY_EXCEEDS_REMAINING", "lines[0]")
    assert "remaining 10" in str(refused.value)
    assert (await store.ledger(rx.code)).remaining == {1: 10, 2: 10}
    assert await store.dispense_record(rx.code, stale.receipt.dispense_id) is None
    assert await store.prior(rx.code, "pharmacy-a", stale.command.idempotency_key) is None
    assert len(await backend.published()) == 1


async def test_the_store_rechecks_a_cancel_that_came_after_the_read(backend):
    store, rx = backend.store, prescription()
    await store.open_ledger(rx)
    stale = await plan_for(store, command(rx.code, (1, "A", 1), (2, "B", 1)))
    await store.close_ledger(rx.code, "cancelled")
    assert await store.dispense(stale) == StateChanged("PRESCRIPTION_CANCELLED")
    assert (await store.ledger(rx.code)).remaining == {1: 20, 2: 10}
    assert await backend.published() == []


@pytest.mark.parametrize("when, rule", [(NOW + timedelta(days=5), "VALIDITY_WINDOW_ENDED"),
                                        (NOW + timedelta(days=3), "OUTSIDE_BATCH_DATES")])
async def test_the_store_judges_dates_on_the_plan_s_day(backend, when, rule):
    store = backend.store
    rx = prescription(batch=(date(2026, 11, 30), date(2026, 12, 2)))
    await store.open_ledger(rx)
    plan = await plan_for(store, command(rx.code, (1, "A", 1)))
    late = dataclasses.replace(plan, today=(when + timedelta(hours=7)).date())
    outcome = await store.dispense(late)
    assert isinstance(outcome, StateChanged) and outcome.rule == rule
    assert (await store.ledger(rx.code)).remaining == {1: 20, 2: 10}


async def test_a_sale_on_a_ledger_that_is_gone_is_missing(backend):
    other, rx = MemoryLedgerStore(), prescription()
    await other.open_ledger(rx)
    assert await backend.store.dispense(await plan_for(other, command(rx.code, (1, "A", 1)))) == LedgerMissing()


async def test_a_reversal_gives_back_once(backend):
    store, rx = backend.store, prescription()
    await store.open_ledger(rx)
    sale = await plan_for(store, command(rx.code, (1, "A", 5), (2, "B", 10)))
    await store.dispense(sale)
    reverse = ReverseDispense(sale.receipt.dispense_id, "pharmacy-a", "wrong patient")
    record = await store.dispense_record(rx.code, sale.receipt.dispense_id)
    plan = dispensing.plan_reversal(reverse, record, NOW + timedelta(hours=1))
    assert await store.reverse(plan) == Reversed()
    assert (await store.ledger(rx.code)).remaining == {1: 20, 2: 10}
    assert (await store.dispense_record(rx.code, sale.receipt.dispense_id)).reversed_at == NOW + timedelta(hours=1)
    assert await store.reverse(plan) == AlreadyReversed()
    assert (await store.ledger(rx.code)).remaining == {1: 20, 2: 10}
    assert await backend.published() == [("rx.dispenses.v1", rx.code)] * 2


async def test_reversing_a_sale_that_was_never_made_is_missing(backend):
    store, rx = backend.store, prescription()
    await store.open_ledger(rx)
    ghost = await plan_for(store, command(rx.code, (1, "A", 5)))
    plan = dispensing.plan_reversal(ReverseDispense(ghost.receipt.dispense_id, "pharmacy-a", "x"), ghost.record, NOW)
    assert await store.reverse(plan) == RecordMissing()
    assert (await store.ledger(rx.code)).remaining == {1: 20, 2: 10}


async def test_a_price_beyond_what_lua_numbers_hold_is_kept_exactly(backend):
    store, rx = backend.store, prescription()
    await store.open_ledger(rx)
    cmd = DispenseMedication(rx.code, "pharmacy-a", "k", None, (SoldLine(1, "A", 1, 2**62, False),))
    plan = await plan_for(store, cmd)
    await store.dispense(plan)
    prior = await store.prior(rx.code, "pharmacy-a", "k")
    assert prior.receipt.patient_total_vnd == 2**62
    assert (await store.dispense_record(rx.code, plan.receipt.dispense_id)).lines[0].unit_price_vnd == 2**62


async def test_a_sale_reads_its_retry_record_and_its_ledger_at_once(backend):
    store, rx = backend.store, prescription()
    assert await store.prior_and_ledger(rx.code, "pharmacy-a", "k-1") == (None, None)      # nothing yet
    await store.open_ledger(rx)
    cmd = command(rx.code, (1, "A", 5), key="k-1")
    prior, ledger = await store.prior_and_ledger(rx.code, "pharmacy-a", "k-1")
    assert prior is None and ledger == await store.ledger(rx.code)
    plan = await plan_for(store, cmd)
    await store.dispense(plan)
    prior, ledger = await store.prior_and_ledger(rx.code, "pharmacy-a", "k-1")
    assert prior == await store.prior(rx.code, "pharmacy-a", "k-1") and prior.receipt == plan.receipt
    assert ledger.remaining == {1: 15, 2: 10}
    assert (await store.prior_and_ledger(rx.code, "pharmacy-b", "k-1"))[0] is None   # the key is per pharmacy
