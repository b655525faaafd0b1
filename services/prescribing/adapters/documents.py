"""The signed original of a prescription (a serialised common.v1.Prescription): built from
the domain's NewPrescription and signed with the prescriber's key, and read back into the
domain's Prescription."""
from __future__ import annotations

from datetime import timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eprescription.common.v1 import common_pb2

from services.common import dates, signatures
from services.kernel.icd10 import normalize as normalize_icd
from services.prescribing.adapters import mapping
from services.prescribing.domain.model import Line, NewPrescription, Patient, Prescription, RxType

SEX = {v: k for k, v in mapping.SEX.items()}
TYPES = {v: k for k, v in mapping.TYPES.items()}


def _patient(p: Patient) -> common_pb2.Patient:
    msg = common_pb2.Patient(name=p.name, address=p.address, bhyt_card=p.bhyt_card, age_in_months=p.age_in_months,
                             weight_grams=p.weight_grams, allergies=list(p.allergies),
                             sex=SEX.get(p.sex, common_pb2.SEX_UNSPECIFIED))
    if p.identifier is not None:
        msg.identifier.CopyFrom(mapping.patient_id_to_proto(p.identifier))
    if p.date_of_birth is not None:
        msg.date_of_birth.CopyFrom(dates.to_proto(p.date_of_birth))
    if p.guardian is not None:
        msg.guardian.name, msg.guardian.relationship = p.guardian.name, p.guardian.relationship
        if p.guardian.identifier is not None:
            msg.guardian.identifier.CopyFrom(mapping.patient_id_to_proto(p.guardian.identifier))
    return msg


def build(new: NewPrescription) -> common_pb2.Prescription:
    d = new.draft
    rx = common_pb2.Prescription(
        code=new.code, type=TYPES[d.type], facility_code=new.facility_code, advice=d.advice,
        return_visit_days=d.return_visit_days, replaces_code=new.replaces_code, new_supply=new.new_supply,
        valid_until=dates.to_proto(new.valid_until), patient=_patient(d.patient))
    if d.encounter is not None:
        rx.encounter.id, rx.encounter.other_costs_vnd = d.encounter.id, d.encounter.other_costs_vnd
    for diagnosis in d.diagnoses:
        rx.diagnoses.add(icd10=normalize_icd(diagnosis.icd10), text=diagnosis.text)
    rx.prescriber.certificate_number = d.prescriber.certificate_number
    rx.prescriber.linkage_code = d.prescriber.linkage_code
    rx.prescriber.facility_code = d.prescriber.facility_code
    rx.prescriber.name = new.prescriber.name
    for batch in d.batches:
        rx.batches.add(number=batch.number, start=dates.to_proto(batch.start), end=dates.to_proto(batch.end))
    for line, drug in zip(d.lines, new.drugs):
        rx.lines.add(
            line_number=line.line_number, drug_code=drug.code, drug_name=drug.name,
            active_ingredient=" + ".join(drug.ingredient_names), strength=drug.strength, unit=drug.unit,
            quantity=line.quantity, dose_per_administration=line.dose.strip(), administrations_per_day=line.per_day,
            days=line.days, directions=line.directions, route=drug.route, batch_number=line.batch_number,
            not_available_at_facility=line.not_available, not_available_reason=line.not_available_reason)
    rx.issued_at.FromDatetime(new.issued_at)
    return rx


def prescription_of(document: bytes) -> Prescription:
    rx = common_pb2.Prescription.FromString(document)
    pid = mapping.patient_id(rx.patient.identifier)
    return Prescription(
        code=rx.code, type=RxType(rx.code[-1]), facility_code=rx.facility_code, patient_key=pid.key if pid else "",
        prescriber=rx.prescriber.certificate_number, diagnoses=tuple(d.icd10 for d in rx.diagnoses),
        lines=tuple(Line(l.line_number, l.drug_code, l.quantity, l.dose_per_administration,
                         l.administrations_per_day, l.days, l.directions, l.batch_number) for l in rx.lines),
        issued_at=rx.issued_at.ToDatetime(tzinfo=timezone.utc), valid_until=dates.from_proto(rx.valid_until),
        document=document)


class Signer:
    """Builds and signs prescriptions with the prescribers' private keys."""

    def __init__(self, keys: dict[str, Ed25519PrivateKey]):
        self._keys = keys

    def sign(self, new: NewPrescription) -> Prescription:
        rx = build(new)
        key_id = new.prescriber.key_id
        signatures.sign(rx, key_id, self._keys[key_id])
        return prescription_of(rx.SerializeToString(deterministic=True))
