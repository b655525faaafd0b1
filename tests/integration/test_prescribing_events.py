"""What the prescribing service puts on Kafka, and what it builds from it: each accepted
prescription exactly once (after a relay crash too), unique codes from two replicas at
once, and read models that a replay rebuilds to the same state."""
import asyncio
import signal
import uuid
from collections import Counter

import pytest
from eprescription.events.v1 import events_pb2
from eprescription.prescribing.v1 import prescribing_pb2 as pb
from eprescription.prescribing.v1 import prescribing_pb2_grpc
from kafka import KafkaProducer

from services.common.auth import Caller, Role, load_tokens
from services.common.events import decode, new_envelope, payload_of, to_record
from services.common.topics import DISPENSES, PRESCRIPTIONS
from services.kernel.calendar import utc_now
from services.prescribing.adapters.grpc_api import issue_command
from services.prescribing.bootstrap import bootstrap
from services.prescribing.domain.commands import CancelPrescription
from tests.support import (
    eventually,
    free_port,
    random_citizen_id,
    read_topic,
    serving,
    wait_until,
)
from tests.support import admin_redis_async, admin_redis_sync, factories as f
from tests.support.prescribing_fixtures import (
    output_of,
    prescribing_settings,
    start_process,
    stop_process,
)

HOSPITAL_A = Caller("test", Role.PRESCRIBER, "01001")


@pytest.fixture
async def handlers():
    settings = prescribing_settings()
    client = admin_redis_async(settings.common.redis_url_for("admin"), protocol=3)
    h, close = bootstrap(settings, redis_client=client)
    yield h, settings, client
    await close()


def outbox_empty(settings):
    client = admin_redis_sync(settings.common.redis_url_for("admin"))
    from services.prescribing.adapters.redis_store import RedisPrescriptionStore
    streams = RedisPrescriptionStore(client, settings.common.outbox_shards).layout.streams()
    return sum(client.xlen(s) for s in streams) == 0


def issued_envelopes(settings, codes):
    out = []
    for record in read_topic(settings.common.kafka_access("admin"), PRESCRIPTIONS, at_least=len(codes)):
        env = decode(record.value)
        if env.WhichOneof("payload") == "prescription_issued" and env.key in codes:
            out.append(env)
    return out


async def test_each_accepted_prescription_reaches_kafka_once_even_when_the_relay_dies(handlers):
    h, settings, _ = handlers
    codes = set()
    for _ in range(20):
        request = pb.IssuePrescriptionRequest(client_request_id=str(uuid.uuid4()),
                                              draft=f.draft(patient=f.patient(citizen_id=random_citizen_id())))
        reply = await h.issue(issue_command(request, HOSPITAL_A.identity))
        assert (await h.issue(issue_command(request, HOSPITAL_A.identity))) == reply  # a retry: no second event
        codes.add(reply.prescription.code)

    doomed = start_process(["-m", "services.common.outbox_relay", "prescribing"],
                           env={"EPRX_CRASH_AT": "relay.after_produce"})
    assert doomed.wait(timeout=60) == -signal.SIGKILL
    survivor = start_process(["-m", "services.common.outbox_relay", "prescribing"])
    wait_until(lambda: outbox_empty(settings), timeout=60, message="prescribing outbox drained")
    stop_process(survivor)

    envelopes = issued_envelopes(settings, codes)
    unique = {env.event_id: env for env in envelopes}
    assert Counter(env.key for env in unique.values()) == Counter({code: 1 for code in codes})
    assert len(envelopes) > len(unique)  # the crash shipped some twice; the event id tells them apart
    for env in unique.values():
        assert payload_of(env).prescription.code == env.key


