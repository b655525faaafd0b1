from datetime import date, datetime, timezone

import pytest
from eprescription.common.v1 import common_pb2

from services.common import national_codes as nc


@pytest.mark.parametrize("sex, prescription_system, claims_xml", [
    (common_pb2.SEX_MALE, 2, 1),
    (common_pb2.SEX_FEMALE, 3, 2),
    (common_pb2.SEX_UNKNOWN, 1, 3),
])
def test_sex_codes_differ_between_the_two_national_systems(sex, prescription_system, claims_xml):
    assert nc.sex_to_prescription_system(sex) == prescription_system
    assert nc.sex_to_claims_xml(sex) == claims_xml
    assert nc.sex_from_prescription_system(prescription_system) == sex
    assert nc.sex_from_claims_xml(claims_xml) == sex


def test_an_unspecified_sex_cannot_be_sent():
    with pytest.raises(KeyError):
        nc.sex_to_claims_xml(common_pb2.SEX_UNSPECIFIED)


def test_dates_are_d_m_y_in_the_prescription_system():
    assert nc.date_to_prescription_system(date(2026, 3, 7)) == "7/3/2026"
    assert nc.date_from_prescription_system("07/03/2026") == date(2026, 3, 7)


def test_claims_xml_times_are_vietnam_local_to_the_minute():
    moment = datetime(2026, 11, 30, 17, 45, 59, tzinfo=timezone.utc)  # 00:45 next day in Vietnam
    assert nc.time_to_claims_xml(moment) == "202612010045"
    assert nc.time_from_claims_xml("202612010045") == moment.replace(second=0)
    assert nc.date_to_claims_xml(date(2026, 1, 5)) == "20260105"
    with pytest.raises(ValueError):
        nc.time_to_claims_xml(datetime(2026, 1, 1))
