"""Domain drafts for unit tests: valid by default; a test replaces what it is about."""
from dataclasses import replace
from datetime import date

from services.prescribing.domain.model import (Batch, Diagnosis, Draft, Guardian, Line, Patient, PatientId,
                                               PrescriberRef, RxType, Sex)

ADULT = Patient(identifier=PatientId("citizen_id", "001203004567"), name="Nguyễn Văn An",
                date_of_birth=date(1980, 5, 17), sex=Sex.MALE, address="12 Phố Huế, Hà Nội",
                bhyt_card="DN4010123456789", age_in_months=0, weight_grams=0, guardian=None)
HOSPITAL_A = PrescriberRef("001234/HNO-CCHN", "BS01001001", "", "01001")
CLINIC = PrescriberRef("001999/HNO-CCHN", "BS01234001", "", "01234")
ONCOLOGY = PrescriberRef("004321/DNA-CCHN", "BS48001001", "", "48001")


def line(number=1, drug="N02BE01-500T", quantity=20, dose="1", per_day=4, days=5, batch=0):
    return Line(number, drug, quantity, dose, per_day, days, "after meals", batch)


def draft(*lines, rx_type=RxType.ORDINARY, diagnoses=(("J06.9", "Acute upper respiratory infection"),),
          patient=ADULT, prescriber=HOSPITAL_A, **overrides) -> Draft:
    d = Draft(type=rx_type, patient=patient, diagnoses=tuple(Diagnosis(c, t) for c, t in diagnoses),
              prescriber=prescriber, lines=tuple(lines) or (line(),))
    return replace(d, **overrides)


def child(born: date, **overrides) -> Patient:
    fields = dict(date_of_birth=born, age_in_months=0, weight_grams=14_000,
                  guardian=Guardian("Nguyễn Thị Mẹ", PatientId("citizen_id", "001180001234"), "mother"))
    fields.update(overrides)
    return replace(ADULT, **fields)


def batch(number, start, end):
    return Batch(number, start, end)
