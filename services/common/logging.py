"""structlog set-up: JSON off a terminal, readable on one, correlation id on every line,
and patient identifiers and names masked before anything is rendered."""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson
import structlog

from services.common.files import shared_secret

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

# Fields whose value identifies a patient or member. Names are dropped, identifiers are
# replaced by a keyed hash so that an operator can follow one patient across lines
# without learning who it is.
NAME_FIELDS = frozenset({"patient_name", "guardian_name", "member_name", "full_name"})
IDENTIFIER_FIELDS = frozenset({
    "patient", "patient_id", "patient_key", "citizen_id", "cccd", "health_id", "passport",
    "card", "card_code", "bhyt_card", "card_identifier", "member_id", "social_security_number",
})
# Free text can carry an identifier too: a card code in either case, 10 or 12 digits standing
# alone (a social security number, a CCCD), a passport number (one or two letters and 7 or 8
# digits). Ten digits with a decimal fraction are an epoch timestamp, not an identifier, and a
# bearer token is cut to its public key id.
_IDENTIFIER_IN_TEXT = re.compile(
    r"(?<![0-9A-Za-z.])(?:[A-Za-z]{2}[1-5][0-9]{12}|[0-9]{12}|[0-9]{10}(?!\.[0-9])|[A-Za-z]{1,2}[0-9]{7,8})"
    r"(?![0-9A-Za-z])")
_TOKEN_IN_TEXT = re.compile(r"\b(eprx_[0-9a-f]{16})_[A-Za-z0-9_-]{20,}")


def _json(event: dict, **options: Any) -> str:
    """A log line's JSON, by orjson (several times faster than json, which a line per call
    and per event makes count); what it cannot encode goes through structlog's fallback."""
    return orjson.dumps(event, default=options.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


class PatientDataMasker:
    """A structlog processor. Deterministic for a given key, so equal identifiers mask equally."""

    def __init__(self, key: bytes):
        self._key = key

    def mask_identifier(self, value: Any) -> str:
        digest = hmac.new(self._key, str(value).encode(), hashlib.sha256).hexdigest()
        return f"h:{digest[:12]}"

    def _mask_text(self, text: str) -> str:
        text = _TOKEN_IN_TEXT.sub(lambda m: f"{m.group(1)}_***", text)
        return _IDENTIFIER_IN_TEXT.sub(lambda m: self.mask_identifier(m.group(0).upper()), text)

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
    return shared_secret(run_dir / "secrets" / "log-mask.key")


def configure_logging(service: str, *, fmt: str = "auto", level: str = "info",
                      mask_key: bytes, stream: Any = None) -> None:
    stream = stream or sys.stderr
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json) if json_output
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
    route_standard_logging(service, stream, mask_key, json_output)


def route_standard_logging(service: str, stream: Any, mask_key: bytes, json_output: bool) -> None:
    """Libraries (faust, mode, aiokafka, kafka-python, grpc's Python layer) log through the
    standard library: their lines go through the same masking and rendering as ours, on one
    handler of the root logger (any handler a library installed is replaced)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(masked_handler(service, stream, mask_key, json_output))
    root.setLevel(logging.WARNING)


def masked_handler(service: str, stream: Any, mask_key: bytes, json_output: bool) -> logging.Handler:
    """A standard-library handler that masks and renders like structlog's lines."""
    renderer: Any = (structlog.processors.JSONRenderer(serializer=_json) if json_output
                     else structlog.dev.ConsoleRenderer(colors=False))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True),
                           lambda _, __, event: {**event, "service": service},
                           structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, PatientDataMasker(mask_key),
                    renderer])
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.set_name("eprx")
    return handler


def faust_logging_config(service: str, fmt: str, mask_key: bytes) -> dict:
    """What a Faust worker installs when it starts (it replaces the root logger's handlers):
    the masked handler alone."""
    stream = sys.stderr
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())
    return {"version": 1, "disable_existing_loggers": False,
            "handlers": {"default": {"()": masked_handler, "service": service, "stream": stream,
                                     "mask_key": mask_key, "json_output": json_output}},
            "root": {"level": "WARNING", "handlers": ["default"]}}
