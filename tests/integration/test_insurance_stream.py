"""The insurance worker through the real broker: claims in, adjudications out; duplicates;
the accumulator after the worker is SIGKILLed and restarted (changelog recovery); each
member's state in its claims' changelog partition; doctor-shopping alerts; the agency's consumer."""
import csv
import signal
import uuid
from datetime import date, datetime, timezone

import pytest

from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2

from services.common.events import decode, payload_of
from services.common.topics import ALERTS, CLAIMS, CLAIMS_ADJUDICATED, PRESCRIPTIONS
from tests.support.insurance_fixtures import new_member
from tests.support.prescribing_fixtures import output_of, start_process
from tests.support import eventually, publish, random_citizen_id, read_topic, wait_until

DAY = common_pb2.Date(year=2026, month=11, day=20)


def prescription(code, lines, *, rx_type=common_pb2.PRESCRIPTION_TYPE_ORDINARY, prescriber="001234/HNO-CCHN",
                 patient="001203004567", issued_at=None, encounter=None):
    rx = common_pb2.Prescription(code=code, type=rx_type, facility_code=code[:5])
    if encounter is not None:
        rx.encounter.id, rx.encounter.other_costs_vnd = encounter
    rx.patient.identifier.citizen_id = patient
    rx.prescriber.certificate_number = prescriber
    for n, (drug, qty) in enumerate(lines, start=1):
        rx.lines.add(line_number=n, drug_code=drug, quantity=qty)
    rx.issued_at.FromDatetime(issued_at or datetime(2026, 11, 20, 2, tzinfo=timezone.utc))
    return events_pb2.PrescriptionIssued(prescription=rx)


def claim(member, code, *, drug="A10AE04-PEN", qty=50, price=260_000, fund=10_400_000, claim_id=None,
          dispense_id=None):
    # insulin pens at their reference price 260,000 and ratio 100: 50 -> insured 13,000,000 ->
    # fund 80% 10,400,000, co-payment 2,600,000 (over 15% of the base salary: no visit exemption)
    return events_pb2.ClaimSubmitted(
        claim_id=claim_id or str(uuid.uuid4()), dispense_id=dispense_id or str(uuid.uuid4()),
        member_id=member.member_id, card_code=member.cards[0].card_code, facility_code="01001",
        pharmacy_code="PH0001", prescription_code=code, dispensed_on=DAY,
        lines=[events_pb2.ClaimLine(line_number=1, drug_code=drug, quantity=qty, unit_price_vnd=price,
                                    fund_vnd=fund)])


def adjudications(settings, claim_ids, at_least, timeout=120):
    wanted = set(claim_ids)

    def collect():
        found = {}
        for record in read_topic(settings.kafka_access("admin"), CLAIMS_ADJUDICATED, timeout=10):
            env = decode(record.value)
            message = payload_of(env)
            if message.claim_id in wanted:
                found.setdefault(message.claim_id, []).append((env.event_id, message))
        return found if len(found) >= at_least else None
    return wait_until(collect, timeout=timeout, interval=0.5, message=f"{at_least} adjudications")


def code_for(n=0):
    return f"01001{uuid.uuid4().hex[:7]}-c"


