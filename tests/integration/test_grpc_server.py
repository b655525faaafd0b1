"""The common gRPC server over a real channel: health, reflection, authentication, roles."""
import asyncio
from collections import Counter

import grpc
import pytest
import redis.exceptions
from eprescription.prescribing.v1 import prescribing_pb2, prescribing_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.auth import Authenticator, load_tokens, write_credentials
from services.common.grpc_server import create_server, health_only_server, mark_serving, watch_readiness
from services.common.request_context import caller
from services.prescribing.adapters.grpc_api import SERVICE_NAME, binding
from tests.support import eventually


class WhoAmI(prescribing_pb2_grpc.PrescribingServiceServicer):
    """Answers with the caller the interceptor authenticated."""

    async def IssuePrescription(self, request, context):
        who = caller()
        return prescribing_pb2.IssuePrescriptionResponse(
            prescription={"facility_code": who.identity, "advice": who.role.value})


@pytest.fixture
async def server(tmp_path):
    write_credentials(tmp_path)
    server, port, health = await create_server(
        "127.0.0.1:0", [binding(WhoAmI())], Authenticator.from_file(tmp_path / "credentials.json"))
    await server.start()
    await mark_serving(health, [SERVICE_NAME])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, load_tokens(tmp_path / "tokens.json")
    await server.stop(0)


def bearer(token):
    return (("authorization", f"Bearer {token}"),)


async def test_health_answers_serving_without_a_credential(server):
    channel, _ = server
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE_NAME):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(server):
    channel, _ = server
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(iter([request])):
        names = {s.name for s in reply.list_services_response.service}
        break
    assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    describe = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)
    async for reply in stub.ServerReflectionInfo(iter([describe])):
        assert reply.file_descriptor_response.file_descriptor_proto  # a generic client can build calls
        break


def _symbols():
    """Every service, method, request and response message of the three APIs, and an enum."""
    from eprescription.insurance.v1 import insurance_pb2
    from eprescription.pharmacy.v1 import pharmacy_pb2
    symbols = ["eprescription.common.v1.PrescriptionStatus"]
    for module in (prescribing_pb2, pharmacy_pb2, insurance_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            symbols.append(service.full_name)
            for method in service.methods:
                symbols += [method.full_name, method.input_type.full_name, method.output_type.full_name]
    return symbols


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
async def test_reflection_resolves_every_symbol_a_generic_client_asks_for(server, version):
    """grpcurl describe Service.Method and ghz without --proto ask for method symbols; v1 is
    what current clients try first."""
    channel, _ = server
    call = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    symbols = _symbols()
    asked = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in symbols]
    asked.append(reflection_pb2.ServerReflectionRequest(file_containing_symbol="eprescription.pharmacy.v1.Nope.X"))
    replies = [reply async for reply in call(iter(asked))]
    assert len(replies) == len(symbols) + 1
    for symbol, reply in zip(symbols, replies):
        assert reply.file_descriptor_response.file_descriptor_proto, symbol
    assert replies[-1].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    listed = [r async for r in call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]
    assert f"grpc.reflection.{version}.ServerReflection" in {s.name for s in listed[0].list_services_response.service}


