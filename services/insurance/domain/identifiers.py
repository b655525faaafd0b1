"""The three BHYT member identifiers in use side by side, all naming one member:
the legacy 15-character card code, the 10-digit social security number (since 2021)
and the 12-digit citizen ID (since 2025)."""
from __future__ import annotations

import re
from dataclasses import dataclass

CARD = re.compile(r"^[A-Z]{2}[1-5]\d{2}(\d{10})$")
SSN = re.compile(r"^\d{10}$")
CCCD = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class Identifier:
    kind: str    # card | ssn | cccd
    value: str


def parse(text: str) -> Identifier | None:
    value = text.strip().upper().replace(" ", "")
    if CARD.match(value):
        return Identifier("card", value)
    if SSN.match(value):
        return Identifier("ssn", value)
    if CCCD.match(value):
        return Identifier("cccd", value)
    return None


def ssn_of_card(card_code: str) -> str:
    match = CARD.match(card_code)
    if not match:
        raise ValueError(f"not a card code: {card_code!r}")
    return match.group(1)
