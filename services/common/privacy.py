"""Lookups of prescriptions for HIV/AIDS diagnoses hide the patient's identity (DOMAIN.md 4)."""
from __future__ import annotations

from eprescription.common.v1 import common_pb2

HIV_GROUPS = (("B20", "B24"), ("Z21", "Z21"))  # HIV disease, asymptomatic HIV infection
IDENTITY_FIELDS = ("identifier", "name", "address", "date_of_birth", "guardian", "bhyt_card")


def hides_identity(icd10_codes) -> bool:
    for code in icd10_codes:
        head = code.replace(".", "").upper()[:3]
        if any(first <= head <= last for first, last in HIV_GROUPS):
            return True
    return False


def masked(prescription: common_pb2.Prescription) -> tuple[common_pb2.Prescription, bool]:
    """A copy without the patient's identity when a diagnosis calls for it, and whether it did."""
    shown = common_pb2.Prescription()
    shown.CopyFrom(prescription)
    hidden = hides_identity(d.icd10 for d in prescription.diagnoses)
    if hidden:
        for name in IDENTITY_FIELDS:
            shown.patient.ClearField(name)
    return shown, hidden
