"""Every issue rule, each judged on an explicit date."""
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from services.kernel.calendar import months_between
from services.prescribing.adapters.reference_data import icd10_is_valid
from services.prescribing.domain import rules
from services.prescribing.domain.model import PatientId, RxType, Sex
from tests.support.drafts import ADULT, CLINIC, ONCOLOGY, batch, child, draft, line

TODAY = date(2026, 11, 30)


def violations(d, ref, today=TODAY, caller=None):
    found = rules.validate_draft(d, ref, caller_facility=caller or d.prescriber.facility_code, today=today,
                                 icd_valid=icd10_is_valid)
    return {(v.field, v.rule) for v in found}


def rules_of(d, ref, **kw):
    return {rule for _, rule in violations(d, ref, **kw)}


def test_a_complete_ordinary_prescription_passes(ref):
    assert violations(draft(), ref) == set()


# Patient

@pytest.mark.parametrize("identifier, rule", [
    (PatientId("citizen_id", "00120300456"), "CITIZEN_ID_FORMAT"),
    (PatientId("citizen_id", "00120300456a"), "CITIZEN_ID_FORMAT"),
    (PatientId("passport", "B1"), "PASSPORT_FORMAT"),
    (PatientId("health_id", "AB-12"), "HEALTH_ID_FORMAT"),
    (None, "PATIENT_ID_REQUIRED"),
])
def test_patient_identifiers_have_their_formats(ref, identifier, rule):
    assert rule in rules_of(draft(patient=replace(ADULT, identifier=identifier)), ref)


def test_a_passport_or_health_id_is_as_good_as_a_citizen_id(ref):
    for ident in (PatientId("passport", "C1234567"), PatientId("health_id", "HID01234567")):
        assert violations(draft(patient=replace(ADULT, identifier=ident)), ref) == set()


@pytest.mark.parametrize("change, rule", [
    (dict(name=" "), "PATIENT_NAME_REQUIRED"),
    (dict(address=""), "ADDRESS_REQUIRED"),
    (dict(sex=None), "SEX_REQUIRED"),
    (dict(date_of_birth=None), "DATE_OF_BIRTH_REQUIRED"),
    (dict(date_of_birth=date(2026, 12, 1)), "DATE_OF_BIRTH_FUTURE"),
    (dict(bhyt_card="DN40101234567"), "BHYT_CARD_FORMAT"),
    (dict(bhyt_card="DN6010123456789"), "BHYT_CARD_FORMAT"),   # benefit digit 1-5
])
def test_patient_fields(ref, change, rule):
    assert rule in rules_of(draft(patient=replace(ADULT, **change)), ref)


def test_an_uninsured_patient_needs_no_card(ref):
    assert violations(draft(patient=replace(ADULT, bhyt_card="")), ref) == set()


def test_a_child_under_72_months_needs_age_in_months_weight_and_an_adult(ref):
    born = date(2024, 1, 15)  # 34 months on 2026-11-30
    assert violations(draft(patient=child(born, age_in_months=34)), ref) == set()
    assert "CHILD_AGE_IN_MONTHS" in rules_of(draft(patient=child(born, age_in_months=33)), ref)
    assert "CHILD_WEIGHT_REQUIRED" in rules_of(draft(patient=child(born, age_in_months=34, weight_grams=0)), ref)
    assert "CHILD_GUARDIAN_REQUIRED" in rules_of(draft(patient=child(born, age_in_months=34, guardian=None)), ref)


def test_the_child_rule_ends_at_72_months_on_the_issue_date(ref):
    assert rules_of(draft(patient=replace(ADULT, date_of_birth=date(2020, 11, 30))), ref) == set()
    assert "CHILD_GUARDIAN_REQUIRED" in rules_of(draft(patient=replace(ADULT, date_of_birth=date(2020, 12, 1))), ref)
    # the same child judged a day later is no longer a child
    assert rules_of(draft(patient=replace(ADULT, date_of_birth=date(2020, 12, 1))), ref,
                    today=date(2026, 12, 1)) == set()


# Diagnoses and prescriber