async def test_claims_are_adjudicated_and_the_accumulator_survives_a_killed_worker(settings, store, insurance_worker):
    member = new_member(4, five_years_from=date(2018, 1, 1))
    await store.upsert_member(member)
    code = code_for()
    publish(settings.kafka_access("admin"), PRESCRIPTIONS,
            prescription(code, [("A10AE04-PEN", 50)], patient=member.citizen_id), code)
    await eventually(lambda: store.prescription(code), timeout=120, message="the prescription seen by insurance")

    first = [claim(member, code) for _ in range(3)]
    for c in first:
        publish(settings.kafka_access("admin"), CLAIMS, c, member.member_id)
    before = adjudications(settings, [c.claim_id for c in first], 3)
    assert {m.outcome for outs in before.values() for _, m in outs} == {events_pb2.CLAIM_OUTCOME_APPROVED}
    assert all(m.fund_total_vnd == 10_400_000 for outs in before.values() for _, m in outs)

    worker = insurance_worker["proc"]
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    insurance_worker["proc"] = start_process(["-m", "services.insurance.worker", "worker", "-l", "warn",
                                              "--without-web"])

    # 3 x 2,600,000 before the crash, 3 more after: 15,600,000 > 6 x 2,530,000 = 15,180,000
    # crossed by the sixth claim, so the seventh is exempt, if the first three were remembered.
    second = [claim(member, code) for _ in range(3)]
    duplicate = claim(member, code, dispense_id=first[0].dispense_id)
    exempt = claim(member, code, fund=13_000_000)
    for c in second + [duplicate, exempt]:
        publish(settings.kafka_access("admin"), CLAIMS, c, member.member_id)
    try:
        # A restarted worker first waits out the killed one's session, then recovers its table.
        after = adjudications(settings, [c.claim_id for c in second + [duplicate, exempt]], 5, timeout=240)
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}; the restarted worker said: {output_of(insurance_worker['proc'])[-4000:]}")
    last = after[exempt.claim_id][-1][1]
    assert last.copay_exempt and last.fund_total_vnd == 13_000_000 and last.lines[0].copay_vnd == 0
    rejected = after[duplicate.claim_id][-1][1]
    assert (rejected.outcome, rejected.reason_code) == (events_pb2.CLAIM_OUTCOME_REJECTED, "DUPLICATE_CLAIM")
    year = await store.year(member.member_id, 2026)
    assert year.copay == 6 * 2_600_000 and year.exempt_from == date(2026, 11, 20)

    reversal = events_pb2.ClaimReversalRequested(claim_id=second[-1].claim_id, dispense_id=second[-1].dispense_id,
                                                 member_id=member.member_id, reason="sale reversed")
    publish(settings.kafka_access("admin"), CLAIMS, reversal, member.member_id)
    wait_until(lambda: any(m.outcome == events_pb2.CLAIM_OUTCOME_REVERSED
                           for _, m in adjudications(settings, [second[-1].claim_id], 1)[second[-1].claim_id]),
               timeout=60, message="reversal")
    year = await store.year(member.member_id, 2026)
    assert year.copay == 5 * 2_600_000 and year.exempt_from is None  # back under the threshold


async def test_a_prescription_sold_in_three_small_sales_is_paid_as_one_sale(settings, store, insurance_worker):
    """Hole: the 15% threshold was judged per sale, so small sales were each paid in full."""
    lines = [("J01CR02-1GT", 14), ("M01AE01-400T", 15)]

    def line(number, drug, qty, price):
        return events_pb2.ClaimLine(line_number=number, drug_code=drug, quantity=qty, unit_price_vnd=price)

    def visit(sales):
        member = new_member(4)
        code = code_for()
        publish(settings.kafka_access("admin"), PRESCRIPTIONS,
                prescription(code, lines, patient=member.citizen_id, encounter=(f"K-{code}", 150_000)), code)
        return member, code, [events_pb2.ClaimSubmitted(
            claim_id=str(uuid.uuid4()), dispense_id=str(uuid.uuid4()), member_id=member.member_id,
            card_code=member.cards[0].card_code, pharmacy_code="PH0001", prescription_code=code, dispensed_on=DAY,
            lines=[line(*spec) for spec in sale]) for sale in sales]

    one = visit([[(1, "J01CR02-1GT", 14, 16_200), (2, "M01AE01-400T", 15, 1_800)]])
    three = visit([[(2, "M01AE01-400T", 10, 1_800)], [(2, "M01AE01-400T", 5, 1_800)], [(1, "J01CR02-1GT", 14, 16_200)]])
    for member, code, claims in (one, three):
        await store.upsert_member(member)
        await eventually(lambda: store.prescription(code), timeout=120, message="the prescription seen by insurance")
        for c in claims:   # one after another: the counter's order
            publish(settings.kafka_access("admin"), CLAIMS, c, member.member_id)

    def latest(claims, revisions):
        found = adjudications(settings, [c.claim_id for c in claims], len(claims))
        last = {cid: max((m for _, m in outs), key=lambda m: m.revision) for cid, outs in found.items()}
        return last if sorted(m.revision for m in last.values()) == revisions else None

    single = wait_until(lambda: latest(one[2], [0]), timeout=120, interval=1, message="the single sale")
    split = wait_until(lambda: latest(three[2], [0, 1, 1]), timeout=120, interval=1,
                       message="the split sales, the first two adjusted")
    # 150,000 + 226,800 + 27,000 = 403,800 >= 379,500: 80% of 253,800 whichever way it is sold
    assert sum(m.fund_total_vnd for m in single.values()) == sum(m.fund_total_vnd for m in split.values()) == 203_040
    assert sum(m.patient_total_vnd for m in split.values()) == 50_760
    adjusted = [m for m in split.values() if m.revision == 1]
    assert {m.adjusted_by_claim_id for m in adjusted} == {three[2][2].claim_id}
    assert all(m.visit_cost_vnd == 403_800 and not m.copay_exempt for m in split.values())
    assert (await store.year(three[0].member_id, 2026)).copay == 50_760


