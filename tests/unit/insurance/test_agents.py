"""The insurance worker's agents through Faust's test_context, with an in-memory store."""
import os
from datetime import datetime, timezone

from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2

from services.common import signatures
from services.common.events import decode, new_envelope, payload_of
from services.insurance import worker
from services.insurance.adapters.events import encode
from services.insurance.config import Settings
from services.insurance.domain.state import MemberState
from services.insurance.handlers import Dependencies, Insurance
from tests.support import eventually
from services.common.streams import MemoryDeduplicator
from tests.support.memory_insurance import MemoryInsuranceStore
from tests.support.members import member, prescription_facts

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


class Worker:
    """A worker app built with an in-memory store; what it publishes is collected."""

    def __init__(self, rules, verifier=None):
        self.store, self.sent, self.dead = MemoryInsuranceStore(), [], []
        handlers = Insurance(Dependencies(self.store, rules, lambda: NOW, signatures=verifier))
        # agents under test_context: no broker, so no transport security to configure
        env = {**os.environ, "EPRX_PLAINTEXT_DEV": "1", "EPRX_TABLE_STORE": "memory"}
        self.app = worker.build(Settings.from_env(env), handlers=lambda: handlers, publish=self.publish,
                                dead_letters=lambda app, consumer: self, dedup=lambda consumer: MemoryDeduplicator())

    async def send(self, event, error):  # the dead-letter topic
        self.dead.append((event.value, f"{type(error).__name__}: {error}"))

    async def publish(self, events):
        self.sent.extend(encode(e) for e in events)

    def agent(self, name):
        return self.app.agents[name]

    def table(self):
        return self.app.tables[worker.TABLE]

    def count(self, n):
        async def enough():
            return len(self.sent) >= n
        return enough


def issued(code, prescriber, day):
    rx = common_pb2.Prescription(code=code, type=common_pb2.PRESCRIPTION_TYPE_PSYCHOTROPIC)
    rx.patient.identifier.citizen_id = "001203004567"
    rx.prescriber.certificate_number = prescriber
    rx.lines.add(line_number=1, drug_code="N05BA01-5T", quantity=10)
    rx.issued_at.FromDatetime(datetime(2026, 11, day, tzinfo=timezone.utc))
    env = new_envelope(events_pb2.PrescriptionIssued(prescription=rx), key=code, producer="t", correlation_id="c",
                       occurred_at=datetime(2026, 11, day, tzinfo=timezone.utc))
    return env.SerializeToString()


async def test_the_prescriptions_agent_records_lines_and_raises_doctor_shopping(rules):
    w = Worker(rules)
    async with w.agent(worker.PRESCRIPTION_WATCHER).test_context() as agent:
        for n, (prescriber, day) in enumerate((("P1", 1), ("P2", 9), ("P3", 20))):
            await agent.put(issued(f"01001abcdef{n}-h", prescriber, day), key=f"01001abcdef{n}-h".encode())
    assert set(w.store.prescriptions) == {"01001abcdef0-h", "01001abcdef1-h", "01001abcdef2-h"}
    facts = w.store.prescriptions["01001abcdef0-h"]
    assert facts.lines == ((1, "N05BA01-5T", 10),) and facts.patient.citizen_id == "001203004567"
    assert [r.topic for r in w.sent] == ["rx.alerts.v1"]
    alert = payload_of(decode(w.sent[0].value))
    # the alert names the patient by keyed pseudonym only, on its key and in its body
    pseudonym = Settings.from_env().common.pseudonyms().of("citizen_id", "001203004567")
    assert alert.kind == events_pb2.ALERT_KIND_DOCTOR_SHOPPING and w.sent[0].key == pseudonym.encode()
    assert alert.patient_key == pseudonym and pseudonym.startswith("p-")
    assert b"001203004567" not in w.sent[0].value and b"001203004567" not in w.sent[0].key


def submitted(member_id, card, claim_id, dispense_id, fund):
    c = events_pb2.ClaimSubmitted(claim_id=claim_id, dispense_id=dispense_id, member_id=member_id, card_code=card,
                                  prescription_code="01001abcdefg-c", pharmacy_code="PH0001",
                                  dispensed_on=common_pb2.Date(year=2026, month=11, day=20),
                                  lines=[events_pb2.ClaimLine(line_number=1, drug_code="B01AF01-20T", quantity=30,
                                                              unit_price_vnd=58_000, fund_vnd=fund)])
    return new_envelope(c, key=member_id, producer="t", correlation_id="c",
                        occurred_at=datetime(2026, 11, 20, tzinfo=timezone.utc)).SerializeToString()