def test_diagnoses_are_who_icd10_codes_with_text(ref):
    assert "DIAGNOSIS_REQUIRED" in rules_of(draft(diagnoses=()), ref)
    assert ("draft.diagnoses[0].icd10", "ICD10_UNKNOWN") in violations(draft(diagnoses=(("Z99.99", "x"),)), ref)
    assert ("draft.diagnoses[1].icd10", "ICD10_UNKNOWN") in violations(
        draft(diagnoses=(("J06.9", "URTI"), ("XYZ", "made up"))), ref)
    assert "DIAGNOSIS_TEXT_REQUIRED" in rules_of(draft(diagnoses=(("J06.9", " "),)), ref)
    assert violations(draft(diagnoses=(("j069", "lower case, no dot"),)), ref) == set()


def test_the_prescriber_must_be_registered_at_the_calling_facility(ref):
    d = draft()
    assert "PRESCRIBER_NOT_REGISTERED" in rules_of(
        replace(d, prescriber=replace(d.prescriber, certificate_number="999/XX-CCHN")), ref)
    assert "PRESCRIBER_LINKAGE_MISMATCH" in rules_of(replace(d, prescriber=replace(d.prescriber, linkage_code="x")), ref)
    assert "FACILITY_NOT_CALLER" in rules_of(d, ref, caller="79001")
    assert "PRESCRIBER_FACILITY_MISMATCH" in rules_of(replace(d, prescriber=replace(d.prescriber,
                                                                                      facility_code="79001")),
                                                      ref, caller="79001")


# Lines

@pytest.mark.parametrize("bad_line, field, rule", [
    (line(drug="NOPE"), "draft.lines[0].drug_code", "DRUG_UNKNOWN"),
    (line(quantity=0), "draft.lines[0].quantity", "QUANTITY_POSITIVE"),
    (line(dose="one"), "draft.lines[0].dose_per_administration", "DOSE_FORMAT"),
    (line(dose="-1"), "draft.lines[0].dose_per_administration", "DOSE_FORMAT"),
    (line(dose="1E+99999"), "draft.lines[0].dose_per_administration", "DOSE_FORMAT"),
    (line(dose="NaN"), "draft.lines[0].dose_per_administration", "DOSE_FORMAT"),
    (line(dose="Infinity"), "draft.lines[0].dose_per_administration", "DOSE_FORMAT"),
    (line(dose="12345"), "draft.lines[0].dose_per_administration", "DOSE_FORMAT"),
    (line(dose="0.0001"), "draft.lines[0].dose_per_administration", "DOSE_FORMAT"),
    (line(dose="0"), "draft.lines[0].dose_per_administration", "DOSE_FORMAT"),
    (line(per_day=0), "draft.lines[0].administrations_per_day", "ADMINISTRATIONS_PER_DAY"),
    (line(days=0), "draft.lines[0].days", "DAYS_RANGE"),
    (line(quantity=21), "draft.lines[0].quantity", "QUANTITY_INCONSISTENT"),
])
def test_line_fields(ref, bad_line, field, rule):
    assert (field, rule) in violations(draft(bad_line), ref)


def test_quantity_is_dose_times_frequency_times_days_rounded_up(ref):
    assert violations(draft(line(quantity=8, dose="0.5", per_day=3, days=5)), ref) == set()  # 7.5 -> 8
    assert "QUANTITY_INCONSISTENT" in rules_of(draft(line(quantity=7, dose="0.5", per_day=3, days=5)), ref)


def test_quantity_of_packs_that_are_not_counted_in_doses_is_not_derived(ref):
    inhaler = line(drug="R03AC02-INH", quantity=1, dose="2", per_day=4, days=30)
    assert violations(draft(inhaler, diagnoses=(("J45.9", "Asthma"),)), ref) == set()


def test_line_numbers_are_unique(ref):
    assert "LINE_NUMBERS" in rules_of(draft(line(1), line(1, drug="M01AE01-400T", quantity=15, per_day=3)), ref)
    assert "LINES_REQUIRED" in rules_of(replace(draft(), lines=()), ref)


# Prescription type and drug classes

@pytest.mark.parametrize("rx_type, drug, quantity", [
    (RxType.ORDINARY, "N05BA01-5T", 20),     # diazepam: psychotropic
    (RxType.ORDINARY, "N02AX02-50C", 20),    # tramadol: narcotic
    (RxType.ORDINARY, "R01BA52-CLR", 20),    # pseudoephedrine: precursor
    (RxType.NARCOTIC, "N02BE01-500T", 20),   # paracetamol on a narcotic prescription
    (RxType.PSYCHOTROPIC, "N02AA01-10T", 20),
    (RxType.TRADITIONAL, "N02BE01-500T", 20),
])
def test_controlled_drugs_are_never_mixed_with_others(ref, rx_type, drug, quantity):
    d = draft(line(drug=drug, quantity=quantity), rx_type=rx_type)
    assert "TYPE_MIXING" in rules_of(d, ref)


