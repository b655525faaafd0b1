"""Entry point of the insurance service: python -m services.insurance.app"""
from __future__ import annotations

from services.common.redis_client import connect
from services.common.service_runner import run_service
from services.insurance.adapters.grpc_api import InsuranceServicer, binding
from services.insurance.bootstrap import bootstrap
from services.insurance.config import Settings


def main() -> None:
    settings = Settings.from_env()

    async def bindings():
        client = connect(settings.common)
        handlers, close = bootstrap(settings, redis_client=client)
        return [binding(InsuranceServicer(handlers))], close, client.ping

    run_service("insurance", settings.common, settings.grpc_port, bindings, host=settings.grpc_host)


if __name__ == "__main__":
    main()