async def test_the_adjudicator_publishes_outcomes_and_keeps_the_member_state_in_its_table(rules):
    w = Worker(rules)
    m = member(4)
    w.store.members[m.member_id] = m
    w.store.prescriptions["01001abcdefg-c"] = prescription_facts((1, "B01AF01-20T", 30))
    card = m.cards[0].card_code
    async with w.agent(worker.ADJUDICATOR).test_context() as agent:
        first = submitted(m.member_id, card, "c1", "d1", 696_000)
        await agent.put(first, key=m.member_id.encode())
        await agent.put(first, key=m.member_id.encode())           # redelivered: nothing new
        await agent.put(submitted(m.member_id, card, "c2", "d1", 696_000), key=m.member_id.encode())  # same dispense
        await eventually(w.count(2), message="two outcomes")  # claims are handled in batches
    outcomes = [payload_of(decode(r.value)) for r in w.sent]
    assert [(o.claim_id, o.outcome, o.reason_code) for o in outcomes] == [
        ("c1", events_pb2.CLAIM_OUTCOME_APPROVED, ""), ("c2", events_pb2.CLAIM_OUTCOME_REJECTED, "DUPLICATE_CLAIM")]
    state = MemberState.from_json(w.table()[m.member_id.encode()])
    assert state.year(2026).copay == 174_000 and set(state.claims) == {"c1"}


async def test_a_claim_carrying_its_signed_prescription_needs_no_other_topic(rules, tmp_path):
    signatures.ensure_keys(tmp_path, ["pk-test"])
    w = Worker(rules, signatures.DocumentVerifier(signatures.load_public_keys(tmp_path)))
    m = member(4)
    w.store.members[m.member_id] = m

    def claim_with(rx, claim_id, dispense_id):
        env = decode(submitted(m.member_id, m.cards[0].card_code, claim_id, dispense_id, 696_000))
        env.claim_submitted.prescription.CopyFrom(rx)
        return env.SerializeToString()

    keys = signatures.load_private_keys(tmp_path)

    def signed(code, citizen_id):
        rx = common_pb2.Prescription(code=code, facility_code="01001")
        rx.patient.identifier.citizen_id = citizen_id
        rx.lines.add(line_number=1, drug_code="B01AF01-20T", quantity=30)
        signatures.sign(rx, "pk-test", keys["pk-test"])
        return rx

    rx = signed("01001abcdefg-c", m.citizen_id)
    forged = common_pb2.Prescription()
    forged.CopyFrom(rx)
    forged.lines[0].quantity = 300
    someone_else = signed("01001abcdefh-c", "079088001234")   # the member's card billed for another patient
    async with w.agent(worker.ADJUDICATOR).test_context() as agent:
        await agent.put(claim_with(rx, "c1", "d1"), key=m.member_id.encode())
        await agent.put(claim_with(forged, "c2", "d2"), key=m.member_id.encode())
        other = decode(claim_with(someone_else, "c3", "d3"))
        other.claim_submitted.prescription_code = "01001abcdefh-c"
        await agent.put(other.SerializeToString(), key=m.member_id.encode())
        await eventually(w.count(3), message="three outcomes")
    outcomes = [payload_of(decode(r.value)) for r in w.sent]
    assert [(o.claim_id, o.outcome) for o in outcomes] == [("c1", events_pb2.CLAIM_OUTCOME_APPROVED),
                                                           ("c2", events_pb2.CLAIM_OUTCOME_REJECTED),
                                                           ("c3", events_pb2.CLAIM_OUTCOME_REJECTED)]
    assert outcomes[1].lines[0].reason_code == "PRESCRIPTION_UNKNOWN"  # a forged attachment is not trusted
    assert outcomes[2].reason_code == "PATIENT_NOT_MEMBER" and outcomes[2].fund_total_vnd == 0


def test_a_member_s_changelog_partition_is_the_one_kafka_gives_its_key():
    from kafka.partitioner.default import DefaultPartitioner

    from services.common.streams import kafka_partition
    keys = [f"{n:010d}".encode() for n in range(0, 10_000_000_000, 97_654_321)]
    assert {kafka_partition(k, 12) for k in keys} == set(range(12))
    assert all(kafka_partition(k, 12) == DefaultPartitioner()(k, list(range(12)), list(range(12))) for k in keys)


