"""Entry point of the pharmacy service: python -m services.pharmacy.app"""
from __future__ import annotations

from services.common.redis_client import Readiness
from services.common.service_runner import ServiceSpec, run_service
from services.pharmacy.adapters.grpc_api import PharmacyServicer, binding
from services.pharmacy.bootstrap import bootstrap
from services.pharmacy.config import Settings


def spec(settings: Settings) -> ServiceSpec:
    """The service's gRPC server, run alone (main) or with its relay and worker
    (services/common/combined.py)."""
    async def bindings():
        handlers, close = bootstrap(settings)
        probe = Readiness(settings.common, "pharmacy")

        async def stop() -> None:
            await close()
            await probe.aclose()
        return [binding(PharmacyServicer(handlers))], stop, probe.check

    return ServiceSpec("pharmacy", settings.common, settings.grpc_port, bindings, host=settings.grpc_host)


def main() -> None:
    run_service(spec(Settings.from_env()))


if __name__ == "__main__":
    main()
