"""ICD-10 codes and ranges of them (categories such as E11, subcategories such as E11.9)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


def normalize(code: str) -> str:
    """'e119 ' -> 'E11.9'."""
    plain = code.strip().upper().replace(".", "")
    return plain if len(plain) <= 3 else f"{plain[:3]}.{plain[3:]}"


@dataclass(frozen=True)
class IcdRange:
    """Every code from `first` to `last`, both included, at the precision each is written in:
    B20-B24 holds B24.9; E10.2-E10.4 holds E10.3 and E10.39 but not E10.5."""
    first: str
    last: str
    group: str = ""

    def contains(self, code: str) -> bool:
        plain = code.replace(".", "").upper()
        first, last = self.first.replace(".", "").upper(), self.last.replace(".", "").upper()
        return first <= plain[:len(first)] and plain[:len(last)] <= last


def any_in(codes: Iterable[str], ranges: Iterable[IcdRange]) -> bool:
    ranges = tuple(ranges)
    return any(r.contains(code) for code in codes for r in ranges)


CANCER = IcdRange("C00", "C97", "cancer")
AIDS = IcdRange("B20", "B24", "HIV disease")
ASYMPTOMATIC_HIV = IcdRange("Z21", "Z21", "asymptomatic HIV infection")
HIV = (AIDS, ASYMPTOMATIC_HIV)
