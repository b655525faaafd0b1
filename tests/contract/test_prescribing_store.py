"""One suite, two prescription stores: Redis and the in-memory one of the handler tests
(services/prescribing/ports.py states the contract)."""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal


from services.kernel.status import Status
from services.prescribing.adapters import documents
from services.prescribing.adapters.redis_store import RedisPrescriptionStore
from services.prescribing.domain.events import PrescriptionCancelled, PrescriptionIssued, PrescriptionReplaced
from services.prescribing.domain.model import ActiveMedication, Finding, Issued, NewPrescription, \
    RegisteredPrescriber, Severity
from services.prescribing.domain.outcomes import AlreadyCancelled, Collision, Done, Duplicate, InState, Missing
from services.kernel.drugs import Drug
from tests.support import memory_and_redis
from tests.support.memory_prescribing import MemoryPrescriptionStore
from tests.support.drafts import draft, line

CONTRACT_DB = 5
NOW = datetime(2026, 11, 30, 2, tzinfo=timezone.utc)
PRESCRIBER = RegisteredPrescriber("001234/HNO-CCHN", "BS01001001", "BS. Test", "01001", "pk-01001-001")
DRUG = Drug("N02BE01-500T", "Panadol", (), "500 mg", "tablet", "oral", "N02BE01", "tablet", "none", False, False,
            True, 100, 1050)


class RedisBackend:
    def __init__(self, client):
        # fixed dates in the cases, Redis expires by its own clock: a retention no case outlives
        self.client, self.store = client, RedisPrescriptionStore(client, shards=4, retention=timedelta(days=365 * 100))

    async def published(self) -> int:
        return sum([await self.client.xlen(s) for s in self.store.layout.streams()])


class MemoryBackend:
    def __init__(self):
        self.store = MemoryPrescriptionStore()

    async def published(self) -> int:
        return len(self.store.outbox)


backend = memory_and_redis(MemoryBackend, RedisBackend, CONTRACT_DB)


def issued(code=None, replaces="", quantity=20) -> Issued:
    new = NewPrescription(code or f"01001{uuid.uuid4().hex[:7]}-c", "01001", draft(line(quantity=quantity)), (DRUG,),
                          PRESCRIBER, NOW, date(2026, 12, 4), replaces)
    rx = documents.prescription_of(documents.build(new).SerializeToString(deterministic=True))
    return Issued(rx, (Finding("DUPLICATE_THERAPY", Severity.MODERATE, ("N02BE01-500T",), "twice"),))


async def issue(store, first: Issued, request_id=None, fingerprint="fp-1"):
    return await store.issue(facility="01001", request_id=request_id or str(uuid.uuid4()), fingerprint=fingerprint,
                             issued=first, records=[PrescriptionIssued(first.prescription, "", NOW)])


async def test_an_issue_is_kept_with_its_answer_and_published_once(backend):
    store, first = backend.store, issued()
    assert await issue(store, first, "r1") == Done()
    stored = await store.get(first.prescription.code)
    assert (stored.prescription, stored.recorded_status, stored.dispensed, stored.version) == \
        (first.prescription, "active", {}, 1)
    assert stored.status_on(date(2026, 11, 30)) is Status.ACTIVE
    assert await store.prior("01001", "r1") == Duplicate("fp-1", first)
    assert await store.prior("01001", "r2") is None
    assert await issue(store, issued(), "r1", fingerprint="fp-2") == Duplicate("fp-1", first)
    assert await issue(store, issued(code=first.prescription.code)) == Collision()
    assert await backend.published() == 1


async def test_a_replacement_closes_the_old_prescription_once(backend):
    store, old = backend.store, issued()
    await issue(store, old)
    new = issued(replaces=old.prescription.code)
    records = [PrescriptionReplaced(old.prescription.code, new.prescription, "dose", NOW),
               PrescriptionIssued(new.prescription, "", NOW)]
    args = dict(facility="01001", fingerprint="fp", old_code=old.prescription.code, records=records)
    assert await store.replace(request_id="r1", issued=new, **args) == Done()
    before = await store.get(old.prescription.code)
    assert (before.recorded_status, before.replaced_by, before.version) == ("replaced", new.prescription.code, 2)
    assert (await store.get(new.prescription.code)).recorded_status == "active"
    assert await store.replace(request_id="r2", issued=issued(), **args) == InState("replaced")
    assert await store.replace(request_id="r3", issued=issued(), **{**args, "old_code": "01001zzzzzzz-c"}) == Missing()
    assert await backend.published() == 3