async def test_the_adjudicator_dead_letters_what_it_cannot_use_and_goes_on(rules):
    w = Worker(rules)
    m = member(4)
    w.store.members[m.member_id] = m
    misplaced = new_envelope(events_pb2.PrescriptionCancelled(code="01001abcdefg-c", reason="x"), key=m.member_id,
                             producer="t", correlation_id="c", occurred_at=NOW).SerializeToString()
    async with w.agent(worker.ADJUDICATOR).test_context() as agent:
        await agent.put(b"\x00garbage", key=m.member_id.encode())
        await agent.put(misplaced, key=m.member_id.encode())
        keyless = submitted(m.member_id, m.cards[0].card_code, "c1", "d1", 696_000)
        await agent.put(keyless, key=b"")
        await agent.put(submitted(m.member_id, m.cards[0].card_code, "c2", "d2", 696_000), key=m.member_id.encode())
        await eventually(w.count(1), message="the good claim's outcome")
    assert [value for value, _ in w.dead] == [b"\x00garbage", misplaced, keyless]
    errors = [error for _, error in w.dead]
    assert "not an EventEnvelope" in errors[0] and "does not belong on the claims topic" in errors[1]
    assert "needs the member id as its key" in errors[2]
    assert payload_of(decode(w.sent[0].value)).claim_id == "c2"


async def test_a_claim_redelivered_before_its_state_was_kept_adjusts_the_visit_once(rules):
    """kill -9 after the outcomes were saved but before the member's table record: the claim
    comes again with the old state; the earlier claims it adjusted keep their revision."""
    from services.insurance.domain.adjudication import Claim, ClaimLine
    from services.insurance.domain.events import ClaimSubmitted
    store = MemoryInsuranceStore()
    handlers = Insurance(Dependencies(store, rules, lambda: NOW))
    m = member(4)
    store.members[m.member_id] = m
    store.prescriptions["01001abcdefg-c"] = prescription_facts((1, "J01CR02-1GT", 14), (2, "M01AE01-400T", 15),
                                                                encounter="K-1", other_costs=150_000)

    def event(n, *lines):
        claim = Claim(f"c{n}", f"d{n}", m.member_id, m.cards[0].card_code, "01001abcdefg-c", NOW.date(),
                      tuple(ClaimLine(*line, 0) for line in lines), "PH0001")
        return ClaimSubmitted(f"e{n}", claim, "", None)
    state = MemberState()
    for n, line in ((1, (2, "M01AE01-400T", 10, 1_800)), (2, (2, "M01AE01-400T", 5, 1_800))):
        _, state = await handlers.on_claim_submitted(event(n, line), state)
    crossing = event(3, (1, "J01CR02-1GT", 14, 16_200))
    first, _ = await handlers.on_claim_submitted(crossing, state)
    again, _ = await handlers.on_claim_submitted(crossing, state)      # the table never kept the first
    assert [(o.event_id, o.adjudication.revision) for o in again] == [(o.event_id, o.adjudication.revision)
                                                                      for o in first]
    assert [store.claims[c].revision for c in ("c1", "c2")] == [1, 1]


async def test_a_member_with_ten_thousand_claims_keeps_a_small_record_and_a_redelivery_is_still_known(rules):
    """Issue 13 (3): the member's record (one changelog message) stays far under Kafka's 1 MB
    limit however many claims the member has; the oldest claims' marks are pruned, yet a
    redelivery of the very first claim is recognised and not adjudicated twice."""
    import json
    from services.insurance.domain.state import MARKS_KEPT_MAX
    w = Worker(rules)
    m = member(4)
    w.store.members[m.member_id] = m
    card, n = m.cards[0].card_code, int(os.environ.get("EPRX_TEST_MEMBER_CLAIMS", 10_000))
    events = []
    for i in range(n):
        code = f"01001{i:07d}-c"
        w.store.prescriptions[code] = prescription_facts((1, "B01AF01-20T", 30), code=code)
        env = decode(submitted(m.member_id, card, f"c-{i:05d}", f"d-{i:05d}", 696_000))
        env.claim_submitted.prescription_code = code
        events.append(env.SerializeToString())
    async with w.agent(worker.ADJUDICATOR).test_context() as agent:
        for event in events:
            await agent.put(event, key=m.member_id.encode())
        await eventually(w.count(n), timeout=300, message=f"{n} outcomes")
        record = w.table()[m.member_id.encode()]
        size = len(json.dumps(record).encode())
        copay = MemberState.from_json(record).year(2026).copay
    async with w.agent(worker.ADJUDICATOR).test_context() as agent:   # a restarted worker: nothing in memory
        await agent.put(events[0], key=m.member_id.encode())            # the first claim, redelivered
        await eventually(w.count(n + 1), message="the redelivery answered")
    assert size < 400_000, size
    state = MemberState.from_json(w.table()[m.member_id.encode()])
    assert len(state.claims) == MARKS_KEPT_MAX and state.was_pruned("c-00000")
    outcomes = [decode(r.value) for r in w.sent if r.topic == "rx.claims.adjudicated.v1"]
    assert outcomes[-1].event_id == outcomes[0].event_id                 # the same outcome again, same event id
    assert len({e.event_id for e in outcomes}) == n                      # n outcomes, each once after de-duplication
    assert state.year(2026).copay == copay                               # the accumulator counted it once
