import re
from collections import Counter

import pytest

from services.prescribing.domain import codes
from services.prescribing.domain.model import RxType


def test_a_code_has_the_national_shape_and_is_stored_lower_case():
    code = codes.new_code("0123A", RxType.NARCOTIC)
    assert re.fullmatch(r"0123a[0-9a-z]{7}-n", code)
    assert len(code) == 14
    assert codes.is_valid(code.upper()) and codes.normalize(code.upper()) == code
    assert codes.facility_of(code) == "0123a" and codes.type_of(code) is RxType.NARCOTIC


@pytest.mark.parametrize("bad", ["01234ab3k9x2c", "01234ab3k9x2-x", "0123ab3k9x2-c", "01234ab3k9x2!-c",
                                 "01234ab3k9x22-c", ""])
def test_malformed_codes_are_refused(bad):
    assert not codes.is_valid(bad)


def test_codes_are_not_sequential_and_spread_over_the_alphabet():
    made = [codes.new_code("01001", RxType.ORDINARY) for _ in range(2000)]
    assert len(set(made)) == 2000
    randoms = [c[5:12] for c in made]
    assert sorted(randoms) != randoms  # not issued in order
    counts = Counter(ch for r in randoms for ch in r)
    assert set(counts) == set(codes.ALPHABET)  # every character of [0-9a-z] occurs
    assert max(counts.values()) < 3 * min(counts.values())


def test_the_random_part_comes_from_the_given_source():
    assert codes.new_code("01001", RxType.TRADITIONAL, choice=lambda alphabet: "z") == "01001zzzzzzz-y"


def test_a_facility_code_is_five_letters_or_digits():
    with pytest.raises(ValueError):
        codes.new_code("0100", RxType.ORDINARY)
