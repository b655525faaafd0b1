"""Loads reference/v1/protected_health.csv into the kernel's ProtectedHealth."""
from __future__ import annotations

from pathlib import Path

from services.common.reference_files import ReferenceDataError, read_rows
from services.kernel.icd10 import IcdRange
from services.kernel.protected import ProtectedHealth


def load_protected(directory: Path) -> ProtectedHealth:
    path = directory / "protected_health.csv"
    diagnoses, classes = [], []
    for row in read_rows(path, ("kind", "from", "to", "meaning", "source")):
        if row.choice("kind", ("diagnosis", "drug_atc")) == "diagnosis":
            diagnoses.append(IcdRange(row.text("from").upper(), row.text("to").upper(), row.text("meaning")))
        else:
            classes.append(row.text("from").upper())
    if not diagnoses or not classes:
        raise ReferenceDataError(str(path), None, None, "needs at least one diagnosis and one drug class")
    return ProtectedHealth(tuple(diagnoses), tuple(classes))
