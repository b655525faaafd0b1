"""A drug of the formulary as every domain sees it."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class ControlledClass(StrEnum):
    NONE = "none"
    NARCOTIC = "narcotic"
    PSYCHOTROPIC = "psychotropic"
    PRECURSOR = "precursor"


@dataclass(frozen=True)
class Ingredient:
    name: str
    mg_per_unit: Decimal | None  # None where the strength is not a mass (IU, per-dose inhalers, extracts)


@dataclass(frozen=True)
class Drug:
    code: str
    name: str
    ingredients: tuple[Ingredient, ...]
    strength: str
    dosage_form: str
    route: str
    atc: str
    unit: str
    controlled: ControlledClass
    traditional: bool
    toxic_herb: bool
    bhyt_covered: bool
    payment_ratio: int  # percent of the price the fund takes into account
    unit_price_vnd: int

    @property
    def ingredient_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.ingredients)

    @property
    def therapeutic_class(self) -> str:
        return self.atc[:5]  # ATC level 4: chemical/therapeutic subgroup
