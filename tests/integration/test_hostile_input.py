"""Requests a careless or hostile client sends, over a real channel: each gets a clear,
specific refusal, nothing is recorded, and the service goes on serving."""
from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter

import grpc
from eprescription.pharmacy.v1 import pharmacy_pb2 as pb
from eprescription.pharmacy.v1 import pharmacy_pb2_grpc
from eprescription.prescribing.v1 import prescribing_pb2, prescribing_pb2_grpc

from services.common.auth import Authenticator, load_tokens, write_credentials
from services.common.grpc_errors import details_of
from services.common.grpc_server import create_server, mark_serving
from services.common.limits import MAX_MESSAGE_BYTES
from services.common.redis_client import connect
from services.pharmacy.adapters.grpc_api import SERVICE_NAME, PharmacyServicer, binding
from services.pharmacy.bootstrap import bootstrap
from services.pharmacy.config import Settings
from services.prescribing.adapters.grpc_api import binding as prescribing_binding
from tests.support import factories as f
from tests.support import random_citizen_id
from tests.support.pharmacy_fixtures import ready, sale
from tests.support.prescribing_fixtures import auth, in_process_server
from tests.support.rpc import fields_of, reason_of, refused


def issue(**draft):
    return prescribing_pb2.IssuePrescriptionRequest(
        client_request_id=str(uuid.uuid4()), draft=f.draft(patient=f.patient(citizen_id=random_citizen_id()), **draft))