async def test_a_cancel_is_final_and_a_completed_prescription_cannot_be_cancelled(backend):
    store, first, done = backend.store, issued(), issued(quantity=5)
    await issue(store, first)
    await issue(store, done)
    cancel = [PrescriptionCancelled(first.prescription.code, "error", "01001", NOW)]
    assert await store.cancel(code=first.prescription.code, reason="error", records=cancel) == Done()
    assert await store.cancel(code=first.prescription.code, reason="error", records=cancel) == AlreadyCancelled()
    assert (await store.get(first.prescription.code)).status_on(date(2026, 11, 30)) is Status.CANCELLED
    assert await store.cancel(code="01001zzzzzzz-c", reason="x", records=cancel) == Missing()
    await store.apply_dispense(event_id="e1", code=done.prescription.code, sign=1, lines=[(1, 5)])
    assert await store.cancel(code=done.prescription.code, reason="x", records=cancel) == InState("completed")
    assert await backend.published() == 3


async def test_a_dispense_is_applied_once_per_event_and_a_reversal_takes_it_back(backend):
    store, first = backend.store, issued()
    await issue(store, first)
    code = first.prescription.code
    assert await store.apply_dispense(event_id="e1", code=code, sign=1, lines=[(1, 8)]) == "applied"
    assert await store.apply_dispense(event_id="e1", code=code, sign=1, lines=[(1, 8)]) == "seen"
    assert (await store.get(code)).dispensed == {1: 8}
    assert await store.apply_dispense(event_id="e2", code=code, sign=-1, lines=[(1, 8)]) == "applied"
    stored = await store.get(code)
    assert stored.dispensed == {1: 0} and stored.version == 3
    assert await store.apply_dispense(event_id="e3", code="01001zzzzzzz-c", sign=1, lines=[(1, 1)]) == "missing"


def medication(code, version_marker, line_number=1, start=date(2026, 11, 30)):
    return ActiveMedication(code, line_number, "01001", "001234/HNO-CCHN", "N02BE01-500T", ("paracetamol",),
                            "N02BE01", {"paracetamol": Decimal("2000")}, start, 5, 20, version_marker, Status.ACTIVE,
                            date(2026, 12, 4))


async def test_a_patient_list_keeps_the_newest_version_of_each_entry(backend):
    store, key = backend.store, f"cccd:{uuid.uuid4().hex[:12]}"
    await store.put_medications(key, [medication("01001aaaaaaa-c", 5)], version=3)
    await store.put_medications(key, [medication("01001aaaaaaa-c", 1)], version=2)   # older: ignored
    await store.put_medications(key, [medication("01001bbbbbbb-c", 0, start=date(2026, 11, 1))], version=1)
    meds = await store.medications(key)
    assert [(m.prescription_code, m.dispensed) for m in meds] == [("01001bbbbbbb-c", 0), ("01001aaaaaaa-c", 5)]
    assert meds[1] == medication("01001aaaaaaa-c", 5)
    await store.put_medications(key, [replace(medication("01001aaaaaaa-c", 7))], version=3)  # same version: rewritten
    assert (await store.medications(key))[1].dispensed == 7
    assert await store.medications("cccd:000000000000") == []


async def test_the_pharmacies_final_count_lands_on_a_known_prescription_only(backend):
    store, first = backend.store, issued()
    await issue(store, first)
    code = first.prescription.code
    assert await store.close_dispensing(code, {1: 12})
    assert (await store.get(code)).closed_dispensed == {1: 12}
    assert await store.close_dispensing(code, {1: 15})               # a later count replaces it
    assert (await store.get(code)).progress() == [(1, 20, 15)]
    missing = f"01001{uuid.uuid4().hex[:7]}-c"
    assert not await store.close_dispensing(missing, {1: 3})         # gone (expired) or never known:
    assert await store.get(missing) is None                          # nothing is written back


async def test_a_final_count_keeps_the_record_s_expiry():
    from tests.support import empty_redis_database
    async with empty_redis_database(CONTRACT_DB) as client:
        store, first = RedisBackend(client).store, issued()
        await issue(store, first)
        key = store._rx_key(first.prescription.code)
        expiry = await client.pexpiretime(key)
        assert expiry > 0
        assert await store.close_dispensing(first.prescription.code, {1: 4})
        assert await client.pexpiretime(key) == expiry
