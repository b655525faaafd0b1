"""The prescribing handlers on the in-memory store: no Redis, no broker, no channel."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from eprescription.common.v1 import common_pb2

from services.common import signatures
from services.kernel.status import Status
from services.prescribing.adapters import reference_data
from services.prescribing.adapters.documents import Signer
from services.prescribing.domain.commands import (CancelPrescription, GetPrescription, IssuePrescription,
                                                  ListPatientMedications, ReplacePrescription)
from services.prescribing.domain.events import DispenseRecorded, PrescriptionCancelled, PrescriptionChanged, \
    PrescriptionIssued, PrescriptionReplaced
from services.prescribing.domain.model import (Diagnosis, DraftRejected, InvalidState, NotPermitted, RequestConflict,
                                               RxType)
from services.prescribing.handlers import Dependencies, Prescribing
from tests.support.memory_prescribing import MemoryPrescriptionStore
from tests.support.drafts import draft, line
from services.kernel.protected import Reader

NOW = datetime(2026, 11, 30, 2, tzinfo=timezone.utc)


@pytest.fixture
def world(ref, tmp_path):
    signatures.ensure_keys(tmp_path, sorted({p.key_id for p in ref.prescribers.values()}))
    store = MemoryPrescriptionStore()
    handlers = Prescribing(Dependencies(store, ref, Signer(signatures.load_private_keys(tmp_path)), lambda: NOW,
                                        reference_data.icd10_is_valid))
    return handlers, store, signatures.load_public_keys(tmp_path)


def issue(d=None, request_id="r1", fingerprint="fp-1"):
    return IssuePrescription("01001", request_id, d or draft(), "", fingerprint)


async def test_an_issued_prescription_is_signed_stored_published_and_answered_again_on_retry(world):
    handlers, store, public_keys = world
    first = await handlers.issue(issue())
    assert first.prescription.code.startswith("01001") and first.prescription.patient_key == "cccd:001203004567"
    assert signatures.DocumentVerifier(public_keys).verify(first.prescription.document)
    assert await handlers.issue(issue()) == first
    with pytest.raises(RequestConflict):
        await handlers.issue(issue(fingerprint="fp-2"))
    assert [type(e) for e in store.outbox] == [PrescriptionIssued]


async def test_replace_then_cancel_follow_the_state(world):
    handlers, store, _ = world
    first = await handlers.issue(issue())
    code = first.prescription.code
    with pytest.raises(NotPermitted):
        await handlers.cancel(CancelPrescription("79001", code, "not mine"))
    new = await handlers.replace(ReplacePrescription("01001", "r2", code, draft(), "dose", "", "fp-r"))
    assert (await handlers.get(GetPrescription(code, "01001"))).status is Status.REPLACED
    with pytest.raises(InvalidState):
        await handlers.cancel(CancelPrescription("01001", code, "too late"))
    assert await handlers.cancel(CancelPrescription("01001", new.prescription.code, "error")) is Status.CANCELLED
    assert [type(e) for e in store.outbox] == [PrescriptionIssued, PrescriptionReplaced, PrescriptionIssued,
                                               PrescriptionCancelled]


async def test_projections_keep_the_patient_s_list_and_a_sale_shows_in_the_status(world):
    handlers, _, _ = world
    code = (await handlers.issue(issue())).prescription.code
    await handlers.on_prescription_changed(PrescriptionChanged(code))
    await handlers.on_dispense(DispenseRecorded("e1", "d1", code, 1, ((1, 8),)))
    await handlers.on_dispense(DispenseRecorded("e1", "d1", code, 1, ((1, 8),)))   # redelivered
    view = await handlers.get(GetPrescription(code, "79001"))
    assert view.status is Status.PARTIALLY_DISPENSED and view.stored.dispensed == {1: 8}
    with pytest.raises(ValueError):
        await handlers.on_dispense(DispenseRecorded("e2", "d2", "01001zzzzzzz-c", 1, ((1, 1),)))


async def test_only_the_issuing_facility_and_the_insurer_see_an_hiv_patient(world):
    handlers, _, _ = world
    d = replace(draft(), diagnoses=(Diagnosis("B20", "HIV disease"),))
    code = (await handlers.issue(issue(d))).prescription.code
    treating, other = Reader("prescriber", "01001", "treatment"), Reader("prescriber", "79001", "treatment")
    assert not (await handlers.get(GetPrescription(code, "01001", treating))).identity_hidden
    assert not (await handlers.get(GetPrescription(code, None, Reader("insurer", "bhxh", "claims")))).identity_hidden
    assert (await handlers.get(GetPrescription(code, "79001", other))).identity_hidden
    assert (await handlers.get(GetPrescription(code, None, Reader("pharmacy", "PH0001", "dispensing")))).identity_hidden
    assert (await handlers.get(GetPrescription(code, None))).identity_hidden


async def test_antiretrovirals_leave_the_medication_list_of_anyone_but_the_treating_team(world):
    """Hole: ListPatientMedications returned antiretroviral lines to any pharmacy."""
    handlers, _, _ = world
    hiv = replace(draft(line(1, "J05AR27-TLD", 30, "1", 1, 30), line(2, "J01EE01-480T", 30, "1", 1, 30)),
                  diagnoses=(Diagnosis("B20", "HIV disease"),))
    code = (await handlers.issue(issue(hiv))).prescription.code
    await handlers.on_prescription_changed(PrescriptionChanged(code))
    patient = hiv.patient.identifier

    async def drugs(reader):
        return {e.medication.drug_code for e in await handlers.medications(ListPatientMedications(patient, None,
                                                                                                 reader=reader))}
    assert await drugs(Reader("prescriber", "01001", "treatment")) == {"J05AR27-TLD", "J01EE01-480T"}
    for reader in (Reader("prescriber", "79001", "treatment"), Reader("pharmacy", "PH0001", "dispensing"), None):
        assert await drugs(reader) == {"J01EE01-480T"}, reader   # co-trimoxazole is no antiretroviral


async def test_a_code_already_taken_is_drawn_again_and_a_full_run_of_collisions_fails_cleanly(world, monkeypatch):
    handlers, store, _ = world
    taken = (await handlers.issue(issue())).prescription.code
    drawn = iter([taken, taken, "01001fresh01-c"])
    monkeypatch.setattr("services.prescribing.handlers.codes.new_code", lambda facility, rx_type: next(drawn))
    assert (await handlers.issue(issue(request_id="r2"))).prescription.code == "01001fresh01-c"
    monkeypatch.setattr("services.prescribing.handlers.codes.new_code", lambda facility, rx_type: taken)
    with pytest.raises(RuntimeError, match="no free prescription code"):
        await handlers.issue(issue(request_id="r3"))
    assert await store.prior("01001", "r3") is None and len(store.outbox) == 2


async def test_a_new_supply_replacement_counts_the_old_code_s_sales_in_the_days_of_supply(world):
    """DOMAIN 4: a replacement that is a new supply is not reduced by what the old code sold,
    but the days-of-supply limits count those sales (acute narcotic: 7 days)."""
    handlers, _, _ = world
    acute = draft(line(1, "N02AA01-10T", 20, "1", 4, 5), rx_type=RxType.NARCOTIC,
                  diagnoses=(("S82.2", "Fracture of shaft of tibia"),), acute=True)
    code = (await handlers.issue(issue(acute))).prescription.code
    await handlers.on_dispense(DispenseRecorded("e1", "d1", code, 1, ((1, 9),)))   # 9 tablets: 3 days at 4 a day
    five_more = replace(acute, lines=(line(1, "N02AA01-10T", 20, "1", 4, 5),))
    with pytest.raises(DraftRejected) as over:
        await handlers.replace(ReplacePrescription("01001", "r2", code, five_more, "pain persists", "", "fp-2",
                                                   new_supply=True))
    assert [v.rule for v in over.value.violations] == ["DAYS_OVER_LIMIT"]
    assert "3 days the replaced prescription already supplied" in over.value.violations[0].message
    four_more = replace(acute, lines=(line(1, "N02AA01-10T", 16, "1", 4, 4),))
    assert await handlers.replace(ReplacePrescription("01001", "r3", code, four_more, "pain persists", "", "fp-3",
                                                      new_supply=True))


async def test_a_line_marked_not_available_needs_a_reason_and_a_drug_on_the_bhyt_list(world):
    handlers, _, _ = world
    flagged = replace(line(1, "A10BA02-500T", 60, "1", 2, 30), not_available=True)
    with pytest.raises(DraftRejected) as no_reason:
        await handlers.issue(issue(draft(flagged, diagnoses=(("E11.9", "Type 2 diabetes"),))))
    assert [v.rule for v in no_reason.value.violations] == ["NOT_AVAILABLE_REASON_REQUIRED"]
    off_list = replace(line(1, "M01AX05-500C", 60, "1", 2, 30), not_available=True, not_available_reason="tender failed")
    with pytest.raises(DraftRejected) as not_covered:
        await handlers.issue(issue(draft(off_list), request_id="r2"))
    assert "NOT_ON_BHYT_LIST" in [v.rule for v in not_covered.value.violations]
    ok = replace(flagged, not_available_reason="tender failed; no substitute with the same active ingredient")
    issued = await handlers.issue(issue(draft(ok, diagnoses=(("E11.9", "Type 2 diabetes"),)), request_id="r3"))
    signed = common_pb2.Prescription.FromString(issued.prescription.document)
    assert signed.lines[0].not_available_at_facility and "tender failed" in signed.lines[0].not_available_reason