def test_a_precursor_goes_on_an_h_prescription(ref):
    assert violations(draft(line(drug="R01BA52-CLR", quantity=10, per_day=2, days=5), rx_type=RxType.PSYCHOTROPIC,
                            acute=True), ref) == set()


# Days of supply

def test_ordinary_drugs_up_to_30_days(ref):
    assert violations(draft(line(quantity=120, days=30)), ref) == set()
    assert ("draft.lines[0].days", "DAYS_OVER_LIMIT") in violations(draft(line(quantity=124, days=31)), ref)


def test_a_chronic_diagnosis_allows_90_days_from_july_2025(ref):
    d = draft(line(drug="A10BA02-500T", quantity=180, dose="1", per_day=2, days=90),
              diagnoses=(("E11.9", "Type 2 diabetes"),))
    assert violations(d, ref, today=date(2025, 7, 1)) == set()
    assert "DAYS_OVER_LIMIT" in rules_of(d, ref, today=date(2025, 6, 30))  # judged by the rule of its day
    longer = draft(line(drug="A10BA02-500T", quantity=182, dose="1", per_day=2, days=91),
                   diagnoses=(("E11.9", "Type 2 diabetes"),))
    assert "DAYS_OVER_LIMIT" in rules_of(longer, ref)


def test_one_chronic_diagnosis_among_others_is_enough(ref):
    d = draft(line(drug="C08CA01-5T", quantity=60, dose="1", per_day=1, days=60),
              diagnoses=(("J06.9", "URTI"), ("I10", "Essential hypertension")))
    assert violations(d, ref) == set()


def test_narcotics_for_acute_pain_up_to_7_days_only_from_a_facility_with_beds(ref):
    seven = draft(line(drug="N02AA01-10T", quantity=28, per_day=4, days=7), rx_type=RxType.NARCOTIC)
    assert violations(seven, ref) == set()
    eight = draft(line(drug="N02AA01-10T", quantity=32, per_day=4, days=8), rx_type=RxType.NARCOTIC)
    assert "DAYS_OVER_LIMIT" in rules_of(eight, ref)
    from_clinic = replace(seven, prescriber=CLINIC)
    assert "NARCOTIC_NEEDS_INPATIENT_FACILITY" in rules_of(from_clinic, ref)


def cancer_draft(*batches, lines=None):
    lines = lines or [line(n, drug="N02AA01-30T", quantity=20, per_day=2, days=10, batch=n)
                      for n in range(1, len(batches) + 1)]
    return draft(*lines, rx_type=RxType.NARCOTIC, cancer_or_aids_pain=True, prescriber=ONCOLOGY,
                 diagnoses=(("C50.9", "Breast cancer"),), batches=tuple(batches))


def test_cancer_pain_narcotics_in_up_to_three_dated_batches_of_ten_days(ref):
    ok = cancer_draft(batch(1, date(2026, 11, 30), date(2026, 12, 9)), batch(2, date(2026, 12, 10), date(2026, 12, 19)),
                      batch(3, date(2026, 12, 20), date(2026, 12, 29)))
    assert violations(ok, ref) == set()
    assert rules.valid_until(ok, ref, TODAY) == date(2026, 12, 29)


@pytest.mark.parametrize("batches, rule", [
    ([batch(1, date(2026, 11, 30), date(2026, 12, 10))], "BATCH_TOO_LONG"),     # 11 days
    ([batch(1, date(2026, 11, 30), date(2026, 12, 9)), batch(2, date(2026, 12, 9), date(2026, 12, 18))],
     "BATCH_ORDER"),                                                             # overlap
    ([batch(1, date(2026, 11, 29), date(2026, 12, 5))], "BATCH_ORDER"),          # before issue
    ([batch(1, date(2026, 12, 5), date(2026, 12, 1))], "BATCH_DATES"),
    ([batch(n, date(2026, 12, 1 + 6 * n), date(2026, 12, 5 + 6 * n)) for n in range(1, 5)], "BATCH_COUNT"),
    ([batch(2, date(2026, 12, 1), date(2026, 12, 5))], "BATCH_NUMBERS"),
])
def test_batch_rules(ref, batches, rule):
    lines = [line(1, drug="N02AA01-30T", quantity=10, per_day=2, days=5, batch=batches[0].number)]
    assert rule in rules_of(cancer_draft(*batches, lines=lines), ref)


