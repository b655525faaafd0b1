"""The national prescription code: 5-character facility code, 7 random characters from
[0-9a-z], a dash and the type letter, e.g. 01234ab3k9x2-c (Circular 26/2025, Appendix I)."""
from __future__ import annotations

import re
import secrets

from services.kernel.codes import facility_of, is_valid, normalize  # noqa: F401  (the one pattern)
from services.prescribing.domain.model import RxType

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 7
_FACILITY = re.compile(r"^[0-9A-Za-z]{5}$")


def is_facility_code(value: str) -> bool:
    return bool(_FACILITY.match(value))


def new_code(facility_code: str, rx_type: RxType, choice=secrets.choice) -> str:
    """Unpredictable: the random part comes from the OS's CSPRNG, never a counter.
    Uniqueness within the facility is enforced where the code is stored."""
    if not is_facility_code(facility_code):
        raise ValueError(f"facility code must be 5 letters or digits, got {facility_code!r}")
    random_part = "".join(choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return f"{facility_code.lower()}{random_part}-{rx_type.value}"


def type_of(code: str) -> RxType:
    return RxType(normalize(code)[-1])
