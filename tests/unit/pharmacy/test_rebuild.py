"""The pharmacy ledgers as the rebuild computes them from the topics alone: sales, reversals,
a replacement chain carrying what was sold, the retry records' snapshots."""
from datetime import datetime, timezone

from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2

from services.common import dates
from services.common.events import new_envelope
from services.pharmacy.rebuild import histories, images

AT = datetime(2026, 11, 30, 3, tzinfo=timezone.utc)


def rx(code, qty, replaces="", new_supply=False):
    p = common_pb2.Prescription(code=code, facility_code="01001", replaces_code=replaces, new_supply=new_supply,
                                valid_until=dates.to_proto(datetime(2026, 12, 4).date()))
    p.lines.add(line_number=1, drug_code="N02BE01-500T", quantity=qty)
    return p


def env(payload, key):
    return new_envelope(payload, key=key, producer="t", correlation_id="c", occurred_at=AT)


def issued(p):
    return env(events_pb2.PrescriptionIssued(prescription=p), p.code)


def sold(code, dispense_id, qty, key):
    return env(events_pb2.MedicationDispensed(
        dispense_id=dispense_id, prescription_code=code, pharmacy_code="PH0001", idempotency_key=key,
        request_fingerprint=f"fp-{key}", lines=[events_pb2.DispensedLine(line_number=1, drug_code="N02BE01-500T",
                                                                         quantity=qty, unit_price_vnd=1_000)],
        receipt=[events_pb2.ReceiptLine(line_number=1, quantity=qty, patient_vnd=qty * 1_000)]), code)


def reversed_(code, dispense_id, qty):
    return env(events_pb2.DispenseReversed(dispense_id=dispense_id, prescription_code=code, pharmacy_code="PH0001",
                                           lines=[events_pb2.DispensedLine(line_number=1, quantity=qty)]), code)


def test_sales_reversals_and_a_replacement_chain_rebuild_as_the_live_ledgers_were():
    a, b, c = rx("01001aaaaaaa-c", 100), rx("01001bbbbbbb-c", 100, replaces="01001aaaaaaa-c"), \
        rx("01001ccccccc-c", 100, replaces="01001bbbbbbb-c")
    prescriptions = [issued(c), issued(b), issued(a)]          # order across codes is not guaranteed: any will do
    dispenses = [sold(a.code, "d-a1", 30, "k1"), sold(a.code, "d-a2", 20, "k2"), reversed_(a.code, "d-a2", 20),
                 sold(b.code, "d-b1", 25, "k3"),
                 env(events_pb2.DispensingClosed(prescription_code=a.code), a.code)]
    built = images(histories(prescriptions, dispenses))
    la, lb, lc = built[a.code], built[b.code], built[c.code]
    assert (la.status, la.successor, la.remaining, la.announced) == ("replaced", b.code, {1: 70}, True)
    assert (lb.status, lb.carried, lb.remaining) == ("replaced", {1: 30}, {1: 45})    # 30 carried, 25 sold
    assert (lc.status, lc.carried, lc.remaining, lc.settled) == ("active", {1: 55}, {1: 45}, True)
    assert [s.dispense_id for s in la.sales] == ["d-a1", "d-a2"] and la.sales[1].reversed_at is not None
    assert la.snapshots == {"d-a1": {1: 70}, "d-a2": {1: 50}}                         # what each retry saw
    assert la.sales[0].fingerprint == "fp-k1" and la.sales[0].receipt.lines[0].patient_vnd == 30_000


def test_a_replacement_whose_predecessor_is_missing_waits_and_a_new_supply_carries_nothing():
    orphan = rx("01001ddddddd-c", 10, replaces="01001zzzzzzz-c")
    old, fresh = rx("01001eeeeeee-c", 10), rx("01001fffffff-c", 10, replaces="01001eeeeeee-c", new_supply=True)
    built = images(histories([issued(orphan), issued(old), issued(fresh)], [sold(old.code, "d-e1", 4, "k")]))
    assert (built[orphan.code].status, built[orphan.code].settled) == ("awaiting", False)
    assert (built[fresh.code].carried, built[fresh.code].remaining) == ({}, {1: 10})
    assert "01001zzzzzzz-c" not in built            # closed by its successor but never issued: no ledger


def test_a_reversal_after_the_close_does_not_give_the_successor_more():
    old = rx("01001ggggggg-c", 50)
    new = rx("01001hhhhhhh-c", 50, replaces=old.code)
    closed = env(events_pb2.DispensingClosed(prescription_code=old.code,
                                             lines=[events_pb2.DispensedLine(line_number=1, quantity=20)]), old.code)
    built = images(histories([issued(old), issued(new)],
                             [sold(old.code, "d-g1", 20, "k"), closed, reversed_(old.code, "d-g1", 20)]))
    assert built[old.code].remaining == {1: 50}          # the reversal gave it back to the closed code
    assert built[new.code].carried == {1: 20} and built[new.code].remaining == {1: 30}
