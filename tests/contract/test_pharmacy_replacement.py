"""Replace and cancel against dispensing, on both ledger stores through the handlers: what a
prescription and all its successors dispense of a drug never exceeds what the latest version
prescribes, whatever order the events arrive in; the replaced code's refusal names its successor."""
from __future__ import annotations

import uuid
from datetime import date

import pytest
from eprescription.common.v1 import common_pb2

from services.common import dates
from services.common.events import decode
from services.pharmacy import handlers as pharmacy_handlers
from services.pharmacy.adapters.events import prescription_of
from services.pharmacy.domain.errors import Refused
from services.pharmacy.domain.events import DispensingClosed, PrescriptionClosed, PrescriptionIssued
from tests.contract.test_pharmacy_store import CONTRACT_DB, DRUGS, NOW, MemoryBackend, RedisBackend, command
from tests.support import memory_and_redis

backend = memory_and_redis(MemoryBackend, RedisBackend, CONTRACT_DB)


class Signatures:
    def verify(self, document: bytes) -> bool:
        return True


def handlers_for(store):
    return pharmacy_handlers.Pharmacy(pharmacy_handlers.Dependencies(store, DRUGS, Signatures(), None, lambda: NOW))


def version(*lines, replaces="", new_supply=False):
    rx = common_pb2.Prescription(code=f"01001{uuid.uuid4().hex[:7]}-n", facility_code="01001",
                                 valid_until=dates.to_proto(date(2026, 12, 4)), replaces_code=replaces,
                                 new_supply=new_supply)
    for n, (drug, qty) in enumerate(lines, start=1):
        rx.lines.add(line_number=n, drug_code=drug, quantity=qty)
    return prescription_of(rx.SerializeToString(deterministic=True))


async def sell(h, code, quantity, drug="A"):
    return await h.dispense(command(code, (1, drug, quantity)))


async def closed_events(backend_):
    """The DispensingClosed events appended to the outbox (domain events or envelopes)."""
    store = backend_.store
    if hasattr(store, "outbox"):
        return [e for e in store.outbox if isinstance(e, DispensingClosed)]
    found = []
    for stream in store.layout.streams():
        for _, fields in await backend_.client.xrange(stream):
            envelope = decode(fields[b"value"])
            if envelope.WhichOneof("payload") == "dispensing_closed":
                found.append(envelope)
    return found


async def test_a_replacement_of_a_partly_sold_narcotic_sells_only_the_rest(backend):
    h = handlers_for(backend.store)
    old = version(("A", 10))
    await h.on_prescription_issued(PrescriptionIssued(old))
    await sell(h, old.code, 9)
    new = version(("A", 10), replaces=old.code)
    await h.on_prescription_issued(PrescriptionIssued(new))
    with pytest.raises(Refused) as refused:
        await sell(h, old.code, 1)
    assert refused.value.rule == "PRESCRIPTION_REPLACED" and refused.value.details == {"replaced_by": new.code}
    assert new.code in str(refused.value)
    assert (await backend.store.ledger(new.code)).remaining == {1: 1}      # 10 prescribed, 9 already sold
    with pytest.raises(Refused) as over:
        await sell(h, new.code, 2)
    assert over.value.rule == "QUANTITY_EXCEEDS_REMAINING"
    await sell(h, new.code, 1)
    assert (await backend.store.ledger(old.code)).successor == new.code
    await h.on_prescription_closed(PrescriptionClosed(old.code, "replaced", new.code))   # the other event: no change
    assert len(await closed_events(backend)) == 1       # the old code's close, announced once


async def test_a_new_supply_is_not_reduced_but_the_old_code_closes(backend):
    h = handlers_for(backend.store)
    old = version(("A", 10))
    await h.on_prescription_issued(PrescriptionIssued(old))
    await sell(h, old.code, 9)
    new = version(("A", 10), replaces=old.code, new_supply=True)
    await h.on_prescription_issued(PrescriptionIssued(new))
    assert (await backend.store.ledger(new.code)).remaining == {1: 10}
    with pytest.raises(Refused):
        await sell(h, old.code, 1)


async def test_a_chain_whose_middle_arrives_last_waits_and_then_counts_every_sale(backend):
    h = handlers_for(backend.store)
    a = version(("A", 10), ("B", 4))
    await h.on_prescription_issued(PrescriptionIssued(a))
    await sell(h, a.code, 9)
    b = version(("A", 10), replaces=a.code)
    c = version(("B", 2), ("A", 10), replaces=b.code)
    await h.on_prescription_issued(PrescriptionIssued(c))          # C before B's own issue
    with pytest.raises(Refused) as waiting:
        await sell(h, c.code, 1, drug="B")
    assert waiting.value.rule == "PRESCRIPTION_AWAITING"
    await h.on_prescription_closed(PrescriptionClosed(a.code, "replaced", b.code))
    await h.on_prescription_issued(PrescriptionIssued(b))          # B: closes A (9 sold), then settles C
    ledger = await backend.store.ledger(c.code)
    assert ledger.recorded_status == "active" and ledger.remaining == {1: 2, 2: 1}
    with pytest.raises(Refused):
        await sell(h, b.code, 1)                                    # B was replaced before it ever sold
    assert (await backend.store.ledger(b.code)).successor == c.code


async def test_a_cancel_closes_the_code_and_reports_what_it_sold(backend):
    h = handlers_for(backend.store)
    rx = version(("A", 10))
    await h.on_prescription_issued(PrescriptionIssued(rx))
    await sell(h, rx.code, 3)
    await h.on_prescription_closed(PrescriptionClosed(rx.code, "cancelled"))
    await h.on_prescription_closed(PrescriptionClosed(rx.code, "cancelled"))
    with pytest.raises(Refused) as refused:
        await sell(h, rx.code, 1)
    assert refused.value.rule == "PRESCRIPTION_CANCELLED"
    events = await closed_events(backend)
    assert len(events) == 1
    closed = events[0].closed if isinstance(events[0], DispensingClosed) else events[0].dispensing_closed
    if isinstance(events[0], DispensingClosed):
        assert (closed.dispensed, closed.status) == ({1: 3}, "cancelled")
    else:
        assert [(l.line_number, l.quantity) for l in closed.lines] == [(1, 3)]
        assert closed.status == common_pb2.PRESCRIPTION_STATUS_CANCELLED
