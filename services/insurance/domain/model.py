"""The insurance domain's values: members, cards, dated rules. Pure, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from services.insurance.domain.payees import Pharmacy
from services.insurance.domain.prices import PriceList
from services.kernel.dated import in_force
from services.kernel.drugs import Drug


@dataclass(frozen=True)
class CardPeriod:
    card_code: str           # 15 characters: group, benefit digit, province, social security number
    valid_from: date
    valid_to: date
    registered_facility: str

    @property
    def benefit_digit(self) -> int:
        return int(self.card_code[2])

    def covers(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_to


@dataclass(frozen=True)
class Member:
    member_id: str           # the 10-digit social security number
    citizen_id: str
    full_name: str
    date_of_birth: date
    sex: str
    cards: tuple[CardPeriod, ...]
    copay_exempt_from: date | None = None   # exemption certificate on the card
    five_years_from: date | None = None     # start of 5 consecutive years insured

    def card_on(self, day: date) -> CardPeriod | None:
        for card in self.cards:
            if card.covers(day):
                return card
        return None

    def nearest_card(self, day: date) -> CardPeriod | None:
        return min(self.cards, key=lambda c: abs((c.valid_from - day).days), default=None)

    def five_consecutive_years_on(self, day: date) -> bool:
        if self.five_years_from is None:
            return False
        start = self.five_years_from
        try:
            fifth = start.replace(year=start.year + 5)
        except ValueError:  # 29 February
            fifth = date(start.year + 5, 3, 1)
        return fifth <= day


@dataclass(frozen=True)
class BenefitLevel:
    digit: int
    percent: int
    apply_payment_ratio: bool
    include_out_of_scope: bool


@dataclass(frozen=True)
class ExemptionRule:
    small_visit_percent: int           # of the base salary
    copay_threshold_months: int        # of the base salary, per calendar year
    consecutive_years: int


@dataclass(frozen=True)
class Coverage:
    covered: bool
    payment_ratio: int


@dataclass(frozen=True)
class Rules:
    """The insurance reference data: every table dated, judged on a day."""

    version: str
    drugs: dict[str, Drug]
    base_salary: tuple[tuple[date, int], ...]
    benefit_levels: tuple[tuple[date, dict[int, BenefitLevel]], ...]
    exemption: tuple[tuple[date, ExemptionRule], ...]
    coverage_changes: dict[str, tuple[tuple[date, Coverage], ...]]
    prices: PriceList = PriceList()
    pharmacies: dict[str, Pharmacy] = field(default_factory=dict)

    def pharmacy(self, code: str) -> Pharmacy | None:
        return self.pharmacies.get(code.strip().upper())

    def base_salary_on(self, day: date) -> int:
        return in_force(self.base_salary, day)

    def benefit_on(self, digit: int, day: date) -> BenefitLevel:
        return in_force(self.benefit_levels, day)[digit]

    def exemption_on(self, day: date) -> ExemptionRule:
        return in_force(self.exemption, day)

    def coverage_on(self, drug: Drug, day: date) -> Coverage:
        current = Coverage(drug.bhyt_covered, drug.payment_ratio)
        for effective_from, change in self.coverage_changes.get(drug.code, ()):
            if effective_from <= day:
                current = change
        return current


class InsuranceError(Exception):
    """Base of the domain's refusals."""


class InvalidIdentifier(InsuranceError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class UnknownMember(InsuranceError):
    pass


class NotEligible(InsuranceError):
    def __init__(self, reason: str, message: str, field: str = "card_identifier"):
        self.reason, self.field = reason, field
        super().__init__(message)


class UnknownDrug(InsuranceError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Eligibility:
    member_id: str
    eligible: bool
    reason: str                        # ELIGIBLE, CARD_EXPIRED, CARD_NOT_YET_VALID
    card: CardPeriod | None            # the card valid on the day, else the nearest one
    benefit_percent: int = 0
    copay_exempt: bool = False
