"""Code and date formats of the national systems, mapped explicitly at the edge.

The national prescription system numbers sex 1 unknown, 2 male, 3 female and writes dates
d/m/Y; the BHYT claims XML numbers sex 1 male, 2 female, 3 unknown and writes times
yyyymmddHHMM; FHIR's administrative gender is male, female, other, unknown (other, which
neither national system has, is taken as unknown: the claims XML's 3, "not determined"). Inside the platform sex is the common.v1.Sex enum and times are aware datetimes."""
from __future__ import annotations

from datetime import date, datetime

from eprescription.common.v1 import common_pb2

from services.kernel.calendar import VIETNAM


_TO_PRESCRIPTION_SYSTEM = {common_pb2.SEX_UNKNOWN: 1, common_pb2.SEX_MALE: 2, common_pb2.SEX_FEMALE: 3}
_TO_CLAIMS_XML = {common_pb2.SEX_MALE: 1, common_pb2.SEX_FEMALE: 2, common_pb2.SEX_UNKNOWN: 3}


def sex_to_prescription_system(sex: int) -> int:
    return _TO_PRESCRIPTION_SYSTEM[sex]


def sex_from_prescription_system(code: int) -> int:
    return {v: k for k, v in _TO_PRESCRIPTION_SYSTEM.items()}[code]


_TO_FHIR = {common_pb2.SEX_MALE: "male", common_pb2.SEX_FEMALE: "female", common_pb2.SEX_UNKNOWN: "unknown"}
_FROM_FHIR = {"male": common_pb2.SEX_MALE, "female": common_pb2.SEX_FEMALE, "other": common_pb2.SEX_UNKNOWN,
              "unknown": common_pb2.SEX_UNKNOWN}


def sex_to_fhir(sex: int) -> str:
    return _TO_FHIR.get(sex, "unknown")


def sex_from_fhir(code: str) -> int | None:
    """None: not a FHIR administrative-gender code."""
    return _FROM_FHIR.get(code)


def sex_to_claims_xml(sex: int) -> int:
    return _TO_CLAIMS_XML[sex]


def sex_from_claims_xml(code: int) -> int:
    return {v: k for k, v in _TO_CLAIMS_XML.items()}[code]


def date_to_prescription_system(day: date) -> str:
    return f"{day.day}/{day.month}/{day.year}"


def date_from_prescription_system(text: str) -> date:
    d, m, y = (int(part) for part in text.split("/"))
    return date(y, m, d)


def time_to_claims_xml(moment: datetime) -> str:
    """Claims XML times are Vietnam local time, to the minute."""
    if moment.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    return moment.astimezone(VIETNAM).strftime("%Y%m%d%H%M")


def time_from_claims_xml(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M").replace(tzinfo=VIETNAM)


def date_to_claims_xml(day: date) -> str:
    return day.strftime("%Y%m%d")