async def test_two_replicas_issuing_a_thousand_at_once_give_a_thousand_codes(settings):
    ports = [free_port(), free_port()]
    replicas = [start_process(["-m", "services.prescribing.app"], env={"EPRX_PRESCRIBING_PORT": str(p)})
                for p in ports]
    try:
        for port in ports:
            wait_until(lambda port=port: serving(port), timeout=60, message=f"replica on {port}")
        token = load_tokens(settings.credentials_file.parent / "tokens.json")["prescriber-hospital-a"]
        metadata = (("authorization", f"Bearer {token}"),)
        channels = [settings.pki.aio_channel(f"127.0.0.1:{p}") for p in ports]
        stubs = [prescribing_pb2_grpc.PrescribingServiceStub(c) for c in channels]
        gate = asyncio.Semaphore(100)

        async def issue(i):
            async with gate:
                request = pb.IssuePrescriptionRequest(
                    client_request_id=str(uuid.uuid4()), draft=f.draft(patient=f.patient(citizen_id=random_citizen_id())))
                reply = await stubs[i % 2].IssuePrescription(request, metadata=metadata, timeout=60)
                return reply.prescription.code

        codes = await asyncio.gather(*(issue(i) for i in range(1000)))
        for c in channels:
            await c.close()
    finally:
        outputs = [stop_process(r) for r in replicas]
    assert all(r.returncode == 0 for r in replicas), outputs
    assert len(set(codes)) == 1000
    assert all(c.startswith("01001") and c.endswith("-c") for c in codes)


async def test_a_replay_rebuilds_the_read_models_to_the_same_state(handlers):
    h, settings, client = handlers
    relay = start_process(["-m", "services.common.outbox_relay", "prescribing"])
    worker = start_process(["-m", "services.prescribing.worker", "worker", "-l", "warn", "--without-web"])
    try:
        patients = [random_citizen_id() for _ in range(3)]
        codes = []
        for i, patient in enumerate(patients * 2):
            request = pb.IssuePrescriptionRequest(client_request_id=str(uuid.uuid4()), draft=f.draft(
                [f.line("C08CA01-5T", quantity=30, per_day=1, days=30)], diagnoses=(("I10", "Hypertension"),),
                patient=f.patient(citizen_id=patient)), override_reason="test: duplicates on purpose")
            codes.append((await h.issue(issue_command(request, HOSPITAL_A.identity))).prescription.code)
        await h.cancel(CancelPrescription(HOSPITAL_A.identity, codes[0], "error"))
        producer = KafkaProducer(**settings.common.kafka_access("admin").kwargs(), acks="all")
        for code, qty in ((codes[1], 10), (codes[2], 30)):
            event = events_pb2.MedicationDispensed(dispense_id=str(uuid.uuid4()), prescription_code=code,
                                                   pharmacy_code="PH0001", lines=[events_pb2.DispensedLine(
                                                       line_number=1, drug_code="C08CA01-5T", quantity=qty)])
            record = to_record(new_envelope(event, key=code, producer="pharmacy", correlation_id="c",
                                            occurred_at=utc_now()), DISPENSES)
            producer.send(DISPENSES, key=record.key, value=record.value, headers=list(record.headers))
        producer.flush()
        producer.close()

        async def snapshot():
            state = {}
            for patient in patients:
                state[patient] = await h.deps.store.medications(f"cccd:{patient}")
            for code in codes:
                stored = await h.deps.store.get(code)
                state[code] = (stored.recorded_status, stored.dispensed)
            return state

        async def projected():
            state = await snapshot()  # every condition on this one reading of the read models
            entries = {m.prescription_code: m for p in patients for m in state[p]}
            done = (len(entries) == 6 and entries[codes[0]].status.value == "cancelled"
                    and entries[codes[1]].dispensed == 10 and entries[codes[2]].dispensed == 30
                    and state[codes[1]][1] == {1: 10} and state[codes[2]][1] == {1: 30})
            return state if done else None

        before = await eventually(projected, timeout=90, message="projections")
    finally:
        for proc in (relay, worker):
            stop_process(proc)

    replay = start_process(["-m", "services.prescribing.replay"])
    replay.wait(timeout=300)
    output = output_of(replay)
    assert replay.returncode == 0, output[-3000:]
    assert "replayed" in output
    assert await snapshot() == before
