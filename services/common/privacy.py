"""A prescription shown without its patient's identity: what the HIV/AIDS rule hides
(DOMAIN.md 4; the rule itself is services.kernel.protected)."""
from __future__ import annotations

from eprescription.common.v1 import common_pb2

IDENTITY_FIELDS = ("identifier", "name", "address", "date_of_birth", "guardian", "bhyt_card")


def without_identity(prescription: common_pb2.Prescription) -> common_pb2.Prescription:
    """A copy without the patient's identity."""
    shown = common_pb2.Prescription()
    shown.CopyFrom(prescription)
    for name in IDENTITY_FIELDS:
        shown.patient.ClearField(name)
    return shown

