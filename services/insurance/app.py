"""Entry point of the insurance service: python -m services.insurance.app"""
from __future__ import annotations

from services.common.redis_client import Readiness
from services.common.service_runner import run_service
from services.insurance.adapters.grpc_api import InsuranceServicer, binding
from services.insurance.bootstrap import bootstrap
from services.insurance.config import Settings


def main() -> None:
    settings = Settings.from_env()

    async def bindings():
        handlers, close = bootstrap(settings)
        probe = Readiness(settings.common, "insurance")

        async def stop() -> None:
            await close()
            await probe.aclose()
        return [binding(InsuranceServicer(handlers))], stop, probe.check

    run_service("insurance", settings.common, settings.grpc_port, bindings, host=settings.grpc_host,
                mutual_tls_port=settings.common.ports.insurance_internal)


if __name__ == "__main__":
    main()
