"""The request bounds, read from the message descriptors."""
from eprescription.pharmacy.v1 import pharmacy_pb2 as pb
from eprescription.prescribing.v1 import prescribing_pb2

from services.common import limits
from services.common.events import KafkaRecord
from services.common.outbox import MAX_EVENT_BYTES, EventTooLarge, outbox_argv
from tests.support import factories as f


def test_a_valid_request_is_within_every_bound():
    request = prescribing_pb2.IssuePrescriptionRequest(client_request_id="r1", draft=f.draft())
    assert limits.violations(request) == []


def test_each_kind_of_bound_names_its_field_and_limit():
    request = prescribing_pb2.IssuePrescriptionRequest(
        client_request_id="r" * 129,
        draft=f.draft(advice="a" * 2001, lines=[f.line(quantity=100_001, dose="1" * 13)],
                      patient=f.patient(allergies=["x"] * 51)))
    found = {v.field: (v.rule, v.message) for v in limits.violations(request)}
    assert found == {
        "client_request_id": ("TEXT_TOO_LONG", "at most 128 characters, got 129"),
        "draft.advice": ("TEXT_TOO_LONG", "at most 2000 characters, got 2001"),
        "draft.lines[0].quantity": ("OUT_OF_RANGE", "from 0 to 100000, got 100001"),
        "draft.lines[0].dose_per_administration": ("TEXT_TOO_LONG", "at most 12 characters, got 13"),
        "draft.patient.allergies": ("TOO_MANY_ITEMS", "at most 50 items, got 51"),
    }


def test_the_largest_accepted_sale_stays_exact_in_int64_and_in_lua_numbers():
    quantity = limits.INT["DispenseLine.quantity"][1]
    price = limits.INT["DispenseLine.unit_price_vnd"][1]
    lines = limits.COUNT["DispensePrescriptionRequest.lines"]
    assert quantity * price < 2**53 and quantity * price * lines < 2**63  # a line in Lua, a sale in int64
    sale = pb.DispensePrescriptionRequest(lines=[pb.DispenseLine(quantity=quantity, unit_price_vnd=price + 1)])
    assert [v.field for v in limits.violations(sale)] == ["lines[0].unit_price_vnd"]


def test_a_flood_of_violations_is_reported_up_to_a_limit():
    request = pb.DispensePrescriptionRequest(lines=[pb.DispenseLine(quantity=-1)] * 50)
    assert len(limits.violations(request)) == limits.MAX_VIOLATIONS


def test_an_event_that_kafka_would_refuse_never_enters_the_outbox():
    fits = KafkaRecord("rx.dispenses.v1", b"k", b"v" * 1000, (), "e1")
    assert outbox_argv(["a"], [fits])[-1] == 2
    too_large = KafkaRecord("rx.dispenses.v1", b"k", b"v" * (MAX_EVENT_BYTES + 1), (), "e2")
    try:
        outbox_argv(["a"], [fits, too_large])
    except EventTooLarge as error:
        assert "rx.dispenses.v1" in str(error)
    else:
        raise AssertionError("an event over the limit was accepted")
