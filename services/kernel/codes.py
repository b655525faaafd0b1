"""The national prescription code: 5 facility characters, 7 random characters from [0-9a-z],
a dash and the type letter, e.g. 01234ab3k9x2-c (Circular 26/2025, Appendix I)."""
from __future__ import annotations

import re

BODY = r"[0-9a-z]{5}[0-9a-z]{7}-[cnhy]"   # for patterns that hold a code, such as a dispense id
PATTERN = re.compile(f"^{BODY}$")
FORMAT = "a prescription code is 5 facility characters, 7 of [0-9a-z], '-' and c, n, h or y"


def normalize(code: str) -> str:
    """Input may be upper case; codes are stored lower case."""
    return code.strip().lower()


def is_valid(code: str) -> bool:
    return bool(PATTERN.match(normalize(code)))


def facility_of(code: str) -> str:
    return normalize(code)[:5]
