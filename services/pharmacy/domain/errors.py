"""The pharmacy domain's refusals: one type per kind of answer the caller can act on."""
from __future__ import annotations


class PharmacyError(Exception):
    """Base of the domain's refusals."""


class InvalidRequest(PharmacyError):
    def __init__(self, field: str, rule: str, message: str):
        self.field, self.rule = field, rule
        super().__init__(message)


class Refused(PharmacyError):
    """A rule that the prescription's state forbids (FAILED_PRECONDITION)."""

    def __init__(self, rule: str, message: str, subject: str = "code", details: dict[str, str] | None = None):
        self.rule, self.subject, self.details = rule, subject, details or {}
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