def test_three_prescribers_of_controlled_drugs_in_30_days_raise_an_alert(settings, insurance_worker):
    patient = random_citizen_id()
    prescribers = ["001234/HNO-CCHN", "045678/HCM-CCHN", "004321/DNA-CCHN"]
    codes = [f"{p}{uuid.uuid4().hex[:7]}-n" for p in ("01001", "79001", "48001")]
    for i, (prescriber, code) in enumerate(zip(prescribers, codes)):
        issued = datetime(2026, 11, 1 + 10 * i, 3, tzinfo=timezone.utc)
        publish(settings.kafka_access("admin"), PRESCRIPTIONS,
                prescription(code, [("N02AA01-10T", 28)], rx_type=common_pb2.PRESCRIPTION_TYPE_NARCOTIC,
                             prescriber=prescriber, patient=patient, issued_at=issued), code)

    def alert():
        for record in read_topic(settings.kafka_access("admin"), ALERTS, timeout=10):
            a = payload_of(decode(record.value))
            if a.patient_key == settings.pseudonyms().of("citizen_id", patient):   # never the citizen ID itself
                return a
        return None
    found = wait_until(alert, timeout=120, interval=0.5, message="a doctor-shopping alert")
    assert found.kind == events_pb2.ALERT_KIND_DOCTOR_SHOPPING
    assert sorted(found.prescription_codes) == sorted(codes) and sorted(found.prescriber_ids) == sorted(prescribers)


async def test_the_agency_follows_its_own_group_and_exports_a_month(settings, store, insurance_worker, tmp_path):
    member = new_member(4)
    await store.upsert_member(member)
    code = code_for()
    publish(settings.kafka_access("admin"), PRESCRIPTIONS,
            prescription(code, [("B01AF01-20T", 30)], patient=member.citizen_id), code)
    c = claim(member, code, drug="B01AF01-20T", qty=30, price=58_000, fund=696_000)
    publish(settings.kafka_access("admin"), CLAIMS, c, member.member_id)
    adjudications(settings, [c.claim_id], 1)

    group = f"bhyt-agency-{uuid.uuid4().hex[:6]}"   # the agency principal may use groups under bhyt-agency
    follow = start_process(["-m", "services.insurance.agency", "follow", "--group", group, "--idle-exit", "3"])
    assert follow.wait(timeout=120) == 0, output_of(follow)[-2000:]
    shown = output_of(follow)
    assert f"claim {c.claim_id} APPROVED" in shown, shown[-2000:]
    again = start_process(["-m", "services.insurance.agency", "follow", "--group", group, "--idle-exit", "3"])
    assert again.wait(timeout=120) == 0, output_of(again)[-2000:]
    assert c.claim_id not in output_of(again)  # the group resumes after what it has seen

    out = tmp_path / "claims.csv"
    export = start_process(["-m", "services.insurance.agency", "export", "--month", "2026-11", "--out", str(out)])
    assert export.wait(timeout=120) == 0, output_of(export)[-2000:]
    rows = [r for r in csv.DictReader(out.open(encoding="utf-8")) if r["MA_LK"] == c.claim_id]
    assert len(rows) == 1
    row = rows[0]
    assert (row["MA_BN"], row["MA_THE"], row["MA_THUOC"]) == (member.member_id, member.cards[0].card_code, "B01AF01-20T")
    # 30 x 58,000 = 1,740,000 at ratio 50 -> insured 870,000, fund 80% 696,000, co-payment 174,000
    assert (row["SO_LUONG"], row["DON_GIA"], row["TYLE_TT"], row["THANH_TIEN"]) == ("30", "58000", "50", "1740000")
    assert (row["T_BHTT"], row["T_BNCCT"], row["T_BNTT"], row["MUC_HUONG"]) == ("696000", "174000", "1044000", "80")
    assert len(row["NGAY_YL"]) == 12
    from services.insurance import xml130
    visits = xml130.read((tmp_path / "claims.xml").read_bytes())
    [ours] = [v for v in visits if any(r["MA_CHUNG_TU"] == c.claim_id for r in v["XML2"])]
    assert (ours["XML1"]["MA_THE_BHYT"], ours["XML1"]["SO_CCCD"], ours["XML1"]["T_BHTT"]) == (
        member.cards[0].card_code, member.citizen_id, "696000")


