"""Patient-safety checks at issue, against the new lines and the patient's active
medications from every facility (DOMAIN.md section 9). Each finding names drugs and rule."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

from services.kernel.drugs import Drug
from services.prescribing.domain.model import ActiveMedication, Finding, Line, ReferenceData, Severity, Status
from services.prescribing.domain.rules import daily_mg

EARLY_REFILL_USED = Fraction(2, 3)
_ATC_PREFIX = re.compile(r"^[A-Z]\d{2}[A-Z]{0,2}\d{0,2}$")


@dataclass(frozen=True)
class _Item:
    """A drug the patient would be taking: a new line or an active medication."""

    label: str            # "new line 2" or "01001abcdefg-c line 1"
    drug_code: str
    ingredients: tuple[str, ...]
    atc: str
    daily_mg: dict[str, Decimal]
    new: bool


def still_taking(med: ActiveMedication, today: date) -> bool:
    if med.status in (Status.CANCELLED, Status.REPLACED, Status.EXPIRED):
        return False
    return (today - med.start).days < med.days


def check(lines: list[tuple[Line, Drug]], active: list[ActiveMedication], allergies: tuple[str, ...],
          ref: ReferenceData, today: date) -> list[Finding]:
    current = [m for m in active if still_taking(m, today)]
    new_items = [_Item(f"new line {line.line_number}", drug.code, drug.ingredient_names, drug.atc,
                       daily_mg(line, drug), True) for line, drug in lines]
    old_items = [_Item(f"{m.prescription_code} ({m.drug_code})", m.drug_code, m.ingredients, m.atc,
                       m.daily_mg, False) for m in current]
    findings: list[Finding] = []
    findings += interactions(new_items, old_items, ref)
    findings += allergy_findings(new_items, allergies)
    findings += duplicate_therapy(new_items, old_items)
    findings += max_daily_dose(new_items, old_items, ref)
    findings += early_refill(new_items, current, today)
    return sorted(findings, key=lambda f: -f.severity)


def interactions(new: list[_Item], old: list[_Item], ref: ReferenceData) -> list[Finding]:
    findings = []
    pairs = [(a, b) for i, a in enumerate(new) for b in new[i + 1:]] + [(a, b) for a in new for b in old]
    for a, b in pairs:
        for x in a.ingredients:
            for y in b.ingredients:
                hit = ref.interactions.get(frozenset((x, y)))
                if hit is not None and x != y:
                    findings.append(Finding(
                        "interaction", hit.severity, (a.drug_code, b.drug_code),
                        f"{x} ({a.label}) + {y} ({b.label}): {hit.severity.name.lower()}: {hit.rationale}"))
    return findings


def _allergy_matches(entry: str, item: _Item) -> bool:
    entry = entry.strip()
    if _ATC_PREFIX.match(entry.upper()) and item.atc:
        return item.atc.startswith(entry.upper())
    return entry.lower() in item.ingredients


def allergy_findings(new: list[_Item], allergies: tuple[str, ...]) -> list[Finding]:
    return [Finding("allergy", Severity.CONTRAINDICATED, (item.drug_code,),
                    f"patient is allergic to {entry}: {item.label} contains {', '.join(item.ingredients)}")
            for item in new for entry in allergies if entry.strip() and _allergy_matches(entry, item)]


def duplicate_therapy(new: list[_Item], old: list[_Item]) -> list[Finding]:
    findings = []
    pairs = [(a, b) for i, a in enumerate(new) for b in new[i + 1:]] + [(a, b) for a in new for b in old]
    for a, b in pairs:
        shared = sorted(set(a.ingredients) & set(b.ingredients))
        if shared:
            findings.append(Finding("duplicate_therapy", Severity.MAJOR, (a.drug_code, b.drug_code),
                                    f"{a.label} and {b.label} both contain {', '.join(shared)}"))
        elif a.atc and b.atc and len(a.atc) >= 5 and a.atc[:5] == b.atc[:5]:
            findings.append(Finding("duplicate_therapy", Severity.MODERATE, (a.drug_code, b.drug_code),
                                    f"{a.label} and {b.label} are in the same therapeutic class {a.atc[:5]}"))
    return findings


def max_daily_dose(new: list[_Item], old: list[_Item], ref: ReferenceData) -> list[Finding]:
    findings = []
    for ingredient in sorted({i for item in new for i in item.ingredients}):
        limit = ref.max_daily_mg.get(ingredient)
        if limit is None:
            continue
        takers = [item for item in new + old if ingredient in item.daily_mg]
        total = sum((item.daily_mg[ingredient] for item in takers), Decimal(0))
        if total > limit:
            findings.append(Finding(
                "max_daily_dose", Severity.CONTRAINDICATED, tuple(item.drug_code for item in takers),
                f"{ingredient}: {total.normalize():f} mg a day from {', '.join(t.label for t in takers)} "
                f"exceeds the maximum of {limit.normalize():f} mg"))
    return findings


def early_refill(new: list[_Item], current: list[ActiveMedication], today: date) -> list[Finding]:
    findings = []
    for item in new:
        for med in current:
            shared = set(item.ingredients) & set(med.ingredients)
            if not shared or med.days <= 0:
                continue
            used = Fraction((today - med.start).days, med.days)
            if used < EARLY_REFILL_USED:
                findings.append(Finding(
                    "early_refill", Severity.MODERATE, (item.drug_code, med.drug_code),
                    f"{', '.join(sorted(shared))}: {med.prescription_code} started {med.start.isoformat()} for "
                    f"{med.days} days is {float(used):.0%} used, under two-thirds"))
    return findings


def blocking(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is Severity.CONTRAINDICATED]
