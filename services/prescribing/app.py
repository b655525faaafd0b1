"""Entry point of the prescribing service: python -m services.prescribing.app"""
from __future__ import annotations

from services.common.redis_client import Readiness
from services.common.service_runner import run_service
from services.prescribing.adapters.grpc_api import PrescribingServicer, binding
from services.prescribing.bootstrap import bootstrap
from services.prescribing.config import Settings


def main() -> None:
    settings = Settings.from_env()

    async def bindings():
        handlers, close = bootstrap(settings)
        probe = Readiness(settings.common, "prescribing")

        async def stop() -> None:
            await close()
            await probe.aclose()
        return [binding(PrescribingServicer(handlers))], stop, probe.check

    run_service("prescribing", settings.common, settings.grpc_port, bindings, host=settings.grpc_host)


if __name__ == "__main__":
    main()
