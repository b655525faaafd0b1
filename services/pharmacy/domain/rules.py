"""Dispensing rules (Circular 26/2025; GPP as amended by Circular 11/2025). Pure."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.common.formulary import Drug

REVERSAL_WINDOW_HOURS = 24


class PharmacyError(Exception):
    """Base of the domain's refusals."""


class InvalidRequest(PharmacyError):
    def __init__(self, field: str, rule: str, message: str):
        self.field, self.rule = field, rule
        super().__init__(message)


class Refused(PharmacyError):
    """A rule that the prescription's state forbids (FAILED_PRECONDITION)."""

    def __init__(self, rule: str, message: str, subject: str = "code"):
        self.rule, self.subject = rule, subject
        super().__init__(message)


class NotFound(PharmacyError):
    pass


class NotPermitted(PharmacyError):
    def __init__(self, rule: str, message: str):
        self.rule = rule
        super().__init__(message)


class RequestConflict(PharmacyError):
    pass


class InsuranceUnavailable(PharmacyError):
    pass


@dataclass(frozen=True)
class Batch:
    start: date
    end: date


def substitution_problem(prescribed: Drug, given: Drug) -> str:
    """Empty when `given` may replace `prescribed`: same active ingredients, strength and route."""
    if sorted(prescribed.ingredients, key=lambda i: i.name) != sorted(given.ingredients, key=lambda i: i.name):
        return "a substitute must have the same active ingredients and strength"
    if prescribed.route != given.route:
        return f"a substitute must have the same route ({prescribed.route}, not {given.route})"
    return ""


def status(recorded: str, prescribed: dict[int, int], remaining: dict[int, int], valid_until: date,
           today: date) -> str:
    if recorded in ("cancelled", "replaced"):
        return recorded
    if all(remaining.get(n, 0) == 0 for n in prescribed):
        return "completed"
    if today > valid_until:
        return "expired"
    if any(remaining.get(n, 0) < q for n, q in prescribed.items()):
        return "partially_dispensed"
    return "active"
