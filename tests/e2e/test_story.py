"""End to end, through gRPC and Kafka only: the demo's story as assertions, and the same
kind of work with processes killed in the middle, nothing lost or doubled."""

import grpc
from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2
from eprescription.prescribing.v1 import prescribing_pb2

from demo.story import Story
from tests.support.prescribing_fixtures import output_of
from tests.support import read_topic, wait_until
from tests.support.sales import SalesUnderFaults


def test_the_story(system):
    lines = []
    results = Story(system.settings, out=lines.append).run()
    system.story_results = results
    assert results["third_sale"] == "FAILED_PRECONDITION"
    assert results["old_code"] == "FAILED_PRECONDITION"
    assert set(results["claims"].values()) == {events_pb2.CLAIM_OUTCOME_APPROVED}
    assert results["alert"]
    # The three cases of who the fund pays: the dispensary's claims above; a retail sale with a
    # card is cash (no claim, no reimbursement); the flagged line is reimbursed to the patient,
    # capped at the national price 1,200 (sold at 1,500): 60 x 1,200 x 80% = 57,600.
    assert results["retail_sale"] == ("", "", 0, 69_000)
    [(outcome, payee, reimbursed, reasons)] = results["reimbursement"].values()
    assert (payee, reimbursed, reasons) == (events_pb2.PAYEE_PATIENT, 57_600, ["PRICE_ABOVE_REFERENCE"])
    assert outcome == events_pb2.CLAIM_OUTCOME_PARTIAL
    text = "\n".join(lines)
    assert "warfarin" in text and "major" in text            # the safety warning
    assert "QUANTITY_EXCEEDS_REMAINING" in text and "PRESCRIPTION_REPLACED" in text
    assert "RETAIL_NOT_COVERED" in text and "reimbursement to the patient" in text


def metrics_of(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def test_every_process_serves_its_metrics_after_the_story(system):
    """After the story: the gRPC metrics by their usual names, the pharmacy's calls to insurance,
    consumer lag, outbox depth and the time from a sale to its adjudication."""
    if not getattr(system, "story_results", None):
        Story(system.settings, out=lambda line: None).run()
    ports = system.metrics_ports
    for service, rpc in (("prescribing", "IssuePrescription"), ("pharmacy", "DispensePrescription"),
                         ("insurance", "QuoteCoverage")):
        text = metrics_of(ports[service])
        assert f'grpc_method="{rpc}"' in text and 'grpc_code="OK"' in text, service
        assert "grpc_server_handling_seconds_bucket" in text and "eprx_redis_connections_in_use" in text
    client = [line for line in metrics_of(ports["pharmacy"]).splitlines() if line.startswith("grpc_client_handled_total{")]
    assert any('grpc_code="OK",grpc_method="QuoteCoverage"' in line for line in client), client
    for service in ("prescribing", "pharmacy", "insurance"):
        assert f'eprx_outbox_depth_entries{{service="{service}",shard="0"}}' in metrics_of(ports[f"{service}-relay"])

    def workers_report():
        texts = {name: metrics_of(ports[name]) for name in ("prescribing-worker", "pharmacy-worker",
                                                            "insurance-worker")}
        return texts if all("eprx_consumer_lag_messages{" in t for t in texts.values()) else None
    texts = wait_until(workers_report, timeout=60, interval=1, message="consumer lag on every worker")
    count = next(line for line in texts["insurance-worker"].splitlines()
                 if line.startswith("eprx_dispense_to_adjudicated_seconds_count"))
    assert float(count.split()[-1]) >= 2


def test_the_audit_trail_answers_who_accessed_a_story_patient_s_data(system):
    """Issue 12 (5): after the story, the audit command lists who read and changed the first
    patient's data, each with role, method, outcome and correlation id; the audit topic
    carries pseudonyms, never the patient's identifiers."""
    import subprocess
    import sys
    from services.common.audit import AUDIT
    from tests.support.prescribing_fixtures import ROOT
    results = getattr(system, "story_results", None) or Story(system.settings, out=lambda line: None).run()
    patient = results["patients"][0]

    def listed():
        done = subprocess.run([sys.executable, "-m", "services.common.audit", "who", "--citizen-id", patient],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**__import__("os").environ,
                                   "PYTHONPATH": f"{ROOT}:{ROOT / 'build' / 'gen'}"})
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()
        wanted = ("01001 (prescriber) changed via prescribing.IssuePrescription",
                  "01001 (prescriber) read via prescribing.ListPatientMedications",
                  "PH0001 (pharmacy) read via pharmacy.LookupPrescription",
                  "PH0001 (pharmacy) changed via pharmacy.DispensePrescription",
                  "pharmacy (service) read via insurance.QuoteCoverage")
        return lines if all(any(w in line for line in lines) for w in wanted) else None
    lines = wait_until(listed, timeout=60, interval=1, message="the story's accesses on the audit topic")
    assert lines[0].startswith(f"{len(lines) - 1} accesses to the data of patient p-")
    assert all(" [correlation " in line and "prescription " in line for line in lines[1:])
    assert any(": FAILED_PRECONDITION [" in line for line in lines[1:])   # a refused sale is recorded too
    audit_bytes = b"".join(r.value for r in read_topic(system.settings.kafka_access("admin"), AUDIT, timeout=20))
    for identifier in (patient, results["patients"][1], results["cards"][0]):
        assert identifier.encode() not in audit_bytes