def test_every_member_state_write_lands_in_the_changelog_partition_of_the_member_s_claims(settings,
                                                                                          insurance_worker):
    # Forty members' claims arrive interleaved and are handled in batches, members in parallel:
    # each member's table record must still go to the partition its claims are on, or a worker
    # taking that partition over after a rebalance would recover someone else's state.
    members = [new_member(4) for _ in range(40)]
    claims = [claim(m, code_for()) for m in members for _ in range(2)]
    for c in claims:
        publish(settings.kafka_access("admin"), CLAIMS, c, c.member_id)
    adjudications(settings, [c.claim_id for c in claims], len(claims))
    wanted = {m.member_id.encode() for m in members}
    claim_partitions = {r.key: r.partition for r in read_topic(settings.kafka_access("admin"), CLAIMS) if r.key in wanted}
    changelog = [r for r in read_topic(settings.kafka_access("admin"), "eprx-insurance-member-accumulators-changelog")
                 if r.key in wanted]
    assert {r.key for r in changelog} == wanted and len(set(claim_partitions.values())) > 1
    misplaced = [(r.key, r.partition, claim_partitions[r.key]) for r in changelog
                 if r.partition != claim_partitions[r.key]]
    assert not misplaced, misplaced


def test_a_running_worker_keeps_its_liveness_file_fresh(settings, insurance_worker):
    from services.common import liveness
    beat = settings.run_dir / "live" / "insurance-worker-0"
    wait_until(lambda: liveness.age(beat) is not None and liveness.age(beat) < 10, timeout=60,
               message="a fresh heartbeat")
    assert liveness.main([str(beat), "--max-age", "15"]) == 0


async def test_a_forged_claim_from_an_unauthorised_principal_never_reaches_the_adjudicator(settings, store,
                                                                                          insurance_worker):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError
    member = new_member(4)
    await store.upsert_member(member)
    code = code_for()
    publish(settings.kafka_access("admin"), PRESCRIPTIONS,
            prescription(code, [("A10AE04-PEN", 50)], patient=member.citizen_id), code)
    await eventually(lambda: store.prescription(code), timeout=120, message="the prescription seen by insurance")
    forged, genuine = claim(member, code), claim(member, code)
    for principal in ("prescribing", "agency"):   # neither owns the claims topic
        producer = KafkaProducer(acks="all", max_block_ms=8000, retries=0, **settings.kafka_access(principal).kwargs())
        try:
            with pytest.raises(KafkaError):
                publish_with(producer, CLAIMS, forged, member.member_id)
        finally:
            producer.close(timeout=5)
    publish(settings.kafka_access("pharmacy"), CLAIMS, genuine, member.member_id)   # the topic's owner
    adjudications(settings, [genuine.claim_id], 1)
    later = {payload_of(decode(r.value)).claim_id for r in read_topic(settings.kafka_access("admin"), CLAIMS_ADJUDICATED)}
    assert genuine.claim_id in later and forged.claim_id not in later
    assert all(forged.claim_id.encode() not in r.value for r in read_topic(settings.kafka_access("admin"), CLAIMS))


def publish_with(producer, topic, payload, key):
    from services.common.events import new_envelope, to_record
    from services.kernel.calendar import utc_now
    record = to_record(new_envelope(payload, key=key, producer="forger", correlation_id="x", occurred_at=utc_now()),
                       topic)
    producer.send(topic, key=record.key, value=record.value, headers=list(record.headers)).get(timeout=10)
