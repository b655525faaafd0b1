"""Safety checks against new lines and the patient's active medications, on explicit dates."""
from datetime import date

from services.prescribing.domain import safety
from services.prescribing.domain.model import ActiveMedication, Severity, Status
from services.prescribing.domain.rules import daily_mg
from tests.support.drafts import line

TODAY = date(2026, 11, 30)


def active(ref, drug_code, *, start=date(2026, 11, 20), days=30, per_day=1, dose="1", code="79001abcdefg-c",
           status=Status.PARTIALLY_DISPENSED):
    drug = ref.drugs[drug_code]
    return ActiveMedication(
        prescription_code=code, line_number=1, facility_code="79001", prescriber="045678/HCM-CCHN",
        drug_code=drug_code, ingredients=drug.ingredient_names, atc=drug.atc,
        daily_mg=daily_mg(line(drug=drug_code, dose=dose, per_day=per_day), drug), start=start, days=days,
        prescribed=days * per_day, dispensed=10, status=status, valid_until=date(2026, 11, 24))


def new(ref, *lines):
    return [(ln, ref.drugs[ln.drug_code]) for ln in lines]


def by_rule(findings):
    out = {}
    for f in findings:
        out.setdefault(f.rule, []).append(f)
    return out


def test_nothing_to_say_about_a_single_harmless_drug(ref):
    assert safety.check(new(ref, line()), [], (), ref, TODAY) == []


def test_a_contraindicated_pair_blocks_and_names_both_drugs(ref):
    findings = safety.check(new(ref, line(drug="J01FA09-500T", quantity=10, per_day=2, days=5)),
                            [active(ref, "C10AA01-20T")], (), ref, TODAY)
    hit = by_rule(findings)["interaction"][0]
    assert hit.severity is Severity.CONTRAINDICATED
    assert set(hit.drug_codes) == {"J01FA09-500T", "C10AA01-20T"}
    assert "clarithromycin" in hit.message and "simvastatin" in hit.message
    assert safety.blocking(findings) == [hit]


def test_an_interaction_within_the_new_prescription_counts_too(ref):
    findings = safety.check(new(ref, line(1, drug="B01AA03-5T", quantity=5, per_day=1),
                                line(2, drug="M01AE01-400T", quantity=15, per_day=3)), [], (), ref, TODAY)
    hit = by_rule(findings)["interaction"][0]
    assert hit.severity is Severity.MAJOR and set(hit.drug_codes) == {"B01AA03-5T", "M01AE01-400T"}
    assert safety.blocking(findings) == []  # major warns, does not block


def test_medications_that_ended_or_were_cancelled_do_not_interact(ref):
    ended = active(ref, "C10AA01-20T", start=date(2026, 10, 1), days=30)
    cancelled = active(ref, "C10AA01-20T", status=Status.CANCELLED)
    rx = new(ref, line(drug="J01FA09-500T", quantity=10, per_day=2, days=5))
    assert safety.check(rx, [ended, cancelled], (), ref, TODAY) == []


def test_an_allergy_to_an_ingredient_or_an_atc_class_blocks(ref):
    augmentin = new(ref, line(drug="J01CR02-1GT", quantity=10, per_day=2, days=5))
    for allergy in ("Amoxicillin", "J01C"):
        findings = safety.check(augmentin, [], (allergy,), ref, TODAY)
        assert [f.rule for f in safety.blocking(findings)] == ["allergy"]
    assert safety.check(augmentin, [], ("J01F", "aspirin"), ref, TODAY) == []


def test_duplicate_therapy_same_ingredient_major_same_class_moderate(ref):
    same = by_rule(safety.check(new(ref, line(drug="N02BE01-650T", quantity=15, per_day=3)),
                                [active(ref, "N02BE01-500T", per_day=2)], (), ref, TODAY))["duplicate_therapy"]
    assert same[0].severity is Severity.MAJOR
    cls = by_rule(safety.check(new(ref, line(drug="C10AA05-20T", quantity=30, per_day=1, days=30)),
                               [active(ref, "C10AA07-10T")], (), ref, TODAY))["duplicate_therapy"]
    assert cls[0].severity is Severity.MODERATE and "C10AA" in cls[0].message


def test_max_daily_dose_adds_every_source_of_the_ingredient(ref):
    # 2 x 650 mg x 3 a day = 3900 mg; alone it is fine
    rx = new(ref, line(drug="N02BE01-650T", dose="2", quantity=30, per_day=3, days=5))
    assert "max_daily_dose" not in by_rule(safety.check(rx, [], (), ref, TODAY))
    # plus 500 mg twice a day from another facility: 4900 mg > 4000 mg
    found = by_rule(safety.check(rx, [active(ref, "N02BE01-500T", per_day=2)], (), ref, TODAY))["max_daily_dose"]
    assert found[0].severity is Severity.CONTRAINDICATED and "4900 mg" in found[0].message


def test_early_refill_warns_until_two_thirds_of_the_supply_is_used(ref):
    rx = new(ref, line(drug="C08CA01-5T", quantity=30, per_day=1, days=30))
    started = date(2026, 11, 10)
    early = safety.check(rx, [active(ref, "C08CA01-5T", start=started, days=30)], (), ref, date(2026, 11, 29))
    assert by_rule(early)["early_refill"][0].severity is Severity.MODERATE  # day 19 of 30: 63%
    on_time = safety.check(rx, [active(ref, "C08CA01-5T", start=started, days=30)], (), ref, date(2026, 11, 30))
    assert "early_refill" not in by_rule(on_time)                            # day 20 of 30: two-thirds


def test_findings_come_most_severe_first(ref):
    rx = new(ref, line(drug="J01FA09-500T", quantity=10, per_day=2, days=5))
    findings = safety.check(rx, [active(ref, "C10AA01-20T"), active(ref, "J01FA09-500T", code="79001zzzzzzz-c")],
                            (), ref, TODAY)
    assert [f.severity for f in findings] == sorted((f.severity for f in findings), reverse=True)
