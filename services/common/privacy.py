"""Lookups of prescriptions for HIV/AIDS diagnoses hide the patient's identity (DOMAIN.md 4)."""
from __future__ import annotations

from eprescription.common.v1 import common_pb2

from services.kernel.icd10 import hides_identity

IDENTITY_FIELDS = ("identifier", "name", "address", "date_of_birth", "guardian", "bhyt_card")


def without_identity(prescription: common_pb2.Prescription) -> common_pb2.Prescription:
    """A copy without the patient's identity."""
    shown = common_pb2.Prescription()
    shown.CopyFrom(prescription)
    for name in IDENTITY_FIELDS:
        shown.patient.ClearField(name)
    return shown


def masked(prescription: common_pb2.Prescription) -> tuple[common_pb2.Prescription, bool]:
    """A copy without the patient's identity when a diagnosis calls for it, and whether it did."""
    hidden = hides_identity(d.icd10 for d in prescription.diagnoses)
    return (without_identity(prescription) if hidden else prescription), hidden
