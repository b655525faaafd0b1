"""Entry point of the insurance service: python -m services.insurance.app"""
from __future__ import annotations

from services.common.redis_client import Readiness
from services.common.service_runner import ServiceSpec, run_service
from services.insurance.adapters.grpc_api import InsuranceServicer, binding
from services.insurance.bootstrap import bootstrap
from services.insurance.config import Settings


def spec(settings: Settings) -> ServiceSpec:
    """The service's gRPC server, run alone (main) or with its relay and worker
    (services/common/combined.py)."""
    async def bindings():
        handlers, close = bootstrap(settings)
        probe = Readiness(settings.common, "insurance")

        async def stop() -> None:
            await close()
            await probe.aclose()
        return [binding(InsuranceServicer(handlers))], stop, probe.check

    return ServiceSpec("insurance", settings.common, settings.grpc_port, bindings, host=settings.grpc_host,
                       mutual_tls_port=settings.common.ports.insurance_internal)


def main() -> None:
    run_service(spec(Settings.from_env()))


if __name__ == "__main__":
    main()
