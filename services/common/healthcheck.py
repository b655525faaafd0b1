"""The container image's HEALTHCHECK, one command for whatever process the image runs:

- a gRPC service (EPRX_HEALTH_PORT set): its health status on the plaintext health port;
- a relay or a worker: its heartbeat (EPRX_HEALTH_PROCESS names it, e.g. pharmacy-relay);
- anything else (a one-shot job, the FHIR facade, which its orchestrator probes over HTTPS):
  healthy, there is nothing of its own to ask.

    python -m services.common.healthcheck      exits 0 healthy, 1 not"""
from __future__ import annotations

import os
import sys

from services.common.config import CommonSettings


def main() -> int:
    settings = CommonSettings.from_env()
    if settings.health_port:
        from services.common.grpc_server import is_serving
        serving = is_serving(f"127.0.0.1:{settings.health_port}", timeout=3.0)
        print(f"health port {settings.health_port}: {'SERVING' if serving else 'not serving'}")
        return 0 if serving else 1
    process = os.environ.get("EPRX_HEALTH_PROCESS", "").strip()
    if process:
        from services.common.liveness import main as liveness
        return liveness(["--process", process])
    print("no health port or heartbeat to check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
