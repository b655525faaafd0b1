"""The pharmacy write path under pressure, with real processes, Redis and Kafka:
concurrent dispenses on two replicas, a replica killed mid-stream, insurance down."""
import asyncio
import signal
import uuid
from collections import Counter

import grpc
import pytest
from eprescription.events.v1 import events_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2 as pb
from eprescription.pharmacy.v1 import pharmacy_pb2_grpc

from services.common.auth import load_tokens
from services.common.grpc_errors import details_of
from services.common.events import EventDecodeError, decode, payload_of
from services.common.topics import CLAIMS, DISPENSES, PRESCRIPTIONS
from services.pharmacy.adapters.redis_store import RedisLedgerStore
from tests.support.pharmacy_fixtures import signed_prescription
from tests.support.prescribing_fixtures import output_of, start_process, stop_process
from tests.support import admin_redis_async, admin_redis_sync, free_port, publish, read_topic, serving, wait_until


POS_RETRY_BACKOFF_SECONDS = 0.2  # how long a point-of-sale client waits before it retries


def start_replica(port, **env):
    proc = start_process(["-m", "services.pharmacy.app"], env={"EPRX_PHARMACY_PORT": str(port), **env})
    wait_until(lambda: serving(port) or proc.poll() is not None, timeout=60, message=f"pharmacy on {port}")
    assert proc.poll() is None
    return proc


@pytest.fixture(scope="module")
def pipeline():
    relay = start_process(["-m", "services.common.outbox_relay", "pharmacy"])
    worker = start_process(["-m", "services.pharmacy.worker", "worker", "-l", "warn", "--without-web"])
    yield
    for proc in (relay, worker):
        stop_process(proc)


def outbox_drained(settings):
    client = admin_redis_sync(settings.redis_url_for("admin"))
    return sum(client.xlen(s) for s in RedisLedgerStore(client, settings.outbox_shards).layout.streams()) == 0


def published_prescription(settings, lines, patient=""):
    rx = signed_prescription(lines, patient=patient)
    publish(settings.kafka_access("admin"), PRESCRIPTIONS, events_pb2.PrescriptionIssued(prescription=rx), rx.code)
    client = admin_redis_sync(settings.redis_url_for("admin"))
    key = RedisLedgerStore(client, settings.outbox_shards).ledger_key(rx.code)
    wait_until(lambda: client.hexists(key, "content"), timeout=120, message="the ledger built from the event")
    return rx


def dispense_events(settings, code):
    events = {}
    for record in read_topic(settings.kafka_access("admin"), DISPENSES, timeout=20):
        env = decode(record.value)
        if env.key == code and env.WhichOneof("payload") == "medication_dispensed":
            events[env.event_id] = payload_of(env)
    return list(events.values())


def tokens_of(settings):
    return load_tokens(settings.credentials_file.parent / "tokens.json")


async def test_two_hundred_concurrent_attempts_on_two_replicas_never_exceed_the_prescription(settings, pipeline):
    rx = published_prescription(settings, [("N02BE01-500T", 100)])
    ports = [free_port(), free_port()]
    replicas = [start_replica(p) for p in ports]
    tokens = tokens_of(settings)
    channels = [settings.pki.aio_channel(f"127.0.0.1:{p}") for p in ports]
    stubs = [pharmacy_pb2_grpc.PharmacyServiceStub(c) for c in channels]
    pharmacies = ["pharmacy-a", "pharmacy-b"]

    async def attempt(i):
        request = pb.DispensePrescriptionRequest(
            idempotency_key=str(uuid.uuid4()), code=rx.code, self_pay=True,
            lines=[pb.DispenseLine(line_number=1, drug_code="N02BE01-500T", quantity=1, unit_price_vnd=1_050)])
        try:
            reply = await stubs[i % 2].DispensePrescription(
                request, metadata=(("authorization", f"Bearer {tokens[pharmacies[(i // 2) % 2]]}"),), timeout=60)
            return "accepted", reply.dispense_id
        except grpc.aio.AioRpcError as err:
            return err.code().name, err.details()

    try:
        results = await asyncio.gather(*(attempt(i) for i in range(200)))
    finally:
        for c in channels:
            await c.close()
        for proc in replicas:
            stop_process(proc)
    counts = Counter(kind for kind, _ in results)
    assert counts == {"accepted": 100, "FAILED_PRECONDITION": 100}, counts
    accepted = {detail for kind, detail in results if kind == "accepted"}
    wait_until(lambda: outbox_drained(settings), timeout=60, message="pharmacy outbox drained")
    events = wait_until(lambda: (lambda e: e if len(e) >= 100 else None)(dispense_events(settings, rx.code)),
                        timeout=60, message="100 dispense events")
    assert {e.dispense_id for e in events} == accepted  # one event per accepted dispense, no other
    assert sum(e.lines[0].quantity for e in events) == 100
    client = admin_redis_sync(settings.redis_url_for("admin"))
    assert int(client.hget(RedisLedgerStore(client, settings.outbox_shards).ledger_key(rx.code), "r:1")) == 0
    print(f"race: attempts 200, accepted {counts['accepted']}, refused {counts['FAILED_PRECONDITION']}, "
          f"dispensed {sum(e.lines[0].quantity for e in events)} of 100 prescribed")


