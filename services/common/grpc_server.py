"""A grpc.aio server with what every service needs: health, reflection, correlation ids,
authentication and per-method roles, a log line per call, and a graceful stop."""
from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping

import grpc
import redis.exceptions
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common import limits, metrics, reflection, tls
from services.common.auth import AuthenticationError, Authenticator, Caller, Role
from services.common.grpc_errors import FieldViolation, RpcFailure
from services.common.logging import correlation_id, new_correlation_id
from services.common.outbox import EventTooLarge
from services.common.redis_client import CLUSTER_TRANSIENT
from services.common.request_context import current_caller

log = structlog.get_logger("grpc")

CORRELATION_HEADER = "x-correlation-id"
# Probes and discovery need no credential.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
DEFAULT_MAX_CONCURRENT_RPCS = 200
# A backend that did not answer: the client may retry the same request (same idempotency key
# or client request id); it was applied at most once.
RETRYABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError, TimeoutError, *CLUSTER_TRANSIENT,
)


def _bounds_failure(found: list[limits.Violation]) -> RpcFailure:
    first = found[0]
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"{first.field}: {first.message}", first.rule,
                      tuple(FieldViolation(v.field, f"{v.rule}: {v.message}") for v in found))


def _refusal_at_the_door(request) -> RpcFailure | None:
    """A request that is not the method's message, or that breaks a declared bound."""
    if isinstance(request, _Undecodable):
        log.info("rpc.malformed_message", error=request.error)
        return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message for this method",
                          "MALFORMED_MESSAGE")
    found = limits.violations(request)
    return _bounds_failure(found) if found else None


def _unavailable(cid: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.UNAVAILABLE,
                      f"a backend did not answer; retry the same request (correlation id {cid})",
                      "BACKEND_UNAVAILABLE", metadata={"correlation_id": cid})


def _internal(cid: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INTERNAL, f"internal error (correlation id {cid})", "INTERNAL",
                      metadata={"correlation_id": cid})


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve: its full name, the generated add_*_to_server, the servicer,
    and which roles may call each method (a method not listed is refused to everyone)."""

    name: str
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    method_roles: Mapping[str, frozenset[Role]]
    audited: Mapping[str, Any] = field(default_factory=dict)   # method -> audit.Audited


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    return {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)
    return grpc.unary_unary_rpc_method_handler(refuse)


class CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator, roles: Mapping[str, frozenset[Role]],
                 audits: Mapping[str, Any] | None = None, auditor: Any = None):
        self._authenticator = authenticator
        self._roles = roles  # "/pkg.Service/Method" -> roles
        self._audits = audits or {}   # "/pkg.Service/Method" -> audit.Audited: who it concerns
        self._auditor = auditor

    def _audit_of(self, method: str):
        audited = self._audits.get(method)
        return (self._auditor, audited) if audited is not None and self._auditor is not None else None

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        metadata = _metadata(details)
        cid = metadata.get(CORRELATION_HEADER) or new_correlation_id()
        allowed = self._roles.get(method, frozenset())
        if metadata.get("authorization") is None and handler.unary_unary is not None:
            # No bearer token: the caller may be a platform service presenting its client
            # certificate (mutual TLS), which only the handshake's auth context shows.
            return grpc.unary_unary_rpc_method_handler(
                _wrap(handler.unary_unary, method, None, cid, allowed, self._audit_of(method)),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer)
        try:
            caller = self._authenticator.authenticate(metadata.get("authorization"))
        except AuthenticationError as exc:
            log.warning("rpc.unauthenticated", method=method, reason=str(exc), correlation_id=cid)
            _count_denied(method, grpc.StatusCode.UNAUTHENTICATED)
            return _deny(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if caller.role not in allowed:
            log.warning("rpc.forbidden", method=method, role=caller.role.value, caller=caller.identity,
                        correlation_id=cid)
            _count_denied(method, grpc.StatusCode.PERMISSION_DENIED)
            return _deny(grpc.StatusCode.PERMISSION_DENIED,
                         f"role {caller.role.value} may not call {method.rsplit('/', 1)[-1]}")
        if handler.unary_unary is None:
            return handler  # streaming methods are not part of the platform's APIs
        return grpc.unary_unary_rpc_method_handler(
            _wrap(handler.unary_unary, method, caller, cid, allowed, self._audit_of(method)),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


@dataclass(frozen=True)
class _Undecodable:
    """Bytes that are not the method's request message: refused as INVALID_ARGUMENT, not
    left to the framework's INTERNAL."""
    error: str


def _tolerant(deserializer):
    def decode(data: bytes):
        try:
            return deserializer(data) if deserializer else data
        except Exception as exc:  # a DecodeError, or worse: the bytes are the client's problem
            return _Undecodable(f"{type(exc).__name__}: {exc}"[:200])
    return decode


