"""The processes that make up the platform beside Kafka and Redis: one list, read by the
local supervisor and by the end-to-end tests, so both run the same system."""
from __future__ import annotations

from dataclasses import dataclass

SERVICES = ("prescribing", "pharmacy", "insurance")


@dataclass(frozen=True)
class Process:
    name: str
    module_args: tuple[str, ...]      # what follows `python`
    grpc_service: str | None = None   # the service whose gRPC port tells it is ready
    http_port: str | None = None      # or the port (a Ports field) where GET /fhir/metadata answers


def metrics_ports(base: int, combined: bool = False) -> dict[str, int]:
    """Each process's Prometheus port under `make run`: base + its place in the list (0: none)."""
    return {p.name: (base + i if base else 0) for i, p in enumerate(application(combined), start=1)}


def application(combined: bool = False) -> list[Process]:
    """`combined` (EPRX_PROCESSES=combined, for small machines): one process per service runs its
    gRPC server, relay and worker (services/common/combined.py), named after the service."""
    processes = []
    for service in SERVICES:
        if combined:
            processes.append(Process(service, ("-m", "services.common.combined", service), service))
            continue
        processes.append(Process(service, ("-m", f"services.{service}.app"), service))
        processes.append(Process(f"{service}-relay", ("-m", "services.common.outbox_relay", service)))
        processes.append(Process(f"{service}-worker",
                                 ("-m", f"services.{service}.worker", "worker", "-l", "warn", "--without-web")))
    processes.append(Process("fhir", ("-m", "services.fhir.app"), http_port="fhir"))
    return processes
