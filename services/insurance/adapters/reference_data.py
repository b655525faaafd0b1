"""Loads and validates the insurance reference data: the shared formulary and the dated
tables under reference/v1/insurance/."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from services.common.formulary import load_formulary
from services.common.reference_files import ReferenceDataError, load_manifest, read_rows
from services.insurance.domain import payees, prices
from services.insurance.domain.model import BenefitLevel, Coverage, ExemptionRule, Rules

LEVELS = ("primary", "basic", "specialised")


def load(directory: Path) -> Rules:
    manifest = load_manifest(directory)
    drugs = load_formulary(directory / "formulary.csv")
    folder = directory / "insurance"

    salaries = []
    for row in read_rows(folder / "base_salary.csv", ("effective_from", "base_salary_vnd", "source")):
        salaries.append((row.day("effective_from"), row.integer("base_salary_vnd", minimum=1)))

    levels: dict = defaultdict(dict)
    path = folder / "benefit_levels.csv"
    for row in read_rows(path, ("effective_from", "benefit_digit", "percent", "apply_payment_ratio",
                                "include_out_of_scope", "meaning")):
        digit = row.integer("benefit_digit", minimum=1, maximum=5)
        levels[row.day("effective_from")][digit] = BenefitLevel(
            digit, row.integer("percent", minimum=0, maximum=100), row.flag("apply_payment_ratio"),
            row.flag("include_out_of_scope"))
    for day, digits in levels.items():
        if sorted(digits) != [1, 2, 3, 4, 5]:
            raise ReferenceDataError(str(path), None, "benefit_digit", f"{day.isoformat()} must list digits 1 to 5")

    exemption = []
    for row in read_rows(folder / "exemption_rules.csv", ("effective_from", "small_visit_percent_of_base_salary",
                                                          "copay_threshold_months_of_base_salary",
                                                          "consecutive_years", "source")):
        exemption.append((row.day("effective_from"), ExemptionRule(
            row.integer("small_visit_percent_of_base_salary", minimum=0, maximum=100),
            row.integer("copay_threshold_months_of_base_salary", minimum=1),
            row.integer("consecutive_years", minimum=1))))

    changes: dict = defaultdict(list)
    for row in read_rows(folder / "coverage_changes.csv", ("effective_from", "drug_code", "bhyt_covered",
                                                           "payment_ratio", "source")):
        code = row.text("drug_code")
        if code not in drugs:
            raise row.fail("drug_code", f"{code!r} is not in the formulary")
        covered, ratio = row.flag("bhyt_covered"), row.integer("payment_ratio", minimum=0, maximum=100)
        if covered == (ratio == 0):
            raise row.fail("payment_ratio", "must be 0 exactly when the drug is not covered")
        changes[code].append((row.day("effective_from"), Coverage(covered, ratio)))

    price_list = load_prices(directory, drugs)
    for name, table in (("base_salary.csv", salaries), ("exemption_rules.csv", exemption)):
        if not table:
            raise ReferenceDataError(str(folder / name), None, None, "has no rows")
    return Rules(version=manifest.version, drugs=drugs, base_salary=tuple(sorted(salaries)),
                 benefit_levels=tuple(sorted(levels.items())), exemption=tuple(sorted(exemption)),
                 coverage_changes={k: tuple(sorted(v)) for k, v in changes.items()}, prices=price_list,
                 pharmacies=load_pharmacies(directory, price_list))


def load_pharmacies(directory: Path, price_list: prices.PriceList) -> dict[str, payees.Pharmacy]:
    out = {}
    for row in read_rows(directory / "pharmacies.csv", ("code", "name", "kind", "facility_code", "province")):
        code, kind = row.text("code").upper(), row.choice("kind", (payees.DISPENSARY, payees.RETAIL))
        facility = row.text("facility_code", required=kind == payees.DISPENSARY).lower()
        if kind == payees.DISPENSARY and facility not in price_list.facilities:
            raise row.fail("facility_code", f"{facility!r} is not in facilities.csv")
        if kind == payees.RETAIL and facility:
            raise row.fail("facility_code", "a retail pharmacy belongs to no facility")
        if code in out:
            raise row.fail("code", f"{code} repeats")
        out[code] = payees.Pharmacy(code, kind, facility)
    return out


def load_prices(directory: Path, drugs: dict) -> prices.PriceList:
    """facilities.csv (province, level, ownership) and insurance/drug_prices.csv."""
    facilities = {}
    for row in read_rows(directory / "facilities.csv", ("code", "province", "level", "ownership")):
        code = row.text("code").lower()
        facilities[code] = prices.Facility(code, row.text("province"), row.choice("level", LEVELS),
                                           row.choice("ownership", ("public", "private")) == "public")
    provinces = {f.province for f in facilities.values()}
    tables: dict = {basis: defaultdict(list) for basis in prices.BASES}
    seen: dict = {}
    for row in read_rows(directory / "insurance" / "drug_prices.csv",
                         ("effective_from", "drug_code", "basis", "scope", "unit_price_vnd", "source")):
        code, basis, scope = row.text("drug_code"), row.choice("basis", prices.BASES), row.text("scope")
        if code not in drugs:
            raise row.fail("drug_code", f"{code!r} is not in the formulary")
        if basis == prices.FACILITY_BID:
            scope = scope.lower()
            if scope not in facilities:
                raise row.fail("scope", f"{scope!r} is not in facilities.csv")
            key = (scope, code)
        elif basis == prices.PROVINCIAL:
            if scope not in provinces:
                raise row.fail("scope", f"{scope!r} is no province of facilities.csv")
            key = (scope, code)
        else:
            if scope != "VN":
                raise row.fail("scope", "a national price has scope VN")
            key = code
        day = row.day("effective_from")
        if (basis, key, day) in seen:
            raise row.fail("effective_from", f"repeats row {seen[(basis, key, day)]}")
        seen[(basis, key, day)] = row.number
        tables[basis][key].append((day, row.integer("unit_price_vnd", minimum=1)))
    frozen = {basis: {k: tuple(sorted(v)) for k, v in table.items()} for basis, table in tables.items()}
    return prices.PriceList(facilities, frozen[prices.FACILITY_BID], frozen[prices.NATIONAL],
                            frozen[prices.PROVINCIAL])
