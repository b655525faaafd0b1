"""Insurance members for unit tests: valid on 2026 by default."""
from datetime import date
from pathlib import Path

from services.insurance.domain.model import CardPeriod, Member

REFERENCE = Path(__file__).resolve().parents[2] / "reference" / "v1"


def member(digit=4, *, valid=(date(2026, 1, 1), date(2026, 12, 31)), exempt_from=None, five_years_from=None,
           ssn="0123456789") -> Member:
    card = CardPeriod(f"DN{digit}01{ssn}", valid[0], valid[1], "01001")
    return Member(ssn, "001203004567", "Nguyễn Văn An", date(1980, 5, 17), "male", (card,),
                  copay_exempt_from=exempt_from, five_years_from=five_years_from)
