from datetime import datetime, timedelta, timezone

import pytest

from services.insurance.domain import identifiers
from services.insurance.domain.alerts import ControlledPrescription, doctor_shopping

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def rx(code, prescriber, days):
    return ControlledPrescription(code, prescriber, T0 + timedelta(days=days))


def test_three_prescribers_within_30_days_is_doctor_shopping():
    found = doctor_shopping(rx("c3", "P3", 29), [rx("c1", "P1", 0), rx("c2", "P2", 10)])
    assert found is not None
    assert found.prescribers == ("P1", "P2", "P3") and found.codes == ("c1", "c2", "c3")


def test_the_window_is_30_days_back_from_the_new_prescription():
    assert doctor_shopping(rx("c3", "P3", 31), [rx("c1", "P1", 0), rx("c2", "P2", 10)]) is None
    assert doctor_shopping(rx("c3", "P3", 30), [rx("c1", "P1", 0), rx("c2", "P2", 10)]) is not None


def test_the_order_of_arrival_does_not_matter():
    # the latest prescription is processed first, the earliest last: the last one still sees all three
    assert doctor_shopping(rx("c3", "P3", 20), []) is None
    assert doctor_shopping(rx("c2", "P2", 10), [rx("c3", "P3", 20)]) is None
    found = doctor_shopping(rx("c1", "P1", 0), [rx("c3", "P3", 20), rx("c2", "P2", 10)])
    assert found is not None and found.codes == ("c1", "c2", "c3")


def test_a_window_that_contains_the_new_prescription_counts_on_either_side():
    # P1 at day 0, new P2 at day 25, P3 at day 29: one 30-day window holds all three
    assert doctor_shopping(rx("c2", "P2", 25), [rx("c1", "P1", 0), rx("c3", "P3", 29)]) is not None
    # P1 at day 0, new P2 at day 25, P3 at day 31: no 30-day window holds all three
    assert doctor_shopping(rx("c2", "P2", 25), [rx("c1", "P1", 0), rx("c3", "P3", 31)]) is None


def test_many_prescriptions_from_two_prescribers_are_not_shopping():
    history = [rx(f"c{i}", "P1" if i % 2 else "P2", i) for i in range(6)]
    assert doctor_shopping(rx("c9", "P1", 7), history) is None


@pytest.mark.parametrize("text, kind", [("DN4010123456789", "card"), ("dn4010123456789", "card"),
                                        ("0123456789", "ssn"), ("001203004567", "cccd")])
def test_three_identifiers_are_recognised(text, kind):
    assert identifiers.parse(text).kind == kind


@pytest.mark.parametrize("text", ["DN6010123456789", "012345678", "X", "DN40101234567890"])
def test_anything_else_is_not_an_identifier(text):
    assert identifiers.parse(text) is None


def test_a_card_code_carries_the_social_security_number():
    assert identifiers.ssn_of_card("DN4010123456789") == "0123456789"
