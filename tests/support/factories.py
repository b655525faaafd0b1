"""Builders of valid requests for tests: a test changes only what it is about."""
from __future__ import annotations

from datetime import date

from eprescription.common.v1 import common_pb2
from eprescription.prescribing.v1 import prescribing_pb2

PRESCRIBER_A = dict(certificate_number="001234/HNO-CCHN", linkage_code="BS01001001", facility_code="01001")
PRESCRIBER_CLINIC = dict(certificate_number="001999/HNO-CCHN", linkage_code="BS01234001", facility_code="01234")
PRESCRIBER_B = dict(certificate_number="045678/HCM-CCHN", linkage_code="BS79001001", facility_code="79001")


def pb_date(day: date) -> common_pb2.Date:
    return common_pb2.Date(year=day.year, month=day.month, day=day.day)


def line(drug_code="N02BE01-500T", quantity=20, dose="1", per_day=4, days=5, number=0, batch=0,
         directions="after meals") -> common_pb2.PrescriptionLine:
    return common_pb2.PrescriptionLine(line_number=number, drug_code=drug_code, quantity=quantity,
                                       dose_per_administration=dose, administrations_per_day=per_day, days=days,
                                       directions=directions, batch_number=batch)


def patient(citizen_id="001203004567", born=date(1980, 5, 17), **overrides) -> common_pb2.Patient:
    fields = dict(identifier=common_pb2.PatientIdentifier(citizen_id=citizen_id), name="Nguyễn Văn An",
                  date_of_birth=pb_date(born), sex=common_pb2.SEX_MALE, address="12 Phố Huế, Hà Nội",
                  bhyt_card="DN4010123456789")
    fields.update(overrides)
    return common_pb2.Patient(**fields)


def draft(lines=None, *, rx_type=common_pb2.PRESCRIPTION_TYPE_ORDINARY, diagnoses=(("J06.9", "Acute URTI"),),
          prescriber=None, **overrides) -> prescribing_pb2.PrescriptionDraft:
    fields = dict(
        type=rx_type, patient=patient(),
        diagnoses=[common_pb2.Diagnosis(icd10=c, text=t) for c, t in diagnoses],
        prescriber=common_pb2.Prescriber(**(prescriber or PRESCRIBER_A)),
        lines=list(lines) if lines is not None else [line()], advice="drink water")
    fields.update(overrides)
    return prescribing_pb2.PrescriptionDraft(**fields)