async def test_a_replica_killed_mid_stream_loses_no_acknowledged_sale_and_ships_no_refused_one(settings, pipeline):
    rx = published_prescription(settings, [("N02BE01-500T", 40)])
    port = free_port()
    replica = start_replica(port)
    tokens = tokens_of(settings)
    metadata = (("authorization", f"Bearer {tokens['pharmacy-a']}"),)
    acknowledged, refused, keys = set(), set(), [str(uuid.uuid4()) for _ in range(60)]
    fifteen_sold = asyncio.Event()

    async def run_all():
        async with settings.pki.aio_channel(f"127.0.0.1:{port}") as channel:
            stub = pharmacy_pb2_grpc.PharmacyServiceStub(channel)
            for n, key in enumerate(keys):
                request = pb.DispensePrescriptionRequest(
                    idempotency_key=key, code=rx.code, self_pay=True,
                    lines=[pb.DispenseLine(line_number=1, drug_code="N02BE01-500T", quantity=1, unit_price_vnd=1_050)])
                while True:  # a POS retries with the same key until it gets an answer
                    try:
                        reply = await stub.DispensePrescription(request, metadata=metadata, timeout=5)
                        acknowledged.add(reply.dispense_id)
                        if len(acknowledged) >= 15:
                            fifteen_sold.set()
                        break
                    except grpc.aio.AioRpcError as err:
                        if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                            refused.add(key)
                            break
                        await asyncio.sleep(POS_RETRY_BACKOFF_SECONDS)

    async def killer():
        nonlocal replica
        await asyncio.wait_for(fifteen_sold.wait(), timeout=120)
        replica.send_signal(signal.SIGKILL)
        replica.wait()
        replica = start_process(["-m", "services.pharmacy.app"], env={"EPRX_PHARMACY_PORT": str(port)})

    await asyncio.gather(run_all(), killer())
    stop_process(replica)
    assert len(acknowledged) == 40 and len(refused) == 20
    wait_until(lambda: outbox_drained(settings), timeout=60, message="pharmacy outbox drained")
    events = wait_until(lambda: (lambda e: e if len(e) >= 40 else None)(dispense_events(settings, rx.code)),
                        timeout=60, message="40 dispense events")
    assert sorted(e.dispense_id for e in events) == sorted(acknowledged)


async def test_when_insurance_does_not_answer_a_bhyt_sale_fails_and_nothing_is_recorded(settings, pipeline):
    rx = published_prescription(settings, [("N02BE01-500T", 20)])
    dead = free_port()  # nothing listens here
    port = free_port()
    replica = start_replica(port, EPRX_INSURANCE_ADDRESS=f"127.0.0.1:{dead}", EPRX_INSURANCE_TIMEOUT_SECONDS="1")
    metadata = (("authorization", f"Bearer {tokens_of(settings)['pharmacy-a']}"),)
    try:
        async with settings.pki.aio_channel(f"127.0.0.1:{port}") as channel:
            stub = pharmacy_pb2_grpc.PharmacyServiceStub(channel)
            line = pb.DispenseLine(line_number=1, drug_code="N02BE01-500T", quantity=5, unit_price_vnd=1_050)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.DispensePrescription(pb.DispensePrescriptionRequest(
                    idempotency_key=str(uuid.uuid4()), code=rx.code, bhyt_card="DN4010123456789", lines=[line]),
                    metadata=metadata, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            looked = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code), metadata=metadata)
            assert looked.lines[0].remaining == 20  # nothing recorded
            ok = await stub.DispensePrescription(pb.DispensePrescriptionRequest(
                idempotency_key=str(uuid.uuid4()), code=rx.code, self_pay=True, lines=[line]), metadata=metadata)
            assert ok.lines[0].remaining == 15
    finally:
        stop_process(replica)
    wait_until(lambda: outbox_drained(settings), timeout=60, message="pharmacy outbox drained")
    events = dispense_events(settings, rx.code)
    assert [e.payer for e in events] == [events_pb2.PAYER_SELF]
    claims = []
    for record in read_topic(settings.kafka_access("admin"), CLAIMS, timeout=10):
        env = decode(record.value)
        if env.WhichOneof("payload") == "claim_submitted" and payload_of(env).prescription_code == rx.code:
            claims.append(env)
    assert claims == []


