import pytest

from services.kernel.icd10 import IcdRange, any_in, normalize


@pytest.mark.parametrize("raw, expected", [("e119", "E11.9"), (" E11.9 ", "E11.9"), ("b20", "B20"), ("j0290", "J02.90")])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("rng, code, inside", [
    (IcdRange("B20", "B24"), "B24.9", True),
    (IcdRange("B20", "B24"), "B25.0", False),
    (IcdRange("B20", "B24"), "b20", True),
    (IcdRange("E10.2", "E10.4"), "E10.39", True),
    (IcdRange("E10.2", "E10.4"), "E10.5", False),
    (IcdRange("E10.2", "E10.4"), "E10.1", False),
    (IcdRange("C00", "C97"), "C97.0", True),
    (IcdRange("C00", "C97"), "D00", False),
])
def test_range_holds_codes_at_its_precision(rng, code, inside):
    assert rng.contains(code) is inside


def test_any_in_reads_a_generator_once_per_range():
    assert any_in((c for c in ["A15.0", "Z21"]), (IcdRange("B20", "B24"), IcdRange("Z21", "Z21")))
    assert not any_in([], (IcdRange("B20", "B24"),))
