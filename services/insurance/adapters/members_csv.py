"""The agency's member export (CSV) into members, row by row, with a reason per rejected row."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from services.insurance.domain.identifiers import CARD, CCCD, SSN
from services.insurance.domain.model import CardPeriod, Member

COLUMNS = ("card_code", "social_security_number", "citizen_id", "full_name", "date_of_birth", "sex", "valid_from",
           "valid_to", "registered_facility", "copay_exempt_from", "five_years_from")


@dataclass(frozen=True)
class Rejected:
    row: int
    reason: str


def _day(value: str, field: str, required: bool = True) -> date | None:
    value = value.strip()
    if not value:
        if required:
            raise ValueError(f"{field} is empty")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field} must be YYYY-MM-DD, got {value!r}") from None


def parse_row(values: dict[str, str]) -> Member:
    card = values["card_code"].strip().upper()
    ssn = values["social_security_number"].strip()
    cccd = values["citizen_id"].strip()
    if not CARD.match(card):
        raise ValueError(f"card_code {card!r} is not 2 letters, a benefit digit 1-5, 2 province digits and 10 digits")
    if not SSN.match(ssn):
        raise ValueError("social_security_number must be 10 digits")
    if card[5:] != ssn:
        raise ValueError("card_code does not end with the social security number")
    if not CCCD.match(cccd):
        raise ValueError("citizen_id must be 12 digits")
    name = values["full_name"].strip()
    if len(name) < 2:
        raise ValueError("full_name is empty")
    sex = values["sex"].strip().lower()
    if sex not in ("male", "female", "unknown"):
        raise ValueError("sex must be male, female or unknown")
    valid_from, valid_to = _day(values["valid_from"], "valid_from"), _day(values["valid_to"], "valid_to")
    if valid_to < valid_from:
        raise ValueError("valid_to is before valid_from")
    facility = values["registered_facility"].strip()
    if len(facility) != 5 or not facility.isalnum():
        raise ValueError("registered_facility must be a 5-character facility code")
    return Member(member_id=ssn, citizen_id=cccd, full_name=name, date_of_birth=_day(values["date_of_birth"],
                  "date_of_birth"), sex=sex, cards=(CardPeriod(card, valid_from, valid_to, facility),),
                  copay_exempt_from=_day(values["copay_exempt_from"], "copay_exempt_from", required=False),
                  five_years_from=_day(values["five_years_from"], "five_years_from", required=False))


def read(path: Path) -> tuple[list[tuple[int, Member]], list[Rejected]]:
    accepted, rejected = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: header lacks {', '.join(missing)}")
        for values in reader:
            if None in values or any(v is None for v in values.values()):
                rejected.append(Rejected(reader.line_num, "wrong number of fields"))
                continue
            try:
                accepted.append((reader.line_num, parse_row(values)))
            except ValueError as exc:
                rejected.append(Rejected(reader.line_num, str(exc)))
    return accepted, rejected
