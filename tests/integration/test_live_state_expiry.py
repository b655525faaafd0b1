"""Redis holds live state only (ARCHITECTURE.md, issue 15): a prescription's ledger, its sales
and their retry records expire together, the retention after the later of the end of its
validity window and its last sale's reversal window; closing it or selling it out does not make
that sooner (a replayed issue would open it afresh: services/pharmacy/adapters/lua/keep_live.lua).
Redis expires by its own clock, so the dates here are relative to now."""
from __future__ import annotations

import uuid

import pytest
from datetime import datetime, timedelta, timezone

from eprescription.common.v1 import common_pb2

from services.common import dates
from services.kernel.calendar import VIETNAM
from services.pharmacy.adapters.events import prescription_of
from services.kernel.retention import LONGEST_WINDOW as UNOPENED_LIFE
from services.pharmacy.adapters.redis_store import RedisLedgerStore, window_end_ms
from services.pharmacy.domain import dispensing
from services.pharmacy.domain.commands import DispenseMedication, ReverseDispense
from services.pharmacy.domain.dispensing import REVERSAL_WINDOW, Applied, Reversed
from services.pharmacy.domain.model import SoldLine
from services.pharmacy.rebuild import LedgerImage, Sale, live_until
from services.kernel.drugs import Drug
from tests.support import empty_redis_database

DB = 6
RETENTION = timedelta(days=7)
DRUGS = {code: Drug(code, code, (), "", "", "oral", "", "tablet", "none", False, False, True, 80, 1000)
         for code in ("A", "B")}


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def prescription(valid_days: int):
    valid_until = (datetime.now(VIETNAM) + timedelta(days=valid_days)).date()
    rx = common_pb2.Prescription(code=f"01001{uuid.uuid4().hex[:7]}-c", facility_code="01001",
                                 valid_until=dates.to_proto(valid_until))
    rx.patient.identifier.citizen_id = "001203004567"
    rx.lines.add(line_number=1, drug_code="A", quantity=20)
    rx.lines.add(line_number=2, drug_code="B", quantity=10)
    return prescription_of(rx.SerializeToString(deterministic=True))


async def sell(store, rx, now, *lines):
    cmd = DispenseMedication(rx.code, "pharmacy-a", str(uuid.uuid4()), None,
                             tuple(SoldLine(n, d, q, 1000, False) for n, d, q in lines))
    checked = dispensing.check_dispense(cmd, await store.ledger(rx.code), drugs=DRUGS, signature_valid=True, now=now)
    plan = dispensing.plan_dispense(checked, None, dispense_token=uuid.uuid4().hex, claim_token=uuid.uuid4().hex)
    assert isinstance(await store.dispense(plan), Applied)
    return plan, cmd


async def expiries(client, store, rx, plan, cmd) -> set[int]:
    """The expiry (Unix ms) of the ledger, the sale and its retry record."""
    keys = [store.ledger_key(rx.code), store._sale_key(rx.code, plan.receipt.dispense_id),
            store._idem_key(rx.code, cmd.pharmacy, cmd.idempotency_key)]
    return {await client.pexpiretime(k) for k in keys}


async def test_an_open_ledger_lives_until_its_window_ends_plus_the_retention():
    async with empty_redis_database(DB) as client:
        store, rx = RedisLedgerStore(client, shards=4, retention=RETENTION), prescription(5)
        await store.open_ledger(rx)
        assert await client.pexpiretime(store.ledger_key(rx.code)) == window_end_ms(rx.valid_until) + ms_of(RETENTION)


async def test_a_partial_sale_keeps_the_window_and_its_keys_go_with_the_ledger():
    async with empty_redis_database(DB) as client:
        store, rx = RedisLedgerStore(client, shards=4, retention=RETENTION), prescription(5)
        await store.open_ledger(rx)
        now = datetime.now(timezone.utc)
        plan, cmd = await sell(store, rx, now, (1, "A", 5))
        assert await expiries(client, store, rx, plan, cmd) == {window_end_ms(rx.valid_until) + ms_of(RETENTION)}


async def test_neither_selling_out_nor_cancelling_brings_the_expiry_sooner():
    async with empty_redis_database(DB) as client:
        store, rx = RedisLedgerStore(client, shards=4, retention=RETENTION), prescription(20)
        await store.open_ledger(rx)
        now = datetime.now(timezone.utc)
        plan, cmd = await sell(store, rx, now, (1, "A", 20), (2, "B", 10))
        window = window_end_ms(rx.valid_until) + ms_of(RETENTION)
        assert await expiries(client, store, rx, plan, cmd) == {window}
        await store.close_ledger(rx.code, "cancelled", closed_at=now + timedelta(hours=2))
        assert await expiries(client, store, rx, plan, cmd) == {window}