async def test_a_bhyt_sale_and_its_reversal_reach_the_claims_topic(settings, pipeline):
    from tests.support.insurance_fixtures import new_member
    from services.insurance.adapters.redis_store import RedisInsuranceStore
    member = new_member(4)
    client = admin_redis_async(settings.redis_url_for("admin"), protocol=3)
    await RedisInsuranceStore(client).upsert_member(member)
    await client.aclose()
    rx = published_prescription(settings, [("B01AF01-20T", 30)], patient=member.citizen_id)
    insurance_port, internal_port, port = free_port(), free_port(), free_port()
    insurance = start_process(["-m", "services.insurance.app"], env={
        "EPRX_INSURANCE_PORT": str(insurance_port), "EPRX_INSURANCE_INTERNAL_PORT": str(internal_port)})
    wait_until(lambda: serving(insurance_port), timeout=60, message="insurance")
    # the pharmacy calls the insurer's mutual-TLS port, named by its client certificate
    replica = start_replica(port, EPRX_INSURANCE_ADDRESS=f"127.0.0.1:{internal_port}")
    metadata = (("authorization", f"Bearer {tokens_of(settings)['pharmacy-a']}"),)
    try:
        async with settings.pki.aio_channel(f"127.0.0.1:{port}") as channel:
            stub = pharmacy_pb2_grpc.PharmacyServiceStub(channel)
            sold = await stub.DispensePrescription(pb.DispensePrescriptionRequest(
                idempotency_key=str(uuid.uuid4()), code=rx.code, bhyt_card=member.citizen_id,
                lines=[pb.DispenseLine(line_number=1, drug_code="B01AF01-20T", quantity=30, unit_price_vnd=58_000)]),
                metadata=metadata)
            assert (sold.fund_total_vnd, sold.patient_total_vnd) == (696_000, 1_044_000)
            await stub.ReverseDispense(pb.ReverseDispenseRequest(dispense_id=sold.dispense_id, reason="returned"),
                                       metadata=metadata)
    finally:
        stop_process(replica)
        stop_process(insurance)
    wait_until(lambda: outbox_drained(settings), timeout=60, message="pharmacy outbox drained")

    def claim_events():
        found, seen = [], set()
        for record in read_topic(settings.kafka_access("admin"), CLAIMS, timeout=10):
            try:
                env = decode(record.value)
            except EventDecodeError:
                continue
            if getattr(payload_of(env), "claim_id", None) == sold.claim_id and env.event_id not in seen:
                seen.add(env.event_id)  # at-least-once: a copy may arrive twice
                found.append((record.key.decode(), env.WhichOneof("payload"), payload_of(env)))
        return found if len(found) >= 2 else None
    events = wait_until(claim_events, timeout=60, message="claim and its reversal")
    assert [(key, kind) for key, kind, _ in events] == [(member.member_id, "claim_submitted"),
                                                      (member.member_id, "claim_reversal_requested")]
    submitted = events[0][2]
    assert submitted.card_code == member.cards[0].card_code and submitted.lines[0].fund_vnd == 696_000
    reversed_ = [e for e in dispense_events(settings, rx.code)]
    assert [e.dispense_id for e in reversed_] == [sold.dispense_id]


RACE_ROUNDS = 100
RACE_AT_ONCE = 10   # rounds in flight together


