"""Protobuf <-> domain values for the prescribing service. Translation only."""
from __future__ import annotations

from dataclasses import replace

from eprescription.common.v1 import common_pb2
from eprescription.prescribing.v1 import prescribing_pb2

from services.common import dates
from services.prescribing.domain.model import (Batch, Diagnosis, Draft, Encounter, Finding, Guardian, Line, Patient,
                                               PatientId, PrescriberRef, RxType, Sex, Status)

TYPES = {
    common_pb2.PRESCRIPTION_TYPE_ORDINARY: RxType.ORDINARY,
    common_pb2.PRESCRIPTION_TYPE_NARCOTIC: RxType.NARCOTIC,
    common_pb2.PRESCRIPTION_TYPE_PSYCHOTROPIC: RxType.PSYCHOTROPIC,
    common_pb2.PRESCRIPTION_TYPE_TRADITIONAL: RxType.TRADITIONAL,
}
SEX = {common_pb2.SEX_MALE: Sex.MALE, common_pb2.SEX_FEMALE: Sex.FEMALE, common_pb2.SEX_UNKNOWN: Sex.UNKNOWN}
_STATUS = {
    Status.ACTIVE: common_pb2.PRESCRIPTION_STATUS_ACTIVE,
    Status.PARTIALLY_DISPENSED: common_pb2.PRESCRIPTION_STATUS_PARTIALLY_DISPENSED,
    Status.COMPLETED: common_pb2.PRESCRIPTION_STATUS_COMPLETED,
    Status.CANCELLED: common_pb2.PRESCRIPTION_STATUS_CANCELLED,
    Status.REPLACED: common_pb2.PRESCRIPTION_STATUS_REPLACED,
    Status.EXPIRED: common_pb2.PRESCRIPTION_STATUS_EXPIRED,
}


def patient_id(msg: common_pb2.PatientIdentifier) -> PatientId | None:
    kind = msg.WhichOneof("kind")
    if kind is None:
        return None
    value = getattr(msg, kind).strip()
    return PatientId(kind, value.upper() if kind != "citizen_id" else value)


def patient_id_to_proto(pid: PatientId) -> common_pb2.PatientIdentifier:
    return common_pb2.PatientIdentifier(**{pid.kind: pid.value})


def draft(msg: prescribing_pb2.PrescriptionDraft) -> Draft:
    p = msg.patient
    guardian = None
    if p.HasField("guardian"):
        guardian = Guardian(p.guardian.name, patient_id(p.guardian.identifier), p.guardian.relationship)
    patient = Patient(
        identifier=patient_id(p.identifier), name=p.name, date_of_birth=dates.from_proto(p.date_of_birth),
        sex=SEX.get(p.sex), address=p.address, bhyt_card=p.bhyt_card.strip().upper(),
        age_in_months=p.age_in_months, weight_grams=p.weight_grams, guardian=guardian,
        allergies=tuple(a for a in p.allergies),
    )
    lines = [Line(l.line_number, l.drug_code.strip(), l.quantity, l.dose_per_administration,
                  l.administrations_per_day, l.days, l.directions, l.batch_number, l.not_available_at_facility,
                  l.not_available_reason.strip()) for l in msg.lines]
    if lines and all(line.line_number == 0 for line in lines):  # numbering left to the service
        lines = [replace(line, line_number=i + 1) for i, line in enumerate(lines)]
    return Draft(
        type=TYPES.get(msg.type), patient=patient,
        diagnoses=tuple(Diagnosis(d.icd10, d.text) for d in msg.diagnoses),
        prescriber=PrescriberRef(msg.prescriber.certificate_number, msg.prescriber.linkage_code,
                                 msg.prescriber.name, msg.prescriber.facility_code),
        lines=tuple(lines), advice=msg.advice, return_visit_days=msg.return_visit_days,
        batches=tuple(Batch(b.number, dates.from_proto(b.start), dates.from_proto(b.end)) for b in msg.batches),
        cancer_or_aids_pain=msg.cancer_or_aids_pain, acute=msg.acute, toxic_herbs=msg.toxic_herbs,
        encounter=Encounter(msg.encounter.id.strip(), msg.encounter.other_costs_vnd)
        if msg.HasField("encounter") else None,
    )


def status_to_proto(status: Status) -> int:
    return _STATUS[status]


def finding_to_proto(f: Finding) -> prescribing_pb2.SafetyFinding:
    return prescribing_pb2.SafetyFinding(rule=f.rule, severity=int(f.severity), drug_codes=list(f.drug_codes),
                                         message=f.message)