async def test_a_sale_on_the_last_day_keeps_everything_until_its_reversal_window_ends():
    async with empty_redis_database(DB) as client:
        store, rx = RedisLedgerStore(client, shards=4, retention=RETENTION), prescription(0)
        await store.open_ledger(rx)
        now = datetime.now(timezone.utc)
        first, first_cmd = await sell(store, rx, now - timedelta(minutes=1), (1, "A", 5))
        second, second_cmd = await sell(store, rx, now, (2, "B", 5))
        at = ms(second.record.dispensed_at + REVERSAL_WINDOW + RETENTION)
        assert at > window_end_ms(rx.valid_until) + ms_of(RETENTION)
        # the earlier sale and its retry record follow the ledger: none is gone before another
        assert await expiries(client, store, rx, first, first_cmd) == {at}
        assert await expiries(client, store, rx, second, second_cmd) == {at}

        record = await store.dispense_record(rx.code, first.receipt.dispense_id)
        reversal = dispensing.plan_reversal(ReverseDispense(first.receipt.dispense_id, "pharmacy-a", "typo"),
                                            record, now + timedelta(minutes=5))
        assert isinstance(await store.reverse(reversal), Reversed)
        assert await expiries(client, store, rx, first, first_cmd) == {at}


async def test_a_ledger_closed_before_its_issue_keeps_its_closing_until_the_issue_comes():
    async with empty_redis_database(DB) as client:
        store, rx = RedisLedgerStore(client, shards=4, retention=RETENTION), prescription(20)
        now = datetime.now(timezone.utc)
        await store.close_ledger(rx.code, "replaced", "01001zzzzzzz-c", closed_at=now - timedelta(days=30))
        assert await client.pexpiretime(store.ledger_key(rx.code)) == ms(now - timedelta(days=30)
                                                                           + UNOPENED_LIFE + RETENTION)
        await store.open_ledger(rx)
        ledger = await store.ledger(rx.code)
        assert ledger.recorded_status == "replaced"                        # the issue did not reopen it
        assert await client.pexpiretime(store.ledger_key(rx.code)) == window_end_ms(rx.valid_until) + ms_of(RETENTION)


async def test_a_replayed_prescription_long_past_its_live_time_is_not_kept():
    """A rebuild or a late redelivery of an old issue event does not bring a dead ledger back."""
    async with empty_redis_database(DB) as client:
        store, rx = RedisLedgerStore(client, shards=4, retention=RETENTION), prescription(-30)
        await store.open_ledger(rx)
        assert await store.ledger(rx.code) is None
        assert await client.exists(store.ledger_key(rx.code)) == 0


def test_the_rebuild_puts_back_only_ledgers_still_live_by_the_same_rule():
    now = datetime.now(timezone.utc)
    rx = prescription(5)
    image = LedgerImage(rx, "active", "", True, {}, {1: 20, 2: 10}, False, [], {})
    assert live_until(image, RETENTION) == datetime.fromtimestamp(window_end_ms(rx.valid_until) / 1000,
                                                                  timezone.utc) + RETENTION
    last_day = prescription(0)
    sale = Sale("d1", "pharmacy-a", now, "c1", (), "", "", None)
    sold = LedgerImage(last_day, "active", "", True, {}, {1: 0, 2: 0}, False, [sale], {})
    assert live_until(sold, RETENTION) == sale.at + REVERSAL_WINDOW + RETENTION
    old = LedgerImage(prescription(-8), "cancelled", "", True, {}, {1: 20, 2: 10}, False, [], {})
    assert live_until(old, RETENTION) < now


