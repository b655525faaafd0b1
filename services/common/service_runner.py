"""Runs a service's gRPC server: settings, logging, server, graceful stop; alone in its process
(run_service) or beside the service's relay and worker (services/common/combined.py)."""
from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

import structlog

from services.common import eventloop, metrics
from services.common.audit import Auditor
from services.common.outbox import OutboxLayout
from services.common.redis_client import connect
from services.common.auth import Authenticator
from services.common.config import CommonSettings
from services.common.grpc_server import (Probe, ServiceBinding, Serving, create_server, health_only_server,
                                         start_serving)
from services.common.logging import configure_logging, load_mask_key

# What a service brings up: its bindings, what to close on stop, and a probe of the backends
# it needs (the health status is NOT_SERVING while the probe fails).
BindingsFactory = Callable[[], Awaitable[tuple[Sequence[ServiceBinding], Callable[[], Awaitable[None]] | None,
                                               Probe | None]]]


@dataclass(frozen=True)
class ServiceSpec:
    """What a service's gRPC server is: its name, settings, port and bindings; `mutual_tls_port`:
    also a port for platform services, each identified by its certificate."""
    name: str
    settings: CommonSettings
    port: int
    make_bindings: BindingsFactory
    host: str = "127.0.0.1"
    mutual_tls_port: int | None = None


def configure(spec: ServiceSpec) -> None:
    """The process's logging and event loop, before the loop is made."""
    settings = spec.settings
    configure_logging(spec.name, fmt=settings.log_format, level=settings.log_level,
                      mask_key=load_mask_key(settings.run_dir, settings.log_mask_key))
    eventloop.install()


def run_service(spec: ServiceSpec) -> None:
    """Serves TLS with the process's certificate (plaintext only under EPRX_PLAINTEXT_DEV=1)
    until SIGTERM or SIGINT."""
    configure(spec)
    settings = spec.settings
    profile_to = settings.profile_dir
    if profile_to is None:
        asyncio.run(_serve(spec))
        return
    # Benchmarks profile a service by setting EPRX_PROFILE_DIR: cProfile stats on stop.
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_serve(spec))
    finally:
        profiler.disable()
        profiler.dump_stats(str(profile_to / f"{spec.name}.prof"))


async def _serve(spec: ServiceSpec) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = GrpcServer(spec)
    await server.start()
    await stop.wait()
    await server.stop()


class GrpcServer:
    """The service's server with its health statuses, audit, credentials and probes."""

    def __init__(self, spec: ServiceSpec):
        self.spec = spec
        self._serving: Serving | None = None
        self._on_stop: Callable[[], Awaitable[None]] | None = None
        self._probes = None

    async def start(self) -> None:
        spec, settings = self.spec, self.spec.settings
        log = structlog.get_logger(spec.name)
        if metrics.serve(settings.metrics_port):
            log.info("metrics.serving", port=settings.metrics_port)
        bindings, self._on_stop, probe = await spec.make_bindings()
        authenticator = Authenticator.from_file(settings.credentials_file)
        # SIGHUP: re-read the credentials now (a changed file is also noticed within a second)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, authenticator.reload)
        pki = settings.pki
        credentials = pki.server_credentials(spec.name) if pki.enabled else None
        mutual = None
        if pki.enabled and spec.mutual_tls_port:
            mutual = (f"{spec.host}:{spec.mutual_tls_port}", pki.server_credentials(spec.name, require_client_cert=True))
        # Every read and change of patient data is recorded on the audit topic, through this
        # service's outbox (its own Redis user, its own keys).
        auditor = Auditor(connect(settings, spec.name), OutboxLayout(spec.name, settings.outbox_shards),
                          settings.pseudonyms())
        address = f"{spec.host}:{spec.port}"
        server, port, health = await create_server(address, bindings, authenticator,
                                                   max_concurrent_rpcs=settings.max_concurrent_rpcs,
                                                   credentials=credentials, mutual_tls=mutual, auditor=auditor,
                                                   access_log_every=settings.access_log_every)
        if not pki.enabled:
            log.warning("service.plaintext", reason="EPRX_PLAINTEXT_DEV=1: no TLS, for development only")
        # EPRX_HEALTH_PORT: the health statuses in plaintext too, for an orchestrator's probes.
        self._probes = (await health_only_server(f"{spec.host}:{settings.health_port}", health))[0] \
            if settings.health_port else None
        log.info("service.starting", address=address, port=port, tls=pki.enabled,
                 loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
                 mutual_tls_port=spec.mutual_tls_port if mutual else None, health_port=settings.health_port or None)
        self._serving = await start_serving(server, health, [b.name for b in bindings], probe)

    async def stop(self) -> None:
        try:
            if self._serving is not None:
                await self._serving.stop(on_stop=self._on_stop)
        finally:
            if self._probes is not None:
                await self._probes.stop(0)
