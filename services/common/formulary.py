"""The formulary file format, read by every service that needs drug data."""
from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from services.common.reference_files import ReferenceDataError, read_rows, unique
from services.kernel.drugs import ControlledClass, Drug, Ingredient

COLUMNS = ("code", "name", "active_ingredients", "strength_mg", "strength", "dosage_form", "route", "atc",
           "unit", "controlled_class", "traditional", "bhyt_covered", "payment_ratio", "unit_price_vnd",
           "toxic_herb")
_ATC = re.compile(r"^[A-Z](\d{2}([A-Z]([A-Z](\d{2})?)?)?)?$")


def load_formulary(path: Path) -> dict[str, Drug]:
    rows = read_rows(path, COLUMNS)
    drugs = [parse_drug(row) for row in rows]
    unique(((row, d.code) for row, d in zip(rows, drugs)), str(path), "code")
    if not drugs:
        raise ReferenceDataError(str(path), None, None, "has no drugs")
    return {d.code: d for d in drugs}


def parse_drug(row) -> Drug:
    names = [n.strip().lower() for n in row.text("active_ingredients").split("+")]
    if any(not n for n in names):
        raise row.fail("active_ingredients", "has an empty ingredient")
    strengths_text = row.text("strength_mg", required=False)
    if strengths_text:
        parts = strengths_text.split("+")
        if len(parts) != len(names):
            raise row.fail("strength_mg", f"has {len(parts)} amounts for {len(names)} ingredients")
        try:
            amounts = [Decimal(p) for p in parts]
        except ArithmeticError:
            raise row.fail("strength_mg", f"must be numbers joined by '+', got {strengths_text!r}") from None
        if any(a <= 0 for a in amounts):
            raise row.fail("strength_mg", "amounts must be positive")
    else:
        amounts = [None] * len(names)
    traditional = row.flag("traditional")
    atc = row.text("atc", required=not traditional)
    if atc and not _ATC.match(atc):
        raise row.fail("atc", f"is not an ATC code: {atc!r}")
    covered = row.flag("bhyt_covered")
    ratio = row.integer("payment_ratio", minimum=0, maximum=100)
    if covered and ratio == 0:
        raise row.fail("payment_ratio", "is 0 for a covered drug")
    if not covered and ratio != 0:
        raise row.fail("payment_ratio", "must be 0 for a drug outside the covered list")
    return Drug(
        code=row.text("code"), name=row.text("name"),
        ingredients=tuple(Ingredient(n, a) for n, a in zip(names, amounts)),
        strength=row.text("strength"), dosage_form=row.text("dosage_form"), route=row.text("route"),
        atc=atc, unit=row.text("unit"),
        controlled=ControlledClass(row.choice("controlled_class", tuple(c.value for c in ControlledClass))),
        traditional=traditional, toxic_herb=row.flag("toxic_herb"), bhyt_covered=covered,
        payment_ratio=ratio, unit_price_vnd=row.integer("unit_price_vnd", minimum=0),
    )
