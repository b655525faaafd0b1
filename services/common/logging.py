"""structlog set-up: JSON off a terminal, readable on one, correlation id on every line,
and patient identifiers and names masked before anything is rendered."""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import uuid
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import structlog

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

# Fields whose value identifies a patient or member. Names are dropped, identifiers are
# replaced by a keyed hash so that an operator can follow one patient across lines
# without learning who it is.
NAME_FIELDS = frozenset({"patient_name", "guardian_name", "member_name", "full_name"})
IDENTIFIER_FIELDS = frozenset({
    "patient", "patient_id", "patient_key", "citizen_id", "cccd", "health_id", "passport",
    "card", "card_code", "bhyt_card", "card_identifier", "member_id", "social_security_number",
})
# Free text can carry an identifier too: 10 or 12 digits standing alone, or a card code.
_IDENTIFIER_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])(?:[A-Z]{2}[1-5][0-9]{12}|[0-9]{12}|[0-9]{10})(?![0-9A-Za-z])")


class PatientDataMasker:
    """A structlog processor. Deterministic for a given key, so equal identifiers mask equally."""

    def __init__(self, key: bytes):
        self._key = key

    def mask_identifier(self, value: Any) -> str:
        digest = hmac.new(self._key, str(value).encode(), hashlib.sha256).hexdigest()
        return f"h:{digest[:12]}"

    def _mask_text(self, text: str) -> str:
        return _IDENTIFIER_IN_TEXT.sub(lambda m: self.mask_identifier(m.group(0)), text)

    def _mask(self, field: str | None, value: Any) -> Any:
        if field in NAME_FIELDS:
            return "***"
        if field in IDENTIFIER_FIELDS and value not in (None, ""):
            if isinstance(value, dict):
                return {k: self.mask_identifier(v) for k, v in value.items()}
            return self.mask_identifier(value)
        if isinstance(value, dict):
            return {k: self._mask(k, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._mask(None, v) for v in value]
        if isinstance(value, str):
            return self._mask_text(value)
        return value

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {k: self._mask(k, v) for k, v in event_dict.items()}


def _add_correlation_id(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    cid = correlation_id.get()
    if cid is not None:
        event_dict.setdefault("correlation_id", cid)
    return event_dict


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def load_mask_key(run_dir: Path, explicit: str | None) -> bytes:
    """The key for masking; a deployment sets it, a laptop gets one made once per run folder."""
    if explicit:
        return explicit.encode()
    path = run_dir / "secrets" / "log-mask.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.write_bytes(secrets.token_hex(32).encode())
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # atomic: concurrent starters all end up with one key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_bytes()


def configure_logging(service: str, *, fmt: str = "auto", level: str = "info",
                      mask_key: bytes, stream: Any = None) -> None:
    stream = stream or sys.stderr
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False) if json_output
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_correlation_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            PatientDataMasker(mask_key),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (faust, aiokafka, kafka-python) log through the standard library.
    logging.basicConfig(stream=stream, level=logging.WARNING,
                        format=f"%(asctime)s {service} %(name)s %(levelname)s %(message)s")
