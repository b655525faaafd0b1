from datetime import date
from pathlib import Path

import pytest

from services.common.formulary import load_formulary
from services.common.protected_data import load_protected
from services.kernel import protected
from tests.support.members import REFERENCE
from services.kernel.status import derive
from services.pharmacy.domain.dispensing import substitution_problem

DRUGS = load_formulary(Path(__file__).resolve().parents[3] / "reference" / "v1" / "formulary.csv")


@pytest.mark.parametrize("prescribed, given, ok", [
    ("N02BE01-500T", "N02BE01-500E", True),    # paracetamol 500 mg tablet -> 500 mg effervescent, oral
    ("N02BE01-500T", "N02BE01-650T", False),   # other strength
    ("N02BE01-500T", "N02BE01-1GI", False),    # other strength and route
    ("M01AB05-50T", "M01AB05-75I", False),     # diclofenac oral -> intramuscular
    ("J01CR02-1GT", "J01CA04-500C", False),    # other ingredients
])
def test_a_substitute_keeps_ingredients_strength_and_route(prescribed, given, ok):
    assert (substitution_problem(DRUGS[prescribed], DRUGS[given]) == "") is ok


@pytest.mark.parametrize("codes, hidden", [(["B20"], True), (["J06.9", "B24"], True), (["Z21"], True),
                                           (["O98.7"], True), (["R75"], True), (["Z20.6"], True), (["Z71.7"], True),
                                           (["O98.6"], False), (["Z20.5"], False), (["Z71.6"], False),
                                           (["B25.0"], False), (["A15.0"], False), ([], False)])
def test_protected_diagnoses_are_the_reference_data_s(codes, hidden):
    loaded = load_protected(REFERENCE)
    assert loaded.protected_diagnosis(codes) is hidden
    assert loaded.protected_diagnosis(codes) == protected.DEFAULT.protected_diagnosis(codes)


def test_antiretrovirals_are_protected_only_for_a_protected_diagnosis():
    loaded = load_protected(REFERENCE)
    assert loaded.protected_line("J05AR27", ["B20.0"]) and loaded.protected_line("J05AF07", ["Z20.6"])
    assert not loaded.protected_line("J05AF07", ["B18.1"])       # tenofovir for hepatitis B
    assert not loaded.protected_line("J05AB01", ["B20"])         # aciclovir: not an antiretroviral


@pytest.mark.parametrize("role, organisation, sees", [
    ("prescriber", "01001", True), ("prescriber", "79001", False), ("insurer", "bhxh", True),
    ("pharmacy", "PH0001", False), ("operator", "ops", False)])
def test_only_the_treating_facility_and_the_insurer_may_know(role, organisation, sees):
    assert protected.may_know(protected.Reader(role, organisation, "x"), "01001") is sees
    assert protected.may_know(None, "01001") is False


@pytest.mark.parametrize("recorded, remaining, today, expected", [
    ("active", {1: 20, 2: 10}, date(2026, 12, 4), "active"),
    ("active", {1: 5, 2: 10}, date(2026, 12, 4), "partially_dispensed"),
    ("active", {1: 0, 2: 0}, date(2026, 12, 30), "completed"),
    ("active", {1: 5, 2: 10}, date(2026, 12, 5), "expired"),
    ("cancelled", {1: 20, 2: 10}, date(2026, 12, 1), "cancelled"),
    ("replaced", {1: 0, 2: 0}, date(2026, 12, 1), "replaced"),
])
def test_status_on_a_day_from_what_remains(recorded, remaining, today, expected):
    prescribed = {1: 20, 2: 10}
    dispensed = {n: q - remaining[n] for n, q in prescribed.items()}
    assert derive(recorded, prescribed, dispensed, date(2026, 12, 4), today) == expected
