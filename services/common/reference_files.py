"""Reading versioned reference data files (CSV + manifest.json) with errors that name the
file, the row and the field, so that a service refuses to start on malformed data."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path


class ReferenceDataError(ValueError):
    def __init__(self, file: str, row: int | None, field: str | None, problem: str):
        self.file, self.row, self.field, self.problem = file, row, field, problem
        where = file + (f" row {row}" if row is not None else "") + (f" field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Manifest:
    version: str
    effective_from: date
    files: tuple[str, ...]


def load_manifest(directory: Path) -> Manifest:
    path = directory / "manifest.json"
    try:
        doc = json.loads(path.read_text())
        manifest = Manifest(str(doc["version"]), date.fromisoformat(doc["effective_from"]), tuple(doc["files"]))
    except FileNotFoundError:
        raise ReferenceDataError(str(path), None, None, "missing") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ReferenceDataError(str(path), None, None, f"malformed: {exc}") from None
    for name in manifest.files:
        if not (directory / name).is_file():
            raise ReferenceDataError(str(directory / name), None, None, "listed in manifest.json but missing")
    return manifest


class Row:
    """One CSV row with typed accessors that raise ReferenceDataError naming the field."""

    def __init__(self, file: str, number: int, values: dict[str, str]):
        self.file, self.number, self._values = file, number, values

    def fail(self, field: str, problem: str) -> ReferenceDataError:
        return ReferenceDataError(self.file, self.number, field, problem)

    def text(self, field: str, *, required: bool = True) -> str:
        value = (self._values.get(field) or "").strip()
        if required and not value:
            raise self.fail(field, "is empty")
        return value

    def flag(self, field: str) -> bool:
        value = self.text(field)
        if value not in ("0", "1"):
            raise self.fail(field, f"must be 0 or 1, got {value!r}")
        return value == "1"

    def integer(self, field: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.text(field)
        try:
            number = int(value)
        except ValueError:
            raise self.fail(field, f"must be a whole number, got {value!r}") from None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise self.fail(field, f"must be between {minimum} and {maximum}, got {number}")
        return number

    def decimal(self, field: str, *, positive: bool = True) -> Decimal:
        value = self.text(field)
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise self.fail(field, f"must be a number, got {value!r}") from None
        if positive and not number > 0:
            raise self.fail(field, f"must be positive, got {value}")
        return number

    def day(self, field: str) -> date:
        value = self.text(field)
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.fail(field, f"must be a date YYYY-MM-DD, got {value!r}") from None

    def choice(self, field: str, choices: tuple[str, ...]) -> str:
        value = self.text(field)
        if value not in choices:
            raise self.fail(field, f"must be one of {', '.join(choices)}, got {value!r}")
        return value


def read_rows(path: Path, columns: tuple[str, ...]) -> list[Row]:
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or ())]
            if missing:
                raise ReferenceDataError(name, 1, missing[0], "column missing from the header")
            rows = []
            for values in reader:
                number = reader.line_num
                if None in values or any(v is None for v in values.values()):
                    raise ReferenceDataError(name, number, None, "wrong number of fields")
                rows.append(Row(name, number, values))
            return rows
    except FileNotFoundError:
        raise ReferenceDataError(name, None, None, "missing") from None


def unique(rows_and_keys, file: str, field: str) -> None:
    seen: dict[str, int] = {}
    for row, key in rows_and_keys:
        if key in seen:
            raise ReferenceDataError(file, row.number, field, f"{key!r} repeats row {seen[key]}")
        seen[key] = row.number
