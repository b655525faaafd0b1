"""The FHIR facade's settings: the common ones plus where it listens and the gRPC services
it speaks to."""
from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Mapping

from services.common.config import CommonSettings, Env


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    host: str
    port: int
    base_url: str                      # what resources' fullUrl and links start with
    prescribing_address: str
    pharmacy_address: str
    insurance_address: str
    backend_timeout_seconds: float     # each gRPC call the facade makes
    max_concurrent_requests: int       # beyond it a request gets 429 at once
    max_body_bytes: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        common = CommonSettings.from_env(environ)
        env = Env(environ)
        host = env.text("FHIR_HOST", "127.0.0.1")
        ports = common.ports
        scheme = "https" if common.pki.enabled else "http"
        return cls(common=common, host=host, port=ports.fhir,
                   base_url=env.text("FHIR_BASE_URL", f"{scheme}://{host}:{ports.fhir}/fhir").rstrip("/"),
                   prescribing_address=env.text("PRESCRIBING_ADDRESS", f"127.0.0.1:{ports.prescribing}"),
                   pharmacy_address=env.text("PHARMACY_ADDRESS", f"127.0.0.1:{ports.pharmacy}"),
                   insurance_address=env.text("INSURANCE_ADDRESS", f"127.0.0.1:{ports.insurance}"),
                   backend_timeout_seconds=env.number("FHIR_BACKEND_TIMEOUT_SECONDS", 5.0),
                   max_concurrent_requests=env.integer("FHIR_MAX_CONCURRENT_REQUESTS", 200, minimum=1),
                   max_body_bytes=env.integer("FHIR_MAX_BODY_BYTES", 1024 * 1024, minimum=1024))


def is_serving(port: int, pki=None, host: str = "127.0.0.1") -> bool:
    """The facade answers its CapabilityStatement: what a supervisor or a probe waits for."""
    tls = pki is not None and pki.enabled
    handlers: list = [urllib.request.ProxyHandler({})]                       # never through an HTTP proxy
    if tls:
        handlers.append(urllib.request.HTTPSHandler(context=pki.client_context()))
    direct = urllib.request.build_opener(*handlers)
    try:
        with direct.open(f"{'https' if tls else 'http'}://{host}:{port}/fhir/metadata", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False
