"""The pharmacy service's settings: the common ones plus its own."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from services.common.config import CommonSettings, ConfigError, Env, project_root


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    grpc_host: str
    grpc_port: int
    reference_dir: Path
    keys_dir: Path
    insurance_address: str
    insurance_token: str
    insurance_timeout_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        common = CommonSettings.from_env(environ)
        env = Env(environ)
        # With TLS the pharmacy calls the insurer's mutual-TLS port, identified by its client
        # certificate: it holds no bearer token. Only under EPRX_PLAINTEXT_DEV it needs its own
        # service token (EPRX_INSURANCE_TOKEN, or the file made for it alone at first start).
        token = ""
        if not common.pki.enabled:
            token = env.raw("INSURANCE_TOKEN") or ""
            own = common.credentials_file.parent / "service-pharmacy.token"
            if not token:
                try:
                    token = own.read_text().strip()
                except OSError:
                    raise ConfigError(f"EPRX_INSURANCE_TOKEN is required (no {own})") from None
        insurance_port = common.ports.insurance_internal if common.pki.enabled else common.ports.insurance
        return cls(common=common, grpc_host=env.text("GRPC_HOST", "127.0.0.1"), grpc_port=common.ports.pharmacy,
                   reference_dir=env.path("REFERENCE_DIR", project_root() / "reference" / "v1"),
                   keys_dir=env.path("SIGNING_KEYS_DIR", common.run_dir / "keys"),
                   insurance_address=env.text("INSURANCE_ADDRESS", f"127.0.0.1:{insurance_port}"),
                   insurance_token=token,
                   insurance_timeout_seconds=env.number("INSURANCE_TIMEOUT_SECONDS", 2.0))
