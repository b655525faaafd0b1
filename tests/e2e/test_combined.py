"""One process per service (EPRX_PROCESSES=combined, services/common/combined.py): the story
through three processes instead of nine, one /metrics per process with all its parts' series,
and a process stopped or killed in the middle of sales, nothing lost or doubled."""
import time

import grpc
from eprescription.events.v1 import events_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2
from eprescription.prescribing.v1 import prescribing_pb2

from demo.story import Story
from services.common.topics import CLAIMS_ADJUDICATED, DISPENSES
from services.common.events import payload_of
from tests.e2e.test_story import POS_RETRY_BACKOFF_SECONDS, metrics_of, topic_events, unique
from tests.support import wait_until


def test_the_story_on_one_process_per_service(combined_system):
    assert sorted(combined_system.procs) == ["fhir", "insurance", "pharmacy", "prescribing"]
    results = Story(combined_system.settings, out=lambda line: None).run()
    assert results["third_sale"] == "FAILED_PRECONDITION" and results["old_code"] == "FAILED_PRECONDITION"
    assert set(results["claims"].values()) == {events_pb2.CLAIM_OUTCOME_APPROVED}
    assert results["alert"]
    # Each process's one /metrics carries its server's, its relay's and its worker's series.
    for service, rpc in (("prescribing", "IssuePrescription"), ("pharmacy", "DispensePrescription"),
                         ("insurance", "QuoteCoverage")):
        def complete(service=service, rpc=rpc):
            text = metrics_of(combined_system.metrics_ports[service])
            return text if "eprx_consumer_lag_messages{" in text else None
        text = wait_until(complete, timeout=60, interval=1, message=f"{service}'s worker series")
        assert f'grpc_method="{rpc}"' in text and 'grpc_code="OK"' in text, service
        assert f'eprx_outbox_depth_entries{{service="{service}",shard="0"}}' in text, service


def test_a_process_stopped_or_killed_in_the_middle_loses_and_doubles_nothing(combined_system):
    system = combined_system
    story = Story(system.settings, out=lambda line: None)
    patient, card = story.register_member()
    rx = story.issue("prescriber-hospital-a", story.draft(patient, card, [("C10AA07-10T", 30, "1", 1, 30)],
                                                          diagnoses=(("E78.0", "Tăng cholesterol máu"),))).prescription
    story.eventually("the prescription at the pharmacy", lambda: story.at_pharmacy(rx.code))
    acknowledged = []

    def sell(n):
        request = pharmacy_pb2.DispensePrescriptionRequest(
            idempotency_key=f"{rx.code}-{n}", code=rx.code, bhyt_card=card,
            lines=[pharmacy_pb2.DispenseLine(line_number=1, drug_code="C10AA07-10T", quantity=5, unit_price_vnd=15_800)])
        while True:  # a POS retries with the same key until it gets an answer
            try:
                acknowledged.append(story.pharmacy.DispensePrescription(request, metadata=story.md["pharmacy-a"],
                                                                        timeout=5))
                return
            except grpc.RpcError as error:
                assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), error
                time.sleep(POS_RETRY_BACKOFF_SECONDS)

    def shipped(count):
        def found():
            events = unique(topic_events(system.settings, DISPENSES, lambda e: e.key == rx.code))
            return events if len(events) >= count else None
        return found

    sell(0)
    # A graceful stop ends cleanly (exit 0), and what it acknowledged is on Kafka without the
    # process being started again (its relay stops after its server and ships what is left).
    assert system.stop("pharmacy") == 0
    wait_until(shipped(1), timeout=20, interval=0.5, message="the first sale shipped by the stopped process")
    system.start("pharmacy")
    sell(1)
    system.kill("insurance")        # SIGKILL: its server, relay and worker at once
    system.start("insurance")
    system.kill("prescribing")
    system.start("prescribing")
    sell(2)

    dispense_ids = {a.dispense_id for a in acknowledged}
    claim_ids = {a.claim_id for a in acknowledged}
    assert len(dispense_ids) == 3 and len(claim_ids) == 3
    dispensed = wait_until(shipped(3), timeout=120, interval=0.5, message="three dispense events")
    assert sorted(payload_of(e).dispense_id for e in dispensed) == sorted(dispense_ids)

    def adjudicated():
        found = unique(topic_events(system.settings, CLAIMS_ADJUDICATED, lambda e: payload_of(e).claim_id in claim_ids))
        return found if len({payload_of(e).claim_id for e in found}) >= 3 else None
    claims = wait_until(adjudicated, timeout=180, interval=0.5, message="three adjudications")
    per_claim = {}
    for env in claims:
        per_claim.setdefault(payload_of(env).claim_id, []).append(payload_of(env))
    assert set(per_claim) == claim_ids
    assert all(len(v) == 1 and v[0].outcome == events_pb2.CLAIM_OUTCOME_APPROVED for v in per_claim.values())

    def progressed():
        got = story.prescribing.GetPrescription(prescribing_pb2.GetPrescriptionRequest(code=rx.code),
                                                metadata=story.md["pharmacy-a"])
        return got if got.lines[0].dispensed == 15 else None
    wait_until(progressed, timeout=120, interval=0.5, message="prescribing saw the three sales")
