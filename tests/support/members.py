"""Insurance members for unit tests: valid on 2026 by default."""
from datetime import date, datetime, timezone
from pathlib import Path

from services.insurance.domain.model import CardPeriod, Member
from services.insurance.domain.prescriptions import Patient, PrescriptionFacts, Visit, visit_key

REFERENCE = Path(__file__).resolve().parents[2] / "reference" / "v1"


def member(digit=4, *, valid=(date(2026, 1, 1), date(2026, 12, 31)), exempt_from=None, five_years_from=None,
           ssn="0123456789") -> Member:
    card = CardPeriod(f"DN{digit}01{ssn}", valid[0], valid[1], "01001")
    return Member(ssn, "001203004567", "Nguyễn Văn An", date(1980, 5, 17), "male", (card,),
                  copay_exempt_from=exempt_from, five_years_from=five_years_from)


CITIZEN_ID = "001203004567"   # member()'s citizen id


def prescription_facts(*lines, code="01001abcdefg-c", facility="01001", citizen_id=CITIZEN_ID, card="",
                       encounter="", other_costs=0, day=date(2026, 11, 30), stated_at=None) -> PrescriptionFacts:
    """What the insurer reads of a prescription: lines as (line number, drug code, quantity)."""
    stated = stated_at or datetime(day.year, day.month, day.day, 2, tzinfo=timezone.utc)
    return PrescriptionFacts(code, facility, Patient(citizen_id, card), tuple(lines),
                             Visit(visit_key(facility, encounter, code), other_costs, day, stated))
