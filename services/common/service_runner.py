"""Runs one gRPC service process: settings, logging, server, graceful stop."""
from __future__ import annotations

import asyncio
import signal
from typing import Awaitable, Callable, Sequence

import structlog

from services.common import eventloop, metrics
from services.common.audit import Auditor
from services.common.outbox import OutboxLayout
from services.common.redis_client import connect
from services.common.auth import Authenticator
from services.common.config import CommonSettings
from services.common.grpc_server import Probe, ServiceBinding, create_server, health_only_server, serve_until_signalled
from services.common.logging import configure_logging, load_mask_key

# What a service brings up: its bindings, what to close on stop, and a probe of the backends
# it needs (the health status is NOT_SERVING while the probe fails).
BindingsFactory = Callable[[], Awaitable[tuple[Sequence[ServiceBinding], Callable[[], Awaitable[None]] | None,
                                               Probe | None]]]


def run_service(name: str, settings: CommonSettings, port: int, make_bindings: BindingsFactory,
                *, host: str = "127.0.0.1", mutual_tls_port: int | None = None) -> None:
    """Serves TLS with the process's certificate (plaintext only under EPRX_PLAINTEXT_DEV=1);
    `mutual_tls_port`: also a port for platform services, each identified by its certificate."""
    configure_logging(name, fmt=settings.log_format, level=settings.log_level,
                      mask_key=load_mask_key(settings.run_dir, settings.log_mask_key))
    eventloop.install()
    profile_to = settings.profile_dir
    if profile_to is None:
        asyncio.run(_serve(name, settings, f"{host}:{port}", make_bindings, mutual_tls_port))
        return
    # Benchmarks profile a service by setting EPRX_PROFILE_DIR: cProfile stats on stop.
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_serve(name, settings, f"{host}:{port}", make_bindings, mutual_tls_port))
    finally:
        profiler.disable()
        profiler.dump_stats(str(profile_to / f"{name}.prof"))


async def _serve(name: str, settings: CommonSettings, address: str, make_bindings: BindingsFactory,
                 mutual_tls_port: int | None) -> None:
    log = structlog.get_logger(name)
    if metrics.serve(settings.metrics_port):
        log.info("metrics.serving", port=settings.metrics_port)
    bindings, on_stop, probe = await make_bindings()
    authenticator = Authenticator.from_file(settings.credentials_file)
    # SIGHUP: re-read the credentials now (a changed file is also noticed within a second)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, authenticator.reload)
    pki = settings.pki
    credentials = pki.server_credentials(name) if pki.enabled else None
    mutual = None
    if pki.enabled and mutual_tls_port:
        host = address.rsplit(":", 1)[0]
        mutual = (f"{host}:{mutual_tls_port}", pki.server_credentials(name, require_client_cert=True))
    # Every read and change of patient data is recorded on the audit topic, through this
    # service's outbox (its own Redis user, its own keys).
    auditor = Auditor(connect(settings, name), OutboxLayout(name, settings.outbox_shards), settings.pseudonyms())
    server, port, health = await create_server(address, bindings, authenticator,
                                               max_concurrent_rpcs=settings.max_concurrent_rpcs,
                                               credentials=credentials, mutual_tls=mutual, auditor=auditor,
                                               access_log_every=settings.access_log_every)
    if not pki.enabled:
        log.warning("service.plaintext", reason="EPRX_PLAINTEXT_DEV=1: no TLS, for development only")
    # EPRX_HEALTH_PORT: the health statuses in plaintext too, for an orchestrator's probes.
    probes = (await health_only_server(f"{address.rsplit(':', 1)[0]}:{settings.health_port}", health))[0] \
        if settings.health_port else None
    log.info("service.starting", address=address, port=port, tls=pki.enabled,
             loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
             mutual_tls_port=mutual_tls_port if mutual else None, health_port=settings.health_port or None)
    try:
        await serve_until_signalled(server, health, [b.name for b in bindings], on_stop=on_stop, probe=probe)
    finally:
        if probes is not None:
            await probes.stop(0)
