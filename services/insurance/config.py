"""The insurance service's settings: the common ones plus its own."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from services.common.config import CommonSettings, Env, project_root


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    grpc_host: str
    grpc_port: int
    reference_dir: Path
    keys_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        common = CommonSettings.from_env(environ)
        env = Env(environ)
        return cls(common=common, grpc_host=env.text("GRPC_HOST", "127.0.0.1"), grpc_port=common.ports.insurance,
                   reference_dir=env.path("REFERENCE_DIR", project_root() / "reference" / "v1"),
                   keys_dir=env.path("SIGNING_KEYS_DIR", common.run_dir / "keys"))
