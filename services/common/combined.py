"""One process per service, for small machines: the service's gRPC server, its outbox relay and
its stream worker in one process (EPRX_PROCESSES=combined; `make run` and the benchmark on two
cores). Each part is the same code as when it runs alone, and they stay separable for scale:
the cluster runs them as separate deployments.

    python -m services.common.combined pharmacy

What one process saves (issue 15): two interpreters, their event loops' and threads' wake-ups
and their Redis and Kafka connections per service. The worker's loop is Faust's; the gRPC server
runs on it (it serves from the start: it does not wait for the worker's tables), the relay in a
thread of its own (its Redis and Kafka clients block; they let go of the GIL while they wait).
SIGTERM stops the worker (offsets committed), then the gRPC server (calls in flight finish),
then the relay (what those calls wrote is shipped, the relay's leases released)."""
from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import threading
from typing import Callable

import faust
import mode
import structlog

from services.common.outbox_relay import OutboxRelay, build_relay
from services.common.service_runner import GrpcServer, configure
from services.common.topology import SERVICES

log = structlog.get_logger("combined")


class GrpcPart(mode.Service):
    """The service's gRPC server as a part of the worker."""

    def __init__(self, server: GrpcServer, **kwargs):
        super().__init__(**kwargs)
        self._server = server

    async def on_start(self) -> None:
        await self._server.start()

    async def on_stop(self) -> None:
        await self._server.stop()


class RelayPart(mode.Service):
    """The service's outbox relay, on a thread of the worker's process. A relay that fails stops
    the whole process (`on_crash`), as it would end a relay process of its own: a process that
    went on serving without its relay would pile its events up in the outbox."""

    def __init__(self, relay: OutboxRelay, on_crash: Callable[[BaseException], None] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._relay = relay
        self._on_crash = on_crash or stop_the_process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def on_start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._relay.run(self._stop)
        except BaseException as exc:
            log.error("outbox.relay_failed", error=repr(exc))
            self._on_crash(exc)

    async def on_stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)


_FAILED: list[BaseException] = []


def stop_the_process(exc: BaseException) -> None:
    """A graceful stop (the server's calls finish, the worker commits), then exit code 1."""
    _FAILED.append(exc)
    os.kill(os.getpid(), signal.SIGTERM)


def worker(service: str) -> faust.Worker:
    os.environ["EPRX_PROCESSES"] = "combined"   # what this process is, whoever started it
    app_module = importlib.import_module(f"services.{service}.app")
    settings = importlib.import_module(f"services.{service}.config").Settings.from_env()
    spec = app_module.spec(settings)
    configure(spec)   # logging and uvloop, before the worker makes its loop
    app = importlib.import_module(f"services.{service}.worker").build(settings)
    # mode starts a worker's services in this order, the app last, and stops them in the reverse
    # order: the relay stops after the server, so what the last calls wrote is shipped.
    return faust.Worker(app, RelayPart(build_relay(service, spec.settings)), GrpcPart(GrpcServer(spec)),
                        loglevel="warning", quiet=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a service's gRPC server, outbox relay and worker in one process")
    parser.add_argument("service", choices=SERVICES)
    run(worker(parser.parse_args(argv).service))


def run(worker: mode.Worker) -> None:
    """Runs the process's parts until a SIGTERM, or until one fails (then exit code 1)."""
    try:
        worker.execute_from_commandline()
    finally:
        if _FAILED:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
