"""Every request field's bound, declared once and checked at the gRPC edge before anything
is read or written: strings by characters, repeated fields by count, integers by range.
The ranges keep every product the rules compute (quantity x unit price, dose x per day x
days) inside int64 and inside 2^53, where Lua's numbers stay exact.

A field not named here gets the default of its kind; a message is walked field by field,
nested messages included, and every violation names its path (`draft.lines[3].quantity`)."""
from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

DEFAULT_TEXT = 128          # characters: codes, names, identifiers
DEFAULT_COUNT = 50          # items of a repeated field
DEFAULT_INT = (0, 1_000_000_000)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024   # what a server or client accepts in one message; bounds are checked below it

# Fields by their name in the message that holds them ("Message.field", without the package).
TEXT = {
    "PrescriptionDraft.advice": 2000,
    "Prescription.advice": 2000,
    "PrescriptionLine.directions": 500,
    "Patient.address": 300,
    "Patient.allergies": 100,
    "Diagnosis.text": 300,
    "PrescriptionLine.dose_per_administration": 12,
    "IssuePrescriptionRequest.override_reason": 500,
    "ReplacePrescriptionRequest.override_reason": 500,
    "ReplacePrescriptionRequest.reason": 500,
    "CancelPrescriptionRequest.reason": 500,
    "ReverseDispenseRequest.reason": 500,
    "PrescriptionLine.not_available_reason": 500,
}
COUNT = {
    "PrescriptionDraft.lines": 50,
    "PrescriptionDraft.diagnoses": 20,
    "PrescriptionDraft.batches": 12,
    "Patient.allergies": 50,
    "DispensePrescriptionRequest.lines": 50,
    "QuoteCoverageRequest.lines": 50,
}
INT = {
    "PrescriptionLine.quantity": (0, 100_000),
    "PrescriptionLine.administrations_per_day": (0, 48),
    "PrescriptionLine.days": (0, 366),
    "PrescriptionLine.line_number": (0, 999),
    "PrescriptionLine.batch_number": (0, 99),
    "DispenseBatch.number": (0, 99),
    "PrescriptionDraft.return_visit_days": (0, 366),
    "Patient.age_in_months": (0, 1_800),
    "Patient.weight_grams": (0, 500_000),
    "Date.year": (0, 9999),
    "Date.month": (0, 12),
    "Date.day": (0, 31),
    "DispenseLine.line_number": (0, 999),
    "DispenseLine.quantity": (0, 100_000),
    "DispenseLine.unit_price_vnd": (0, 10_000_000_000),    # 10 billion dong a unit
    "QuoteLine.line_number": (0, 999),
    "QuoteLine.quantity": (0, 100_000),
    "QuoteLine.unit_price_vnd": (0, 10_000_000_000),
    "Encounter.other_costs_vnd": (0, 10_000_000_000),
    "Timestamp.seconds": (0, 253_402_300_799),      # up to 9999-12-31
    "Timestamp.nanos": (0, 999_999_999),
}
_INTS = (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
         FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64)
MAX_VIOLATIONS = 20


@dataclass(frozen=True)
class Violation:
    field: str
    rule: str          # TEXT_TOO_LONG | TOO_MANY_ITEMS | OUT_OF_RANGE
    message: str


def _text(field: FieldDescriptor, path: str, value: str, out: list) -> None:
    limit = TEXT.get(f"{field.containing_type.name}.{field.name}", DEFAULT_TEXT)
    if len(value) > limit:
        out.append(Violation(path, "TEXT_TOO_LONG", f"at most {limit} characters, got {len(value)}"))


def _int(field: FieldDescriptor, path: str, value: int, out: list) -> None:
    low, high = INT.get(f"{field.containing_type.name}.{field.name}", DEFAULT_INT)
    if not low <= value <= high:
        out.append(Violation(path, "OUT_OF_RANGE", f"from {low} to {high}, got {value}"))


def violations(message: Message, prefix: str = "") -> list[Violation]:
    """Every field of `message` beyond its bound (at most MAX_VIOLATIONS of them)."""
    out: list[Violation] = []
    _walk(message, prefix, out)
    return out[:MAX_VIOLATIONS]


def _walk(message: Message, prefix: str, out: list) -> None:
    for field, value in message.ListFields():
        if len(out) >= MAX_VIOLATIONS:
            return
        path = f"{prefix}{field.name}"
        key = f"{field.containing_type.name}.{field.name}"
        if field.is_repeated:
            limit = COUNT.get(key, DEFAULT_COUNT)
            if len(value) > limit:
                out.append(Violation(path, "TOO_MANY_ITEMS", f"at most {limit} items, got {len(value)}"))
                continue
            items = enumerate(value)
        else:
            items = [(None, value)]
        for index, item in items:
            where = path if index is None else f"{path}[{index}]"
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                _walk(item, where + ".", out)
            elif field.type == FieldDescriptor.TYPE_STRING:
                _text(field, where, item, out)
            elif field.type in _INTS:
                _int(field, where, item, out)