async def test_a_rebuild_stopped_after_its_write_leaves_no_sale_kept_forever():
    """The rebuild writes a ledger's sales and retry records with their expiry in one
    transaction; the ledger's own expiry step after it may never run (the rebuild killed)."""
    from services.pharmacy.domain.model import Receipt
    from services.pharmacy.rebuild import write

    async with empty_redis_database(DB) as client:
        store, rx = RedisLedgerStore(client, shards=4, retention=RETENTION), prescription(5)
        now = datetime.now(timezone.utc)
        sale = Sale("d-1", "pharmacy-a", now, "", (SoldLine(1, "A", 5, 1000, False),), "key-1", "fp-1",
                    Receipt("d-1", "", ()))
        image = LedgerImage(rx, "active", "", True, {}, {1: 15, 2: 10}, False, [sale], {"d-1": {1: 15, 2: 10}})

        async def killed(code):
            raise KeyboardInterrupt("stopped before the ledger's expiry step")
        store.keep_live = killed
        with pytest.raises(KeyboardInterrupt):
            await write(store, image, {}, now)
        expected = ms(live_until(image, RETENTION))
        keys = [store._sale_key(rx.code, "d-1"), store._idem_key(rx.code, "pharmacy-a", "key-1")]
        assert [await client.exists(k) for k in keys] == [1, 1]
        assert [await client.pexpiretime(k) for k in keys] == [expected, expected]