@pytest.mark.parametrize("metadata, detail", [
    ((), "missing authorization"),
    ((("authorization", "Bearer eprx_0123456789abcdef_wrong"),), "unknown credential"),
    ((("authorization", "Token abc"),), "Bearer"),
])
async def test_a_call_without_a_valid_credential_is_unauthenticated(server, metadata, detail):
    channel, _ = server
    stub = prescribing_pb2_grpc.PrescribingServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetPrescription(prescribing_pb2.GetPrescriptionRequest(code="01234ab3k9x2-c"),
                                   metadata=metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert detail in err.value.details()


async def test_a_caller_outside_the_method_role_is_denied(server):
    channel, tokens = server
    stub = prescribing_pb2_grpc.PrescribingServiceStub(channel)
    for label in ("pharmacy-a", "insurer", "operator"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.IssuePrescription(prescribing_pb2.IssuePrescriptionRequest(), metadata=bearer(tokens[label]))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "may not call IssuePrescription" in err.value.details()


async def test_the_right_role_gets_through_as_itself_and_the_correlation_id_comes_back(server):
    channel, tokens = server
    stub = prescribing_pb2_grpc.PrescribingServiceStub(channel)
    call = stub.IssuePrescription(prescribing_pb2.IssuePrescriptionRequest(),
                                  metadata=bearer(tokens["prescriber-hospital-a"]) + (("x-correlation-id", "abc-42"),))
    reply = await call
    assert (reply.prescription.facility_code, reply.prescription.advice) == ("01001", "prescriber")
    assert ("x-correlation-id", "abc-42") in tuple(await call.initial_metadata())


class Held(prescribing_pb2_grpc.PrescribingServiceServicer):
    """Holds every call until the test lets them go."""

    def __init__(self):
        self.release = asyncio.Event()

    async def IssuePrescription(self, request, context):
        await self.release.wait()
        return prescribing_pb2.IssuePrescriptionResponse()


async def test_calls_beyond_the_concurrency_limit_are_resource_exhausted(tmp_path):
    write_credentials(tmp_path)
    held = Held()
    server, port, _ = await create_server("127.0.0.1:0", [binding(held)],
                                          Authenticator.from_file(tmp_path / "credentials.json"),
                                          max_concurrent_rpcs=3)
    await server.start()
    token = load_tokens(tmp_path / "tokens.json")["prescriber-hospital-a"]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(3)]
    try:
        async def one(i):
            try:
                await prescribing_pb2_grpc.PrescribingServiceStub(channels[i % 3]).IssuePrescription(
                    prescribing_pb2.IssuePrescriptionRequest(), metadata=bearer(token))
                return "OK"
            except grpc.aio.AioRpcError as err:
                return err.code().name
        calls = [asyncio.create_task(one(i)) for i in range(30)]
        await eventually(lambda: _done_at_least(calls, 27), timeout=30, message="27 calls refused")
        held.release.set()
        answers = Counter(await asyncio.gather(*calls))
    finally:
        for c in channels:
            await c.close()
        await server.stop(0)
    assert answers == Counter({"OK": 3, "RESOURCE_EXHAUSTED": 27})


async def test_health_follows_the_backend_probe(tmp_path):
    write_credentials(tmp_path)
    backend = {"up": False}

    async def probe():
        if not backend["up"]:
            raise ConnectionError("Redis is not there")

    other, port, health_servicer = await create_server(
        "127.0.0.1:0", [binding(WhoAmI())], Authenticator.from_file(tmp_path / "credentials.json"))
    await other.start()
    await mark_serving(health_servicer, [SERVICE_NAME])
    watcher = asyncio.create_task(watch_readiness(health_servicer, [SERVICE_NAME], probe, interval=0.05))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as watched:
            stub = health_pb2_grpc.HealthStub(watched)

            async def status():
                return (await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))).status
            await eventually(lambda: _is(status, health_pb2.HealthCheckResponse.NOT_SERVING), timeout=10,
                             message="NOT_SERVING while the backend is down")
            backend["up"] = True
            await eventually(lambda: _is(status, health_pb2.HealthCheckResponse.SERVING), timeout=10,
                             message="SERVING once it is back")
    finally:
        watcher.cancel()
        await other.stop(0)


async def test_the_plaintext_health_port_answers_the_probes_and_nothing_else(tmp_path):
    """A kubelet's gRPC probe speaks no TLS: the health port carries the statuses of the TLS
    server, and no call of the service gets through it."""
    write_credentials(tmp_path)
    main, _, health_servicer = await create_server(
        "127.0.0.1:0", [binding(WhoAmI())], Authenticator.from_file(tmp_path / "credentials.json"))
    await main.start()
    probes, port = await health_only_server("127.0.0.1:0", health_servicer)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await mark_serving(health_servicer, [SERVICE_NAME])
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            await health_servicer.enter_graceful_shutdown()   # stopping: the probe sees it at once
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await prescribing_pb2_grpc.PrescribingServiceStub(channel).IssuePrescription(
                    prescribing_pb2.IssuePrescriptionRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await probes.stop(0)
        await main.stop(0)


async def test_a_redis_ping_is_the_probe_a_service_uses(tmp_path, settings):
    import dataclasses

    from services.common.redis_client import connect
    gone = connect(dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0", redis_socket_timeout=0.5), "admin")
    with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        redis.exceptions.RedisClusterException)):   # a cluster client finds no node
        await gone.ping()
    here = connect(settings, "admin")
    assert await here.ping()
    await gone.aclose()
    await here.aclose()


async def _is(status, expected):
    return await status() == expected


async def _done_at_least(tasks, n):
    return sum(t.done() for t in tasks) >= n


def _handled(method, code):
    from prometheus_client import REGISTRY
    value = REGISTRY.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": SERVICE_NAME, "grpc_method": method, "grpc_code": code})
    return value or 0.0


async def test_every_answer_is_counted_by_method_and_code(server):
    """The metrics operators alert on: each call, refused or served, under its status code."""
    channel, tokens = server
    stub = prescribing_pb2_grpc.PrescribingServiceStub(channel)
    before = {code: _handled(m, code) for m, code in (("IssuePrescription", "OK"),
                                                      ("GetPrescription", "UNAUTHENTICATED"))}
    await stub.IssuePrescription(prescribing_pb2.IssuePrescriptionRequest(),
                                 metadata=bearer(tokens["prescriber-hospital-a"]))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetPrescription(prescribing_pb2.GetPrescriptionRequest(code="01234ab3k9x2-c"))
    assert _handled("IssuePrescription", "OK") == before["OK"] + 1
    assert _handled("GetPrescription", "UNAUTHENTICATED") == before["UNAUTHENTICATED"] + 1