async def test_a_megabyte_of_advice_is_refused_by_name_and_the_next_prescription_goes_through(prescribing):
    stub, tokens, _, _ = prescribing
    err = await refused(stub.IssuePrescription(issue(advice="x" * 1_100_000), metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["draft.advice"] and reason_of(err) == "TEXT_TOO_LONG"
    assert "at most 2000 characters" in err.details()
    reply = await stub.IssuePrescription(issue(), metadata=auth(tokens, "prescriber-hospital-a"))
    assert reply.prescription.code


async def test_a_message_past_the_size_limit_is_refused_before_it_is_read(prescribing):
    stub, tokens, _, _ = prescribing
    err = await refused(stub.IssuePrescription(issue(advice="x" * (MAX_MESSAGE_BYTES + 1)),
                                               metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "larger than max" in err.details()


async def test_an_exponent_dose_is_a_format_error_not_a_frozen_service(prescribing):
    stub, tokens, _, _ = prescribing
    for dose in ("1E+99999", "1e999999999", "NaN", "9" * 12):
        err = await refused(stub.IssuePrescription(issue(lines=[f.line(dose=dose)]),
                                                   metadata=auth(tokens, "prescriber-hospital-a")),
                            grpc.StatusCode.INVALID_ARGUMENT)
        assert "draft.lines[0].dose_per_administration" in fields_of(err), (dose, err.details())


async def test_counts_and_numbers_beyond_their_bounds_name_every_field(prescribing):
    stub, tokens, _, _ = prescribing
    request = issue(lines=[f.line(quantity=10**15, days=10**6)] + [f.line()] * 50)
    request.client_request_id = "k" * 500
    err = await refused(stub.IssuePrescription(request, metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert set(fields_of(err)) == {"client_request_id", "draft.lines"}
    one = issue(lines=[f.line(quantity=10**15, days=10**6)])
    err = await refused(stub.IssuePrescription(one, metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["draft.lines[0].quantity", "draft.lines[0].days"] and reason_of(err) == "OUT_OF_RANGE"


async def test_a_price_that_would_overflow_is_refused_and_nothing_is_sold(pharmacy):
    stub, tokens, _, handlers = pharmacy
    rx = await ready(handlers)
    err = await refused(stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 1, 2**62, False)),
                                                  metadata=auth(tokens, "pharmacy-a")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["lines[0].unit_price_vnd"]
    looked = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code), metadata=auth(tokens, "pharmacy-a"))
    assert looked.lines[0].remaining == 20


async def test_redis_out_of_reach_is_unavailable_and_says_retry(tmp_path):
    settings = Settings.from_env()
    unreachable = dataclasses.replace(settings.common, redis_url="redis://127.0.0.1:1/0", redis_socket_timeout=1.0)
    handlers, close = bootstrap(settings, redis_client=connect(unreachable, "pharmacy"))
    write_credentials(tmp_path)
    tokens = load_tokens(tmp_path / "tokens.json")
    async with in_process_server(binding(PharmacyServicer(handlers)), tmp_path) as channel:
        stub = pharmacy_pb2_grpc.PharmacyServiceStub(channel)
        err = await refused(stub.LookupPrescription(pb.LookupPrescriptionRequest(code="01001abcdefg-c"),
                                                    metadata=auth(tokens, "pharmacy-a")),
                            grpc.StatusCode.UNAVAILABLE)
        assert reason_of(err) == "BACKEND_UNAVAILABLE" and "retry" in err.details()
        assert "6380" not in err.details() and "Error" not in err.details()
    await close()


class Exploding(prescribing_pb2_grpc.PrescribingServiceServicer):
    async def IssuePrescription(self, request, context):
        raise RuntimeError("patient 001203004567 broke the handler")


async def test_an_unexpected_failure_is_internal_with_the_correlation_id_only(tmp_path):
    write_credentials(tmp_path)
    tokens = load_tokens(tmp_path / "tokens.json")
    async with in_process_server(prescribing_binding(Exploding()), tmp_path) as channel:
        stub = prescribing_pb2_grpc.PrescribingServiceStub(channel)
        metadata = auth(tokens, "prescriber-hospital-a") + (("x-correlation-id", "corr-test-1"),)
        err = await refused(stub.IssuePrescription(issue(), metadata=metadata), grpc.StatusCode.INTERNAL)
    assert err.details() == "internal error (correlation id corr-test-1)"
    assert reason_of(err) == "INTERNAL" and details_of(err)[0].metadata["correlation_id"] == "corr-test-1"


async def test_a_thousand_simultaneous_sales_on_one_process_never_oversell(pharmacy, tmp_path):
    """One pharmacy process with 16 calls in flight at most and 4 Redis connections: every
    answer is a sale, a refusal of the rule, RESOURCE_EXHAUSTED or UNAVAILABLE, and the
    ledger holds exactly what the accepted sales took."""
    *_, shared = pharmacy
    settings = Settings.from_env()
    small = dataclasses.replace(settings.common, redis_pool_size=4, redis_pool_timeout=0.2)
    handlers, close = bootstrap(settings, redis_client=connect(small, "pharmacy"), insurance=shared.deps.insurance)
    rx = await ready(handlers, ("N02BE01-500T", 300))
    write_credentials(tmp_path)
    tokens = load_tokens(tmp_path / "tokens.json")
    server, port, health = await create_server("127.0.0.1:0", [binding(PharmacyServicer(handlers))],
                                               Authenticator.from_file(tmp_path / "credentials.json"),
                                               max_concurrent_rpcs=16)
    await server.start()
    await mark_serving(health, [SERVICE_NAME])
    # Ten connections, as ten POS terminals: one HTTP/2 connection alone would queue its calls
    # at the client and never show the server more than its stream limit.
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(10)]
    stubs = [pharmacy_pb2_grpc.PharmacyServiceStub(c) for c in channels]

    async def one(i):
        try:
            await stubs[i % 10].DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 1, 1_000, False)),
                                                     metadata=auth(tokens, f"pharmacy-{'ab'[i % 2]}"), timeout=60)
            return "OK"
        except grpc.aio.AioRpcError as err:
            reason = reason_of(err) if err.code() == grpc.StatusCode.FAILED_PRECONDITION else ""
            return f"{err.code().name}{':' + reason if reason else ''}"

    try:
        answers = Counter(await asyncio.gather(*(one(i) for i in range(1000))))
        looked = await stubs[0].LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code),
                                                   metadata=auth(tokens, "pharmacy-a"))
    finally:
        for c in channels:
            await c.close()
        await server.stop(0)
        await close()
    allowed = {"OK", "FAILED_PRECONDITION:QUANTITY_EXCEEDS_REMAINING", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}
    assert set(answers) <= allowed, answers
    assert 0 < answers["OK"] <= 300, answers
    assert looked.lines[0].dispensed == answers["OK"] and looked.lines[0].remaining == 300 - answers["OK"]
