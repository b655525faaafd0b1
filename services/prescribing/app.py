"""Entry point of the prescribing service: python -m services.prescribing.app"""
from __future__ import annotations

from services.common.redis_client import Readiness
from services.common.service_runner import ServiceSpec, run_service
from services.prescribing.adapters.grpc_api import PrescribingServicer, binding
from services.prescribing.bootstrap import bootstrap
from services.prescribing.config import Settings


def spec(settings: Settings) -> ServiceSpec:
    """The service's gRPC server, run alone (main) or with its relay and worker
    (services/common/combined.py)."""
    async def bindings():
        handlers, close = bootstrap(settings)
        probe = Readiness(settings.common, "prescribing")

        async def stop() -> None:
            await close()
            await probe.aclose()
        return [binding(PrescribingServicer(handlers))], stop, probe.check

    return ServiceSpec("prescribing", settings.common, settings.grpc_port, bindings, host=settings.grpc_host)


def main() -> None:
    run_service(spec(Settings.from_env()))


if __name__ == "__main__":
    main()