def _count_denied(method: str, code: grpc.StatusCode) -> None:
    service, name = metrics.split_method(method)
    metrics.GRPC_SERVER_STARTED.labels("unary", service, name).inc()
    metrics.GRPC_SERVER_HANDLED.labels("unary", service, name, code.name).inc()


def _certified_caller(context: grpc.aio.ServicerContext) -> Caller | None:
    service = tls.service_of(context.auth_context())
    return Caller(key_id=f"cert:{service}", role=Role.SERVICE, identity=service) if service else None


@functools.lru_cache(maxsize=256)
def _method_metrics(method: str):
    """A method's counters and histogram, looked up once (not per call: a label lookup per
    status code per call showed in the profiles)."""
    service, name = metrics.split_method(method)
    handled = {code: metrics.GRPC_SERVER_HANDLED.labels("unary", service, name, code.name) for code in grpc.StatusCode}
    return (handled, metrics.GRPC_SERVER_SECONDS.labels("unary", service, name),
            metrics.GRPC_SERVER_STARTED.labels("unary", service, name))


class AccessLog:
    """Which answered calls get an access line: every call that did not end OK, and one OK call
    in `every` (the metrics count them all). A line says how many OK calls it stands for."""

    def __init__(self, every: int = 1) -> None:
        self.every = max(1, every)
        self._ok = 0

    def wants(self, code: grpc.StatusCode) -> bool:
        if code != grpc.StatusCode.OK:
            return True
        self._ok += 1
        return self._ok % self.every == 0


ACCESS_LOG = AccessLog()   # create_server sets how often


def _wrap(behaviour, method: str, caller: Caller | None, cid: str, allowed: frozenset[Role], audit=None):
    """`caller` None: no bearer token came, so the client certificate must name a service.
    `audit`: (auditor, audited) for a method that reads or changes patient data: the call is
    recorded as it ends, before its answer leaves (services/common/audit.py)."""
    handled, seconds, started_counter = _method_metrics(method)

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        who = caller or _certified_caller(context)
        if who is None or who.role not in allowed:
            code = grpc.StatusCode.UNAUTHENTICATED if who is None else grpc.StatusCode.PERMISSION_DENIED
            log.warning("rpc.unauthenticated" if who is None else "rpc.forbidden", method=method, correlation_id=cid)
            _count_denied(method, code)
            await context.abort(code, "missing authorization metadata (expected 'Bearer <token>')" if who is None
                                else f"service {who.identity} may not call {method.rsplit('/', 1)[-1]}")
        return await _call(who, request, context)

    async def _call(caller: Caller, request: Any, context: grpc.aio.ServicerContext) -> Any:
        cid_token = correlation_id.set(cid)
        caller_token = current_caller.set(caller)
        started_counter.inc()
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        failure = None

        async def record(outcome: grpc.StatusCode, response=None) -> None:
            if audit is not None:
                auditor, audited = audit
                await auditor.record(method=method, audited=audited, caller=caller, request=request,
                                     response=response, outcome=outcome.name, correlation_id=cid)
        try:
            await context.send_initial_metadata(((CORRELATION_HEADER, cid),))
            failure = _refusal_at_the_door(request)
            if failure is None:
                response = await behaviour(request, context)
                await record(grpc.StatusCode.OK, response)   # no record kept, no answer given
                return response
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            await _record_refusal(record, code, method)
            raise
        except EventTooLarge as exc:
            failure = RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(exc), "EVENT_TOO_LARGE")
        except RETRYABLE as exc:
            log.warning("rpc.backend_unavailable", method=method, error=repr(exc)[:300])
            failure = _unavailable(cid)
        except Exception:
            log.exception("rpc.crashed", method=method)
            failure = _internal(cid)
        finally:
            if failure is not None:
                code = failure.code
            elapsed = time.perf_counter() - started
            handled[code].inc()
            seconds.observe(elapsed)
            if ACCESS_LOG.wants(code):
                log.info("rpc", method=method, code=code.name, caller=caller.identity, role=caller.role.value,
                         ms=round(elapsed * 1000, 2), stands_for=ACCESS_LOG.every if code == grpc.StatusCode.OK else 1)
            current_caller.reset(caller_token)
            correlation_id.reset(cid_token)
        await _record_refusal(record, failure.code, method)
        await context.abort_with_status(failure.to_status())
    return call


async def _record_refusal(record, code: grpc.StatusCode, method: str) -> None:
    """A refused call is recorded too; if the record cannot be kept, the refusal still stands."""
    try:
        await record(code)
    except Exception as exc:
        log.error("audit.unrecorded", method=method, outcome=code.name, error=repr(exc)[:200])