async def test_replace_or_cancel_racing_dispenses_on_two_replicas_never_sells_past_the_latest_version(
        settings, pipeline):
    """Hole: a partly sold prescription, replaced, sold in full again under its successor (a
    narcotic for 10 tablets: 9 sold, replaced with 10, 10 more sold). Each round sells part of
    a 10-tablet narcotic, then races a replacement (or a cancel) published on Kafka against
    dispenses of the old code on two replicas, then sells what the successor allows."""
    import random
    from eprescription.common.v1 import common_pb2
    rng = random.Random(20261130)
    ports = [free_port(), free_port()]
    replicas = [start_replica(port) for port in ports]
    metadata = (("authorization", f"Bearer {tokens_of(settings)['pharmacy-a']}"),)
    narcotic = common_pb2.PRESCRIPTION_TYPE_NARCOTIC
    rounds = [signed_prescription([("N02AA01-10T", 10)], rx_type=narcotic) for _ in range(RACE_ROUNDS)]
    for rx in rounds:
        publish(settings.kafka_access("admin"), PRESCRIPTIONS, events_pb2.PrescriptionIssued(prescription=rx), rx.code)
    client = admin_redis_sync(settings.redis_url_for("admin"))
    store = RedisLedgerStore(client, settings.outbox_shards)
    wait_until(lambda: all(client.hexists(store.ledger_key(rx.code), "content") for rx in rounds), timeout=180,
               message="every round's ledger")
    outcomes = Counter()

    async def sell(stub, code, quantity):
        """The quantity sold, 0 when refused; a replacement still settling is asked again."""
        request = pb.DispensePrescriptionRequest(idempotency_key=str(uuid.uuid4()), code=code, self_pay=True,
                                                 lines=[pb.DispenseLine(line_number=1, drug_code="N02AA01-10T",
                                                                        quantity=quantity, unit_price_vnd=4_500)])
        while True:
            try:
                await stub.DispensePrescription(request, metadata=metadata, timeout=10)
                outcomes["sold"] += 1
                return quantity
            except grpc.aio.AioRpcError as error:
                assert error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND), error
                reason = next((d.reason for d in details_of(error) if hasattr(d, "reason")), error.code().name)
                outcomes[reason] += 1
                if reason not in ("NOT_FOUND", "PRESCRIPTION_AWAITING"):
                    return 0
                await asyncio.sleep(POS_RETRY_BACKOFF_SECONDS)   # a POS asks again: the successor is settling

    async def sell_until_refused(stubs, code):
        sold, turn = 0, 0
        while True:
            got = await sell(stubs[turn % 2], code, rng.choice((1, 1, 2, 3)))
            if not got:
                return sold
            sold, turn = sold + got, turn + 1

    async def round_(stubs, rx):
        first = await sell(stubs[0], rx.code, rng.randint(1, 9)) if rng.random() < 0.9 else 0
        replace = rng.random() < 0.7
        if replace:
            new = signed_prescription([("N02AA01-10T", rng.choice((10, 12))), ], rx_type=narcotic, replaces=rx.code)
            events = [(events_pb2.PrescriptionReplaced(replaced_code=rx.code, replacement=new, reason="dose"), rx.code),
                      (events_pb2.PrescriptionIssued(prescription=new), new.code)]
            rng.shuffle(events)
        else:
            events = [(events_pb2.PrescriptionCancelled(code=rx.code, reason="error", cancelled_by="01001"), rx.code)]

        async def change():
            for message, key in events:
                publish(settings.kafka_access("admin"), PRESCRIPTIONS, message, key)

        racing = await asyncio.gather(change(), *(sell_until_refused(stubs, rx.code) for _ in range(3)))
        old_total = first + sum(racing[1:])
        new_total, latest = 0, 10
        if replace:
            latest = new.lines[0].quantity
            new_total = await sell_until_refused(stubs, new.code)
        return old_total, new_total, latest

    results = []
    try:
        channels = [settings.pki.aio_channel(f"127.0.0.1:{port}") for port in ports]
        stubs = [pharmacy_pb2_grpc.PharmacyServiceStub(c) for c in channels]
        for at in range(0, RACE_ROUNDS, RACE_AT_ONCE):
            results += await asyncio.gather(*(round_(stubs, rx) for rx in rounds[at:at + RACE_AT_ONCE]))
        for channel in channels:
            await channel.close()
    finally:
        for proc in replicas:
            stop_process(proc)
    over = [(old, new, latest) for old, new, latest in results if old + new > max(latest, old)]
    assert not over, over
    replaced = [(old, new, latest) for old, new, latest in results if new]
    assert len(results) == RACE_ROUNDS and replaced and outcomes["sold"] > RACE_ROUNDS
    print(f"race: {RACE_ROUNDS} rounds, {sum(outcomes.values())} attempts {dict(outcomes)}, "
          f"dispensed {sum(o + n for o, n, _ in results)} of at most {sum(max(l, o) for o, _, l in results)}")


