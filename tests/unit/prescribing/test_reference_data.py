import shutil

import pytest

from services.common.reference_files import ReferenceDataError
from services.prescribing.adapters import reference_data
from tests.support.members import REFERENCE


def test_the_shipped_reference_data_is_complete(ref):
    assert len(ref.drugs) >= 150
    assert len(ref.interactions) >= 40
    assert {d.controlled.value for d in ref.drugs.values()} == {"none", "narcotic", "psychotropic", "precursor"}
    assert any(f.has_inpatient_beds for f in ref.facilities.values())
    assert any(not f.has_inpatient_beds for f in ref.facilities.values())
    assert ref.version


@pytest.fixture
def copy(tmp_path):
    target = tmp_path / "ref"
    shutil.copytree(REFERENCE, target)
    return target


def corrupt(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("file, old, new, row, field, problem", [
    ("formulary.csv", "N02BE01-650T,Hapacol 650,paracetamol,650", "N02BE01-650T,Hapacol 650,paracetamol,six",
     3, "strength_mg", "numbers"),
    ("formulary.csv", ",tablet,none,0,1,100,900,", ",tablet,opioid,0,1,100,900,", 3, "controlled_class", "one of"),
    ("formulary.csv", "Hapacol 650,paracetamol,650,650 mg,tablet,oral,N02BE01,tablet,none,0,1,100",
     "Hapacol 650,paracetamol,650,650 mg,tablet,oral,N02BE01,tablet,none,0,1,0", 3, "payment_ratio", "covered"),
    ("interactions.csv", "warfarin,fluconazole,major", "warfarin,unobtainium,major", 5, "ingredient_b", "no ingredient"),
    ("interactions.csv", "warfarin,fluconazole,major", "warfarin,fluconazole,severe", 5, "severity", "one of"),
    ("max_daily_dose.csv", "ibuprofen,3200", "ibuprofen,-1", 3, "max_mg_per_day", "positive"),
    ("chronic_icd10.csv", "E10,E14,", "E10,Q99.99,", 9, "to", "ICD-10"),
    ("facilities.csv", "01234,", "0123,", 6, "code", "5 letters"),
    ("prescribers.csv", "BS. Demo Hai,01001", "BS. Demo Hai,55555", 3, "facility_code", "not in facilities"),
    ("supply_limits.csv", "2025-07-01,chronic,90", "2025-07-01,chronic,ninety", 13, "max_days", "whole number"),
])
def test_malformed_data_names_file_row_and_field(copy, file, old, new, row, field, problem):
    corrupt(copy / file, old, new)
    with pytest.raises(ReferenceDataError) as err:
        reference_data.load(copy)
    assert err.value.file.endswith(file)
    assert (err.value.row, err.value.field) == (row, field)
    assert problem in err.value.problem


def test_a_file_listed_in_the_manifest_must_exist(copy):
    (copy / "interactions.csv").unlink()
    with pytest.raises(ReferenceDataError, match="interactions.csv.*missing"):
        reference_data.load(copy)


def test_a_duplicate_drug_code_is_refused(copy):
    path = copy / "formulary.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(ReferenceDataError, match="repeats row 2"):
        reference_data.load(copy)