async def create_server(address: str, bindings: Iterable[ServiceBinding], authenticator: Authenticator, *,
                        max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
                        credentials: grpc.ServerCredentials | None = None,
                        mutual_tls: tuple[str, grpc.ServerCredentials] | None = None,
                        auditor: Any = None, access_log_every: int = 1,
                        ) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Builds and binds the server; returns it with the bound port (pass port 0 in tests).
    `credentials`: TLS (None: plaintext, for in-process tests and the explicit development
    setting). `mutual_tls`: a second address where only platform services connect, each
    identified by its client certificate. Beyond `max_concurrent_rpcs` calls in flight, a
    call is refused with RESOURCE_EXHAUSTED."""
    ACCESS_LOG.every = max(1, access_log_every)
    bindings = list(bindings)
    roles = {f"/{b.name}/{m}": r for b in bindings for m, r in b.method_roles.items()}
    audits = {f"/{b.name}/{m}": a for b in bindings for m, a in b.audited.items()}
    server = grpc.aio.server(interceptors=[CallInterceptor(authenticator, roles, audits, auditor)],
                             maximum_concurrent_rpcs=max_concurrent_rpcs,
                             options=[("grpc.so_reuseport", 0),
                                      ("grpc.max_receive_message_length", limits.MAX_MESSAGE_BYTES),
                                      ("grpc.max_send_message_length", limits.MAX_MESSAGE_BYTES)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for b in bindings:
        b.add_to_server(b.servicer, server)
    reflection.enable([b.name for b in bindings] + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name],
                      server)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    if mutual_tls is not None and server.add_secure_port(*mutual_tls) == 0:
        raise OSError(f"could not bind gRPC server to {mutual_tls[0]}")
    return server, port, health_servicer


def is_serving(address: str, pki: tls.Pki | None = None, timeout: float = 1.0) -> bool:
    """A blocking health check, for supervisors and tests waiting on a process."""
    try:
        with (pki.channel(address) if pki else grpc.insecure_channel(address)) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


async def mark_serving(health_servicer: health.aio.HealthServicer, names: Iterable[str]) -> None:
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


Probe = Callable[[], Awaitable[object]]   # raises (or times out) when a backend the service needs is not there


async def watch_readiness(health_servicer: health.aio.HealthServicer, names: Iterable[str], probe: Probe, *,
                          interval: float = 2.0, timeout: float = 2.0) -> None:
    """Reports NOT_SERVING while `probe` fails and SERVING again once it succeeds, so that a
    load balancer or a cluster sends no calls that could only end UNAVAILABLE."""
    names = ["", *names]
    serving = True
    while True:
        try:
            await asyncio.wait_for(probe(), timeout)
            ok, reason = True, ""
        except Exception as exc:  # whatever the backend says, the answer is "not now"
            ok, reason = False, f"{type(exc).__name__}: {exc}"[:200]
        if ok != serving:
            status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in names:
                await health_servicer.set(name, status)
            serving = ok
            (log.info if ok else log.warning)("service.readiness", serving=ok, reason=reason)
        await asyncio.sleep(interval)


async def health_only_server(address: str, health_servicer: health.aio.HealthServicer
                             ) -> tuple[grpc.aio.Server, int]:
    """A plaintext server with the health service only, sharing the main server's statuses:
    for a kubelet's native gRPC probes, which speak no TLS. Nothing else answers there.
    Returns it started, with its bound port."""
    server = grpc.aio.server(maximum_concurrent_rpcs=16, options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind the health port {address}")
    await server.start()
    return server, port


@dataclass
class Serving:
    """A started server: its health statuses and the readiness watcher, until `stop`."""
    server: grpc.aio.Server
    health_servicer: health.aio.HealthServicer
    watcher: asyncio.Task | None

    async def stop(self, grace_seconds: float = 10.0,
                   on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
        """Reports NOT_SERVING, lets calls in flight finish within the grace period, then stops."""
        if self.watcher is not None:
            self.watcher.cancel()
        log.info("grpc.stopping", grace_seconds=grace_seconds)
        await self.health_servicer.enter_graceful_shutdown()
        await self.server.stop(grace_seconds)
        if on_stop is not None:
            await on_stop()
        log.info("grpc.stopped")


async def start_serving(server: grpc.aio.Server, health_servicer: health.aio.HealthServicer,
                        names: Iterable[str], probe: Probe | None = None) -> Serving:
    """Starts and reports SERVING (NOT_SERVING while `probe` fails)."""
    names = list(names)
    await server.start()
    await mark_serving(health_servicer, names)
    log.info("grpc.serving")
    watcher = asyncio.create_task(watch_readiness(health_servicer, names, probe)) if probe else None
    return Serving(server, health_servicer, watcher)