async def test_a_ledger_rebuilt_from_the_topics_answers_the_same_retries_and_never_sells_twice(settings, pipeline):
    """Issue 13 (2): sales, a reversal and a replacement; Redis loses every pharmacy key; the
    rebuild command restores the ledgers from the topics; the point of sale's retries get their
    first answers again (nothing sold twice) and the ledgers hold what they held."""
    rx = published_prescription(settings, [("N02BE01-500T", 100)])
    port = free_port()
    replica = start_replica(port)
    tokens = tokens_of(settings)
    metadata = (("authorization", f"Bearer {tokens['pharmacy-a']}"),)
    requests = [pb.DispensePrescriptionRequest(idempotency_key=str(uuid.uuid4()), code=rx.code, self_pay=True,
                                               lines=[pb.DispenseLine(line_number=1, drug_code="N02BE01-500T",
                                                                      quantity=q, unit_price_vnd=1_050)])
                for q in (30, 20, 10)]
    try:
        async with settings.pki.aio_channel(f"127.0.0.1:{port}") as channel:
            stub = pharmacy_pb2_grpc.PharmacyServiceStub(channel)
            first = [await stub.DispensePrescription(r, metadata=metadata) for r in requests]
            await stub.ReverseDispense(pb.ReverseDispenseRequest(dispense_id=first[1].dispense_id, reason="returned"),
                                       metadata=metadata)
            before = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code), metadata=metadata)
            assert before.lines[0].remaining == 60
            wait_until(lambda: outbox_drained(settings), timeout=60, message="every event shipped")

            client = admin_redis_sync(settings.redis_url_for("admin"))
            lost = [k for k in client.scan_iter(match="{pharmacy:*", count=1000) if not k.endswith(b":outbox")]
            client.delete(*lost)   # Redis lost every ledger, sale and retry record
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code), metadata=metadata)
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND

            rebuild = start_process(["-m", "services.pharmacy.rebuild"])
            assert rebuild.wait(timeout=120) == 0, output_of(rebuild)[-3000:]
            after = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code), metadata=metadata)
            assert [(l.prescribed, l.dispensed, l.remaining) for l in after.lines] == [(100, 40, 60)]
            again = [await stub.DispensePrescription(r, metadata=metadata) for r in requests]   # the POS retries
            assert [a.dispense_id for a in again] == [f.dispense_id for f in first]
            assert [a.lines[0].remaining for a in again] == [f.lines[0].remaining for f in first]
            after = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code), metadata=metadata)
            assert after.lines[0].remaining == 60                               # nothing sold twice
            # the reversed sale stays reversed; the last sale can still be reversed once
            reversed_again = await stub.ReverseDispense(pb.ReverseDispenseRequest(
                dispense_id=first[1].dispense_id, reason="returned"), metadata=metadata)
            assert reversed_again.lines[0].remaining == 60
            await stub.ReverseDispense(pb.ReverseDispenseRequest(dispense_id=first[2].dispense_id, reason="x"),
                                       metadata=metadata)
            final = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code), metadata=metadata)
            assert final.lines[0].remaining == 70
            # live state only: the rebuilt ledger, its sales and retry records expire together
            store = RedisLedgerStore(client, settings.outbox_shards)
            keys = [store.ledger_key(rx.code)] + [k for k in client.scan_iter(match="{pharmacy:*", count=1000)
                                                  if rx.code.encode() in k or any(
                                                      f.dispense_id.encode() in k for f in first)]
            assert len(keys) >= 1 + 3 + 3 and len({client.pexpiretime(k) for k in keys}) == 1
            assert client.pexpiretime(keys[0]) > 0
    finally:
        stop_process(replica)
