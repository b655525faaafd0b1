import shutil
from datetime import date

import pytest

from services.common.reference_files import ReferenceDataError
from services.insurance.adapters import members_csv, reference_data
from tests.support.members import REFERENCE

HEADER = ",".join(members_csv.COLUMNS)
GOOD = "DN4010123456789,0123456789,001203004567,Nguyễn Văn An,1980-05-17,male,2026-01-01,2026-12-31,01001,,2019-01-01"


def test_the_demo_members_file_is_valid():
    accepted, rejected = members_csv.read(REFERENCE.parent / "demo" / "members.csv")
    assert len(accepted) >= 8 and rejected == []


@pytest.mark.parametrize("row, reason", [
    (GOOD.replace("DN4010123456789", "DN401012345678"), "card_code"),
    (GOOD.replace(",0123456789,", ",0123456780,"), "does not end with the social security number"),
    (GOOD.replace("001203004567", "00120300456"), "citizen_id must be 12 digits"),
    (GOOD.replace("male", "m"), "sex must be"),
    (GOOD.replace("2026-12-31", "2025-12-31"), "valid_to is before valid_from"),
    (GOOD.replace("2026-01-01", "01/01/2026"), "valid_from must be YYYY-MM-DD"),
    (GOOD.replace(",01001,", ",1001,"), "registered_facility"),
    (GOOD + ",extra", "wrong number of fields"),
])
def test_each_rejected_row_says_why(tmp_path, row, reason):
    path = tmp_path / "m.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n{row}\n", encoding="utf-8")
    accepted, rejected = members_csv.read(path)
    assert len(accepted) == 1
    assert rejected[0].row == 3 and reason in rejected[0].reason


def test_the_insurance_reference_data_loads_and_refuses_malformed_rows(tmp_path, rules):
    assert rules.base_salary_on(date(2026, 7, 1)) == 2_530_000
    copy = tmp_path / "ref"
    shutil.copytree(REFERENCE, copy)
    path = copy / "insurance" / "benefit_levels.csv"
    path.write_text(path.read_text().replace("2018-12-01,4,80", "2018-12-01,4,180"))
    with pytest.raises(ReferenceDataError) as err:
        reference_data.load(copy)
    assert (err.value.row, err.value.field) == (5, "percent")
