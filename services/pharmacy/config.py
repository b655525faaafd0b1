"""The pharmacy service's settings: the common ones plus its own."""
from __future__ import annotations

import json
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
        token = env.raw("INSURANCE_TOKEN")
        if token is None:  # a laptop run: the service credential made at first start
            tokens = common.credentials_file.parent / "tokens.json"
            try:
                token = json.loads(tokens.read_text())["tokens"]["service-pharmacy"]["token"]
            except (OSError, KeyError, ValueError):
                raise ConfigError(f"EPRX_INSURANCE_TOKEN is required (no service-pharmacy token in {tokens})") from None
        return cls(common=common, grpc_host=env.text("GRPC_HOST", "127.0.0.1"), grpc_port=common.ports.pharmacy,
                   reference_dir=env.path("REFERENCE_DIR", project_root() / "reference" / "v1"),
                   keys_dir=env.path("SIGNING_KEYS_DIR", common.run_dir / "keys"),
                   insurance_address=env.text("INSURANCE_ADDRESS", f"127.0.0.1:{common.ports.insurance}"),
                   insurance_token=token,
                   insurance_timeout_seconds=env.number("INSURANCE_TIMEOUT_SECONDS", 2.0))