def ms_of(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


# The prescribing service: a prescription's record, its issue request's retry record and the
# dispenses applied to it go a retention after its window and a last sale's reversal window.

async def test_a_prescription_and_what_goes_with_it_expire_together_in_prescribing():
    from eprescription.prescribing.v1 import prescribing_pb2 as pb

    from services.kernel.retention import epoch_ms, live_until
    from services.prescribing.adapters.grpc_api import issue_command
    from services.prescribing.bootstrap import bootstrap
    from tests.support import admin_redis_async, factories as f
    from tests.support.prescribing_fixtures import prescribing_settings

    settings = prescribing_settings()
    client = admin_redis_async(settings.common.redis_url_for("admin"), protocol=3)
    h, close = bootstrap(settings, redis_client=client)
    try:
        request = pb.IssuePrescriptionRequest(client_request_id=str(uuid.uuid4()), draft=f.draft(
            [f.line("C08CA01-5T", quantity=30, per_day=1, days=30)], diagnoses=(("I10", "Hypertension"),),
            patient=f.patient(citizen_id=f"0012{uuid.uuid4().int % 10**8:08d}")))
        issued = await h.issue(issue_command(request, "01001"))
        rx, store = issued.prescription, h.deps.store
        at = epoch_ms(live_until(rx.valid_until, timedelta(days=settings.common.retention_days)))
        assert await client.pexpiretime(store._rx_key(rx.code)) == at
        assert await client.pexpiretime(store._req_key("01001", request.client_request_id)) == at
        assert await store.apply_dispense(event_id=str(uuid.uuid4()), code=rx.code, sign=1, lines=[(1, 10)]) == "applied"
        assert await client.pexpiretime(store.layout.key(store._shard(rx.code[:5]), "applied", rx.code)) == at
    finally:
        await close()


async def test_a_patient_list_drops_entries_past_their_end_and_expires_with_its_last():
    import dataclasses
    from decimal import Decimal

    from services.kernel.retention import epoch_ms
    from services.prescribing.adapters.redis_store import RedisPrescriptionStore
    from services.prescribing.domain.model import ActiveMedication, Status

    async with empty_redis_database(DB) as client:
        store = RedisPrescriptionStore(client, shards=4, retention=RETENTION)
        today = datetime.now(VIETNAM).date()
        fresh = ActiveMedication("01001aaaaaaa-c", 1, "01001", "BS01", "C08CA01-5T", ("amlodipine",), "C08CA01",
                                 {"amlodipine": Decimal(5)}, today, 30, 30, 0, Status.ACTIVE, today + timedelta(days=5))
        old = dataclasses.replace(fresh, prescription_code="01001bbbbbbb-c", start=today - timedelta(days=90),
                                  days=5, valid_until=today - timedelta(days=85))
        key = store.patient_key("cccd:001203004567")
        now = datetime.now(timezone.utc)
        await store.put_medications("cccd:001203004567", [old], 1, now=now)     # a replay of a long-gone one
        assert await store.medications("cccd:001203004567") == [] and await client.exists(key) == 0
        await store.put_medications("cccd:001203004567", [fresh], 1, now=now)
        await store.put_medications("cccd:001203004567", [old], 1, now=now)
        assert [m.prescription_code for m in await store.medications("cccd:001203004567")] == [fresh.prescription_code]
        assert sorted(await client.hkeys(key)) == sorted(f"{p}{fresh.prescription_code}#1".encode()
                                                         for p in ("", "v:", "u:"))
        # the 30-day course outlives the 5-day window: the entry (and the list) stays for it
        assert await client.pexpiretime(key) == epoch_ms(store._entry_until(fresh))
        assert store._entry_until(fresh) > datetime.combine(fresh.valid_until, datetime.min.time(), VIETNAM) + RETENTION


# The insurance service: what it saw of a prescription until a claim of it can no longer come,
# a claim until its sale's reversal window ends, a member's yearly co-payment until next year's end.

async def test_the_insurer_keeps_a_prescription_a_claim_and_a_year_only_while_they_can_change():
    from datetime import date

    from services.insurance.adapters.redis_store import RedisInsuranceStore
    from services.kernel.retention import LONGEST_WINDOW as UNKNOWN_WINDOW
    from services.insurance.domain.adjudication import Adjudication
    from services.insurance.domain.prescriptions import Patient, PrescriptionFacts, Visit
    from services.insurance.domain.state import YearState
    from services.kernel.calendar import local_day
    from services.kernel.retention import epoch_ms, live_until, window_end

    async with empty_redis_database(DB) as client:
        store = RedisInsuranceStore(client, RETENTION)
        now = datetime.now(timezone.utc)
        today = local_day(now)
        visit = Visit("rx:x", 0, today, now)
        known = PrescriptionFacts("01001aaaaaaa-c", "01001", Patient("001203004567", ""), ((1, "A", 5),), visit,
                                  valid_until=today + timedelta(days=5))
        unknown = PrescriptionFacts("01001bbbbbbb-c", "01001", Patient("001203004567", ""), ((1, "A", 5),), visit)
        await store.save_prescription(known)
        await store.save_prescription(unknown)
        assert await client.pexpiretime("insurance:rx:01001aaaaaaa-c") == epoch_ms(live_until(known.valid_until,
                                                                                                RETENTION))
        assert await client.pexpiretime("insurance:rx:01001bbbbbbb-c") == epoch_ms(live_until(today + UNKNOWN_WINDOW,
                                                                                                RETENTION))
        assert (await store.prescription(known.code)).valid_until == known.valid_until

        claim = Adjudication("c-1", "m-1", "approved", now, dispensed_on=today)
        await store.save_adjudication(claim, (today.year, YearState(100, None, None)))
        assert await client.pexpiretime("insurance:claim:c-1") == epoch_ms(live_until(today, RETENTION))
        year_end = epoch_ms(window_end(date(today.year + 1, 12, 31)) + RETENTION)
        assert await client.pexpiretime("insurance:accumulator:{m-1}") == year_end
        # a claim of last year does not shorten what this year's co-payment needs
        older = Adjudication("c-0", "m-1", "approved", now, dispensed_on=date(today.year - 1, 6, 30))
        await store.save_adjudication(older, (today.year - 1, YearState(50, None, None)))
        assert await client.pexpiretime("insurance:accumulator:{m-1}") == year_end
        assert await client.exists("insurance:claim:c-0") == 0        # its sale's reversal window ended long ago


async def test_a_visit_is_kept_while_its_prescriptions_can_be_sold_or_reversed_and_is_packed():
    """A visit's sales count toward its threshold as long as a prescription of it (issued on its
    day, valid LONGEST_WINDOW at most) can be sold or reversed; it was kept 400 days."""
    from services.insurance.adapters.redis_store import RedisInsuranceStore
    from services.insurance.domain.adjudication import Adjudication
    from services.insurance.domain.state import VisitState
    from services.kernel.calendar import local_day
    from services.kernel.retention import epoch_ms, live_until

    async with empty_redis_database(DB) as client:
        store = RedisInsuranceStore(client, RETENTION)
        now = datetime.now(timezone.utc)
        today = local_day(now)
        visit = VisitState(today - timedelta(days=10), 250_000, now.isoformat())
        await store.save_adjudication(Adjudication("c-2", "m-2", "approved", now, dispensed_on=today),
                                      visit=("rx:01001ccccccc-c", visit))
        key = "insurance:visit:{m-2}:rx:01001ccccccc-c"
        assert await client.pexpiretime(key) == epoch_ms(live_until(visit.day + UNOPENED_LIFE, RETENTION))
        assert await store.visit("m-2", "rx:01001ccccccc-c") == visit
        assert (await client.get(key))[:1] != b"{"                      # packed, not plain JSON
        # a visit whose prescriptions are all long past is not kept
        await store.save_adjudication(Adjudication("c-3", "m-2", "approved", now, dispensed_on=today),
                                      visit=("rx:01001dddddd-c", VisitState(today - timedelta(days=200), 0,
                                                                             now.isoformat())))
        assert await client.exists("insurance:visit:{m-2}:rx:01001dddddd-c") == 0
