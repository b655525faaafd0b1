"""Who looked at whom: every read of patient data and every change, recorded on the
append-only topic rx.audit.v1 (kept 10 years), and the command that answers a patient's
question "who accessed my data between these dates".

The gRPC server records each audited call as it ends, whatever its outcome, before the
answer leaves: the record goes into the service's outbox in Redis (the relay ships it), so an
answer whose record could not be kept is not given (UNAVAILABLE). A record names the caller
(key id, role, identity), the method, the patient by keyed pseudonym (never the identifier),
the prescription, the time, the correlation id and the outcome.

    python -m services.common.audit who --citizen-id 001203004567 [--from 2026-11-01] [--to 2026-11-30]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable, Iterable

from eprescription.events.v1 import events_pb2

from services.common.events import new_envelope, to_record
from services.common.outbox import OutboxLayout, encode_headers

AUDIT = "rx.audit.v1"   # declared with its retention in services/common/topics.py

# What an audited method's request and answer say about whom it concerns: (the patient's
# identifier, as a PatientIdentifier message or a (kind, value) pair, or None; the prescription
# code). The answer is None when the call failed.
Subject = Callable[[Any, Any], tuple[Any, str]]


@dataclass(frozen=True)
class Audited:
    subject: Subject
    change: bool = False


class Auditor:
    """Appends access records to the service's outbox (the relay ships them to rx.audit.v1).

    Records of concurrent calls share a round trip (group commit): one record goes to Redis at
    once; those that come while it is on its way go together in one pipeline when it is back.
    Each call still waits until its own record is kept, and fails if it was not."""

    def __init__(self, redis, layout: OutboxLayout, pseudonyms, clock=lambda: datetime.now(timezone.utc)):
        self._redis, self._layout, self._pseudonyms, self._clock = redis, layout, pseudonyms, clock
        self._waiting: list[tuple[str, dict, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None   # the batch on its way, if any

    async def record(self, *, method: str, audited: Audited, caller, request, response, outcome: str,
                     correlation_id: str) -> None:
        try:
            identifier, code = audited.subject(request, response)
        except Exception:   # a malformed request names nobody reliably: the code alone, if any
            identifier, code = None, getattr(request, "code", "")
        patient_key = (self._pseudonyms.of(*identifier) if isinstance(identifier, tuple)
                       else self._pseudonyms.of_patient(identifier))
        service, _, name = method.lstrip("/").partition("/")
        access = events_pb2.AccessRecorded(
            service=self._layout.service, method=name, caller_key_id=caller.key_id if caller else "",
            role=caller.role.value if caller else "", identity=caller.identity if caller else "",
            patient_key=patient_key, prescription_code=(code or "")[:64], correlation_id=correlation_id,
            outcome=outcome, change=audited.change)
        now = self._clock()
        access.at.FromDatetime(now)
        key = patient_key or code or "unknown"
        record = to_record(new_envelope(access, key=key, producer=self._layout.service, correlation_id=correlation_id,
                                        occurred_at=now), AUDIT)
        stream = self._layout.stream(self._layout.shard_of(key))
        kept = asyncio.get_running_loop().create_future()
        self._waiting.append((stream, {"event_id": record.event_id, "topic": record.topic, "key": record.key,
                                       "headers": encode_headers(record.headers), "value": record.value}, kept))
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_waiting())
        await kept

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    if len(batch) == 1:
                        results: list = [await self._redis.xadd(batch[0][0], batch[0][1])]
                    else:
                        async with self._redis.pipeline(transaction=False) as pipe:
                            for stream, fields, _ in batch:
                                pipe.xadd(stream, fields)
                            results = await pipe.execute(raise_on_error=False)
                except Exception as exc:   # the connection: none of them kept
                    results = [exc] * len(batch)
                for (_, _, kept), result in zip(batch, results):
                    if kept.done():         # its call was cancelled meanwhile
                        continue
                    if isinstance(result, BaseException):
                        kept.set_exception(result)
                    else:
                        kept.set_result(None)
        finally:
            self._writer = None

    async def aclose(self) -> None:
        await self._redis.aclose()


def accesses_of(records: Iterable[events_pb2.AccessRecorded], patient_key: str, start: datetime,
                end: datetime) -> list[events_pb2.AccessRecorded]:
    """Every record about the patient in [start, end): those naming them, and those naming one
    of their prescriptions (a pharmacy's lookup or sale names the code only)."""
    records = list(records)
    codes = {r.prescription_code for r in records if r.patient_key == patient_key and r.prescription_code}
    found = [r for r in records if r.patient_key == patient_key or (r.prescription_code and
                                                                     r.prescription_code in codes)]
    return sorted((r for r in found if start <= r.at.ToDatetime(tzinfo=timezone.utc) < end),
                  key=lambda r: r.at.ToDatetime())


def describe(r: events_pb2.AccessRecorded) -> str:
    when = r.at.ToDatetime(tzinfo=timezone.utc).isoformat(timespec="seconds")
    what = "changed" if r.change else "read"
    return (f"{when} {r.identity} ({r.role}) {what} via {r.service}.{r.method} "
            f"prescription {r.prescription_code or '-'}: {r.outcome} [correlation {r.correlation_id}]")


def main(argv: list[str] | None = None) -> int:
    from services.common.config import CommonSettings
    from services.common.events import decode
    from services.common.pseudonyms import Pseudonyms, load_key
    from services.common.topic_reader import read_to_end
    parser = argparse.ArgumentParser(description="Who accessed a patient's data, from the audit topic")
    sub = parser.add_subparsers(dest="command", required=True)
    who = sub.add_parser("who")
    ident = who.add_mutually_exclusive_group(required=True)
    ident.add_argument("--citizen-id")
    ident.add_argument("--health-id")
    ident.add_argument("--passport")
    ident.add_argument("--card", help="a BHYT card code: the insurer's eligibility checks name the card they were asked")
    who.add_argument("--from", dest="start", type=date.fromisoformat, default=date(1970, 1, 1))
    who.add_argument("--to", dest="end", type=date.fromisoformat, default=None, help="inclusive")
    args = parser.parse_args(argv)
    settings = CommonSettings.from_env()
    import os
    pseudonyms = Pseudonyms(load_key(settings.run_dir, os.environ.get("EPRX_PSEUDONYM_KEY")))
    kind, value = next((k, v) for k, v in (("citizen_id", args.citizen_id), ("health_id", args.health_id),
                                           ("passport", args.passport), ("bhyt_card", args.card)) if v)
    patient_key = pseudonyms.of(kind, value)
    vietnam = timezone(timedelta(hours=7))
    start = datetime.combine(args.start, time.min, vietnam)
    end = datetime.combine(args.end, time.min, vietnam) + timedelta(days=1) if args.end else datetime.max.replace(
        tzinfo=timezone.utc)
    records = (decode(r.value).access_recorded for r in read_to_end(settings.kafka_access("admin"), AUDIT))
    found = accesses_of(records, patient_key, start, end)
    print(f"{len(found)} accesses to the data of patient {patient_key}"
          f" from {args.start}" + (f" to {args.end}" if args.end else ""))
    for r in found:
        print("  " + describe(r))
    return 0


def card_identifier(value: str) -> tuple[str, str]:
    """An identifier the insurer takes (CCCD, social security number or card) as (kind, value)."""
    value = value.strip().upper()
    if len(value) == 12 and value.isdigit():
        return ("citizen_id", value)
    return ("ssn", value) if len(value) == 10 and value.isdigit() else ("bhyt_card", value)


if __name__ == "__main__":
    sys.exit(main())
