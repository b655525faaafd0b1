"""What the benchmark and the fault runs share: BHYT members made through the agency's
import command, a prescription draft for them, and a follower of the adjudicated claims.
Imports nothing that reads settings at import time: the caller sets its environment first."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

from eprescription.common.v1 import common_pb2
from eprescription.prescribing.v1 import prescribing_pb2

from services.common.config import CommonSettings
from services.common.events import EventDecodeError, decode, payload_of
from services.common.topic_reader import TopicFollower
from services.common.topics import CLAIMS_ADJUDICATED

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def import_members(n: int) -> list[tuple[str, str]]:
    """n fresh BHYT members through the agency's import command; returns (citizen id, card)."""
    rows, members = [], []
    stamp = uuid.uuid4().int
    for i in range(n):
        ssn = f"{(stamp + i) % 10**10:010d}"
        cccd = f"9{(stamp + 7 * i) % 10**11:011d}"
        card = f"DN401{ssn}"
        rows.append([card, ssn, cccd, "Bench", "1970-01-01", "female", "2026-01-01", "2027-12-31", "01001", "", ""])
        members.append((cccd, card))
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["card_code", "social_security_number", "citizen_id", "full_name", "date_of_birth", "sex",
                         "valid_from", "valid_to", "registered_facility", "copay_exempt_from", "five_years_from"])
        writer.writerows(rows)
    subprocess.run([PY, "-m", "services.insurance.import_members", f.name], check=True, env=os.environ, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return members


class AdjudicationWatcher(threading.Thread):
    """Follows rx.claims.adjudicated.v1 from its current end and notes when each claim shows up."""

    def __init__(self, settings: CommonSettings):
        super().__init__(daemon=True)
        self.seen: dict[str, float] = {}
        self.events: dict[str, set[str]] = defaultdict(set)
        self.stop = threading.Event()
        self.follower = TopicFollower(settings.kafka_access("admin"), CLAIMS_ADJUDICATED, from_end=True)

    def run(self) -> None:
        while not self.stop.is_set():
            records = self.follower.poll(timeout_ms=200)
            now = time.monotonic()
            for record in records:
                try:
                    env = decode(record.value)
                except EventDecodeError:
                    continue
                claim = payload_of(env)
                self.seen.setdefault(claim.claim_id, now)
                self.events[claim.claim_id].add(env.event_id)
        self.follower.close()


def draft(cccd: str, card: str) -> prescribing_pb2.PrescriptionDraft:
    return prescribing_pb2.PrescriptionDraft(
        type=common_pb2.PRESCRIPTION_TYPE_ORDINARY,
        patient=common_pb2.Patient(identifier=common_pb2.PatientIdentifier(citizen_id=cccd), name="Bench Patient",
                                   date_of_birth=common_pb2.Date(year=1970, month=1, day=1), sex=common_pb2.SEX_FEMALE,
                                   address="Hà Nội", bhyt_card=card),
        diagnoses=[common_pb2.Diagnosis(icd10="J02.9", text="Viêm họng cấp")],
        prescriber=common_pb2.Prescriber(certificate_number="001234/HNO-CCHN", linkage_code="BS01001001",
                                         facility_code="01001"),
        lines=[common_pb2.PrescriptionLine(drug_code="J01CR02-1GT", quantity=14, dose_per_administration="1",
                                           administrations_per_day=2, days=7, directions="sau ăn"),
               common_pb2.PrescriptionLine(drug_code="N02BE01-500T", quantity=12, dose_per_administration="1",
                                           administrations_per_day=3, days=4, directions="khi sốt")])