def test_no_log_names_a_story_patient_or_holds_a_credential(system):
    """Issue 12 (7): after the story, every process's output (library lines included) and the
    infrastructure's logs (Kafka's, Redis's) are scanned for the story's identifiers, names and
    secrets: none may appear."""
    from services.common.auth import load_tokens
    results = getattr(system, "story_results", None) or Story(system.settings, out=lambda line: None).run()
    cards = results["cards"]
    secrets = list(load_tokens(system.settings.credentials_file.parent / "tokens.json").values())
    secrets += [p.read_text().strip() for p in system.settings.infra_secrets_dir.glob("*/*.password")]
    forbidden = [*results["patients"], *cards, *(c.lower() for c in cards), *(c[5:] for c in cards),
                 "Bệnh nhân Demo", *secrets]
    texts = {name: output_of(proc) for name, proc in system.procs.items()}
    texts.update({path.name: path.read_text(errors="replace")
                  for path in (system.settings.run_dir / "logs").glob("*.log")})
    assert "kafka.log" in texts and len(texts) >= 12
    found = {name: [f for f in forbidden if f and f in text] for name, text in texts.items()}
    assert not {name: hits for name, hits in found.items() if hits}


def test_a_replacement_tells_the_prescriber_what_was_sold_and_the_pharmacy_sells_only_the_rest(system):
    """Issue 11 (4, 5) through the running system: 12 of 30 sold, the prescription replaced (the
    whole treatment); the prescriber hears 12 in the answer and as the pharmacies' final count;
    the old code is refused naming its successor; the successor sells 18, not 30."""
    from eprescription.common.v1 import common_pb2 as common
    from services.common.grpc_errors import details_of
    story = Story(system.settings, out=lambda line: None)
    patient, card = story.register_member()
    lines = [("C10AA07-10T", 30, "1", 1, 30)]
    old = story.issue("prescriber-hospital-a", story.draft(patient, card, lines,
                                                           diagnoses=(("E78.0", "Tăng cholesterol máu"),))).prescription
    story.eventually("the prescription at the pharmacy", lambda: story.at_pharmacy(old.code))
    story.sell("pharmacy-a", old.code, [(1, "C10AA07-10T", 12, 15_800)])

    def seen_by_prescribing():
        got = story.prescribing.GetPrescription(prescribing_pb2.GetPrescriptionRequest(code=old.code),
                                                metadata=story.md["prescriber-hospital-a"])
        return got.lines[0].dispensed == 12
    story.eventually("the sale seen by prescribing", seen_by_prescribing)
    replaced = story.prescribing.ReplacePrescription(prescribing_pb2.ReplacePrescriptionRequest(
        client_request_id=f"r-{old.code}", code=old.code, reason="đổi liều",
        draft=story.draft(patient, card, lines, diagnoses=(("E78.0", "Tăng cholesterol máu"),))),
        metadata=story.md["prescriber-hospital-a"], timeout=10)
    assert [(d.line_number, d.prescribed, d.dispensed) for d in replaced.dispensed] == [(1, 30, 12)]
    new = replaced.prescription.code

    def final_count():
        got = story.prescribing.GetPrescription(prescribing_pb2.GetPrescriptionRequest(code=old.code),
                                                metadata=story.md["prescriber-hospital-a"])
        return got if got.dispensing_closed else None
    closed = wait_until(final_count, timeout=120, interval=0.5, message="the pharmacies' final count")
    assert [(d.line_number, d.dispensed) for d in closed.lines] == [(1, 12)]
    refused = story.sell("pharmacy-a", old.code, [(1, "C10AA07-10T", 1, 15_800)], expect_error=True)
    info = [d for d in details_of(refused) if hasattr(d, "reason")]
    assert info[0].reason == "PRESCRIPTION_REPLACED" and info[0].metadata["replaced_by"] == new
    looked = story.pharmacy.LookupPrescription(pharmacy_pb2.LookupPrescriptionRequest(code=old.code),
                                               metadata=story.md["pharmacy-a"])
    assert looked.replaced_by == new and looked.status == common.PRESCRIPTION_STATUS_REPLACED
    story.eventually("the successor at the pharmacy", lambda: story.at_pharmacy(new))
    over = story.sell("pharmacy-a", new, [(1, "C10AA07-10T", 19, 15_800)], expect_error=True)
    assert over.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert story.sell("pharmacy-a", new, [(1, "C10AA07-10T", 18, 15_800)]).lines[0].remaining == 0


def test_restarts_in_the_middle_of_the_story_lose_nothing(system):
    sales = SalesUnderFaults(system.settings)
    sales.sell(0)
    system.kill("insurance-worker")      # adjudication stops; claims wait on Kafka
    system.kill("pharmacy-relay")        # sales wait in the outbox
    sales.sell(1)
    system.kill("pharmacy")              # the service itself dies
    system.start("pharmacy")
    sales.sell(2)
    system.start("pharmacy-relay")
    system.kill("prescribing-worker")
    system.start("insurance-worker")
    system.start("prescribing-worker")
    sales.sell(3)

    got = sales.assert_each_once(4)      # 4 x 5 of 30 dispensed
    assert got.status == common_pb2.PRESCRIPTION_STATUS_PARTIALLY_DISPENSED


def test_no_process_logged_a_patient_identifier_or_name(system):
    results = getattr(system, "story_results", None) or Story(system.settings, out=lambda line: None).run()
    secrets = results["patients"] + results["cards"] + ["Bệnh nhân Demo"]
    for name, proc in system.procs.items():
        text = output_of(proc)
        assert text, f"{name} logged nothing"
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{name} logged {leaked}"
