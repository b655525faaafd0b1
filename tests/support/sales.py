"""Sales made through a running system while its processes are stopped, killed and started:
a point of sale that retries each sale with the same key until it is answered, and the check
that every answered sale was shipped, adjudicated and counted exactly once (end-to-end tests)."""
from __future__ import annotations

import time

import grpc
from eprescription.events.v1 import events_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2
from eprescription.prescribing.v1 import prescribing_pb2

from demo.story import Story
from services.common.events import EventDecodeError, decode, payload_of
from services.common.topics import CLAIMS_ADJUDICATED, DISPENSES
from tests.support import read_topic, wait_until

POS_RETRY_BACKOFF_SECONDS = 0.3  # how long a point-of-sale client waits before it retries
QUANTITY = 5                     # of 30 prescribed, per sale


def unique(events):
    return {env.event_id: env for env in events}.values()


def topic_events(settings, topic, keep):
    found = []
    for record in read_topic(settings.kafka_access("admin"), topic, timeout=20):
        try:
            env = decode(record.value)
        except EventDecodeError:
            continue
        if keep(env):
            found.append(env)
    return found


class SalesUnderFaults:
    """A BHYT prescription of 30 tablets, visible at pharmacy A, sold 5 at a time."""

    def __init__(self, settings):
        self.settings = settings
        self.story = story = Story(settings, out=lambda line: None)
        patient, self.card = story.register_member()
        self.rx = story.issue("prescriber-hospital-a", story.draft(
            patient, self.card, [("C10AA07-10T", 30, "1", 1, 30)],
            diagnoses=(("E78.0", "Tăng cholesterol máu"),))).prescription
        story.eventually("the prescription at the pharmacy", lambda: story.at_pharmacy(self.rx.code))
        self.acknowledged = []

    def sell(self, n: int) -> None:
        request = pharmacy_pb2.DispensePrescriptionRequest(
            idempotency_key=f"{self.rx.code}-{n}", code=self.rx.code, bhyt_card=self.card,
            lines=[pharmacy_pb2.DispenseLine(line_number=1, drug_code="C10AA07-10T", quantity=QUANTITY,
                                             unit_price_vnd=15_800)])
        while True:  # a POS retries with the same key until it gets an answer
            try:
                self.acknowledged.append(self.story.pharmacy.DispensePrescription(
                    request, metadata=self.story.md["pharmacy-a"], timeout=5))
                return
            except grpc.RpcError as error:
                assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), error
                time.sleep(POS_RETRY_BACKOFF_SECONDS)

    def shipped(self, count: int):
        """A wait_until condition: at least `count` distinct dispense events of the code."""
        def found():
            events = unique(topic_events(self.settings, DISPENSES, lambda e: e.key == self.rx.code))
            return events if len(events) >= count else None
        return found

    def assert_each_once(self, sales: int):
        """Every answered sale shipped once, adjudicated once (approved), and counted by
        prescribing; returns what prescribing says of the prescription."""
        dispense_ids = {a.dispense_id for a in self.acknowledged}
        claim_ids = {a.claim_id for a in self.acknowledged}
        assert len(dispense_ids) == sales and len(claim_ids) == sales
        dispensed = wait_until(self.shipped(sales), timeout=120, interval=0.5, message=f"{sales} dispense events")
        assert sorted(payload_of(e).dispense_id for e in dispensed) == sorted(dispense_ids)

        def adjudicated():
            found = unique(topic_events(self.settings, CLAIMS_ADJUDICATED,
                                        lambda e: payload_of(e).claim_id in claim_ids))
            return found if len({payload_of(e).claim_id for e in found}) >= sales else None
        claims = wait_until(adjudicated, timeout=180, interval=0.5, message=f"{sales} adjudications")
        per_claim = {}
        for env in claims:
            per_claim.setdefault(payload_of(env).claim_id, []).append(payload_of(env))
        assert set(per_claim) == claim_ids
        assert all(len(v) == 1 and v[0].outcome == events_pb2.CLAIM_OUTCOME_APPROVED for v in per_claim.values())

        def progressed():   # the prescribing side saw every sale
            got = self.story.prescribing.GetPrescription(prescribing_pb2.GetPrescriptionRequest(code=self.rx.code),
                                                         metadata=self.story.md["pharmacy-a"])
            return got if got.lines[0].dispensed == sales * QUANTITY else None
        return wait_until(progressed, timeout=120, interval=0.5, message="prescribing saw the sales")