def test_cancer_pain_needs_a_cancer_or_aids_diagnosis_and_lines_in_batches(ref):
    d = cancer_draft(batch(1, date(2026, 11, 30), date(2026, 12, 9)))
    assert "CANCER_OR_AIDS_DIAGNOSIS_REQUIRED" in rules_of(replace(d, diagnoses=d.diagnoses[:0] + (
        type(d.diagnoses[0])("M54.5", "Low back pain"),)), ref)
    hiv = replace(d, diagnoses=(type(d.diagnoses[0])("B20", "HIV disease"),))
    assert violations(hiv, ref) == set()
    unbatched = cancer_draft(batch(1, date(2026, 11, 30), date(2026, 12, 9)),
                             lines=[line(1, drug="N02AA01-30T", quantity=20, per_day=2, days=10, batch=0)])
    assert "BATCH_UNKNOWN" in rules_of(unbatched, ref)


def test_batches_belong_to_cancer_pain_narcotics_only(ref):
    assert "BATCHES_NOT_APPLICABLE" in rules_of(draft(batches=(batch(1, TODAY, TODAY),)), ref)
    assert "FLAG_NOT_APPLICABLE" in rules_of(draft(cancer_or_aids_pain=True), ref)


@pytest.mark.parametrize("acute, days, ok", [(True, 10, True), (True, 11, False), (False, 30, True),
                                             (False, 31, False)])
def test_psychotropics_10_days_acute_30_chronic(ref, acute, days, ok):
    d = draft(line(drug="N05BA01-5T", quantity=days, per_day=1, days=days), rx_type=RxType.PSYCHOTROPIC,
              acute=acute, diagnoses=(("F41.1", "Generalised anxiety disorder"),))
    assert ("DAYS_OVER_LIMIT" not in rules_of(d, ref)) is ok


def test_traditional_30_days_or_5_with_toxic_herbs(ref):
    plain = draft(line(drug="YHCT-KTT", quantity=90, dose="1", per_day=3, days=30), rx_type=RxType.TRADITIONAL,
                  diagnoses=(("N20.0", "Kidney stone"),))
    assert violations(plain, ref) == set()
    toxic = draft(line(drug="YHCT-PTT", quantity=18, dose="1", per_day=3, days=6), rx_type=RxType.TRADITIONAL,
                  diagnoses=(("M79.1", "Myalgia"),))
    assert "DAYS_OVER_LIMIT" in rules_of(toxic, ref)
    declared = replace(plain, toxic_herbs=True)
    assert "DAYS_OVER_LIMIT" in rules_of(declared, ref)


def test_the_first_dispense_window_is_five_days_counting_the_issue_day(ref):
    assert rules.valid_until(draft(), ref, date(2026, 11, 30)) == date(2026, 12, 4)
    assert rules.valid_until(draft(), ref, date(2026, 12, 30)) == date(2027, 1, 3)


def test_daily_dose_in_mg_per_ingredient(ref):
    augmentin = ref.drugs["J01CR02-1GT"]
    assert rules.daily_mg(line(drug="J01CR02-1GT", dose="1", per_day=2), augmentin) == {
        "amoxicillin": Decimal(1750), "clavulanic acid": Decimal(250)}
    assert rules.daily_mg(line(drug="R03AC02-INH", dose="2"), ref.drugs["R03AC02-INH"]) == {}


def test_months_between_counts_whole_months():
    assert months_between(date(2024, 1, 31), date(2024, 2, 29)) == 0
    assert months_between(date(2024, 1, 31), date(2024, 3, 1)) == 1
    assert months_between(date(2020, 11, 30), date(2026, 11, 30)) == 72


def test_sex_unknown_is_a_valid_answer(ref):
    assert violations(draft(patient=replace(ADULT, sex=Sex.UNKNOWN)), ref) == set()
