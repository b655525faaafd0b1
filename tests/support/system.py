"""The whole system as separate processes on the test ports: three services, their relays
and their workers, over the Kafka and Redis that `make test` started (the end-to-end and
fuzz tests use it, one system per module)."""
from __future__ import annotations

import pytest

from services.common import topology
from services.common.config import CommonSettings
from tests.support.prescribing_fixtures import start_process, stop_process
from services.fhir.config import is_serving as fhir_serving
from tests.support import free_port, serving, wait_until



class System:
    """`combined`: one process per service (its server, relay and worker; EPRX_PROCESSES=combined)."""

    def __init__(self, settings: CommonSettings, combined: bool = False):
        self.settings = settings
        self.procs: dict = {}
        self.processes = topology.application(combined)
        self.metrics_ports = {p.name: free_port() for p in self.processes}

    def commands(self) -> dict[str, list[str]]:
        return {p.name: list(p.module_args) for p in self.processes}

    def start(self, name: str) -> None:
        # Its own relay identity: a relay left by another test must not share its leases.
        self.procs[name] = start_process(self.commands()[name], env={
            "EPRX_REPLICA": "e2e", "EPRX_METRICS_PORT": str(self.metrics_ports[name])})
        process = next(p for p in self.processes if p.name == name)
        if process.grpc_service or process.http_port:
            port = getattr(self.settings.ports, process.grpc_service or process.http_port)
            ready = serving if process.grpc_service else (lambda p: fhir_serving(p, self.settings.pki))
            wait_until(lambda: ready(port) or self.procs[name].poll() is not None, timeout=60, message=name)
            assert self.procs[name].poll() is None, f"{name} died"

    def kill(self, name: str) -> None:
        import signal
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, name: str) -> int:
        """SIGTERM, as an orchestrator stops a process; its exit code."""
        stop_process(self.procs[name])
        return self.procs[name].returncode

    def stop_all(self) -> dict[str, str]:
        return {name: stop_process(proc) for name, proc in self.procs.items()}


@pytest.fixture(scope="module")
def system(settings):
    yield from _running(System(settings))


@pytest.fixture(scope="module")
def combined_system(settings):
    yield from _running(System(settings, combined=True))


def _running(running: System):
    for name in running.commands():
        running.start(name)
    yield running
    died = [name for name, proc in running.procs.items() if proc.poll() is not None]
    outputs = running.stop_all()
    assert not died, {name: outputs[name][-2000:] for name in died}
