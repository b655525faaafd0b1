"""The prescribing service's Redis keyspace: prescriptions, idempotency records and the
outbox (write side), and the patients' medication lists (read model).

Every key of one facility's prescriptions lives in that facility's outbox shard, so that a
command's script touches one Redis Cluster slot; a code's first five characters are its
facility, so any code leads to its shard. The scripts are in lua/, take their arguments as
one JSON object and answer one; `_decode` reads every answer."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from services.common.outbox import OutboxLayout, OutboxScript
from services.common.redis_client import replication_barrier
from services.common.scripts import lua
from services.kernel.retention import DEFAULT_RETENTION, epoch_ms, live_until, window_end
from services.prescribing.adapters import documents, events
from services.prescribing.domain.events import Event
from services.prescribing.domain.outcomes import (AlreadyCancelled, Collision, Done, Duplicate, InState, Missing,
                                                  Outcome)
from services.prescribing.domain.model import (ActiveMedication, Finding, Issued, Severity, Status,
                                               StoredPrescription)

SERVICE = "prescribing"
READ_PREFIX = "prescribing:read"


def answer_json(issued: Issued) -> str:
    """What a retry needs besides the prescription itself (kept once, under its code)."""
    return json.dumps({"code": issued.prescription.code,
                       "warnings": [[f.rule, int(f.severity), list(f.drug_codes), f.message] for f in issued.warnings]})


def _decode(reply) -> dict:
    answer = json.loads(reply)
    if not isinstance(answer, dict) or "outcome" not in answer:
        raise ValueError(f"a prescribing script answered {reply!r}")
    return answer


_OUTCOMES = {"done": Done, "collision": Collision, "missing": Missing, "already": AlreadyCancelled}


class RedisPrescriptionStore:
    def __init__(self, redis, shards: int, retention: timedelta = DEFAULT_RETENTION):
        self.retention = retention
        self._redis = redis
        self.redis = redis
        self.layout = OutboxLayout(SERVICE, shards)
        shared = lua(__file__, "commands")
        self._issue = OutboxScript(redis, shared + lua(__file__, "issue"))
        self._replace = OutboxScript(redis, shared + lua(__file__, "replace"))
        self._cancel = OutboxScript(redis, shared + lua(__file__, "cancel"))
        self._apply_dispense = redis.register_script(lua(__file__, "apply_dispense"))
        self._put_entries = redis.register_script(lua(__file__, "put_entries"))
        self._close_dispensing = redis.register_script(lua(__file__, "close_dispensing"))

    def _shard(self, facility_code: str) -> int:
        return self.layout.shard_of(facility_code.lower())

    def _rx_key(self, code: str) -> str:
        return self.layout.key(self._shard(code[:5]), "rx", code)

    def _req_key(self, facility: str, request_id: str) -> str:
        return self.layout.key(self._shard(facility), "req", facility.lower(), request_id)

    def _new(self, fingerprint: str, issued: Issued, **more) -> list:
        rx = issued.prescription
        args = json.dumps({"fingerprint": fingerprint, "response": answer_json(issued),
                           "valid_until": rx.valid_until.isoformat(), "patient_key": rx.patient_key,
                           "prescribed": json.dumps({str(n): q for n, q in sorted(rx.prescribed.items())}),
                           "live_until_ms": epoch_ms(live_until(rx.valid_until, self.retention)), **more})
        return [args, rx.document]

    async def issue(self, *, facility: str, request_id: str, fingerprint: str, issued: Issued,
                    records: list[Event]) -> Outcome:
        shard = self._shard(facility)
        keys = [self.layout.stream(shard), self._rx_key(issued.prescription.code), self._req_key(facility, request_id)]
        return await self._outcome(await self._issue(keys, self._new(fingerprint, issued),
                                                     [events.encode(e) for e in records]))

    async def replace(self, *, facility: str, request_id: str, fingerprint: str, old_code: str, issued: Issued,
                      records: list[Event]) -> Outcome:
        shard = self._shard(facility)
        new_code = issued.prescription.code
        keys = [self.layout.stream(shard), self._rx_key(old_code), self._rx_key(new_code),
                self._req_key(facility, request_id)]
        args = self._new(fingerprint, issued, replacement=new_code)
        return await self._outcome(await self._replace(keys, args, [events.encode(e) for e in records]))

    async def cancel(self, *, code: str, reason: str, records: list[Event]) -> Outcome:
        shard = self._shard(code[:5])
        return await self._outcome(await self._cancel([self.layout.stream(shard), self._rx_key(code)],
                                           [json.dumps({"reason": reason})], [events.encode(e) for e in records]))

    async def prior(self, facility: str, request_id: str) -> Duplicate | None:
        """The fingerprint and answer of an earlier request with this id, if any."""
        key = self._req_key(facility, request_id)
        fp, response = await self._redis.hmget(key, ["fp", "response"])
        if fp is None:
            return None
        await replication_barrier(self._redis, key)   # an answer given again is a replicated one
        return await self._duplicate(fp.decode(), response)

    async def _duplicate(self, fingerprint: str, response) -> Duplicate:
        """The first answer, with the prescription it issued read back from its code."""
        if not response:
            return Duplicate(fingerprint, None)
        answer = json.loads(response)
        stored = await self.get(answer["code"])
        warnings = tuple(Finding(rule, Severity(severity), tuple(drugs), message)
                         for rule, severity, drugs, message in answer["warnings"])
        return Duplicate(fingerprint, Issued(stored.prescription, warnings) if stored else None)

    async def _outcome(self, reply) -> Outcome:
        answer = _decode(reply)
        match answer["outcome"]:
            case "duplicate":
                return await self._duplicate(answer["fingerprint"], answer.get("response"))
            case "state":
                return InState(answer["status"])
            case outcome if outcome in _OUTCOMES:
                return _OUTCOMES[outcome]()
        raise ValueError(f"unknown outcome {answer!r}")

    async def get(self, code: str) -> StoredPrescription | None:
        fields = await self._redis.hgetall(self._rx_key(code))
        if not fields:
            return None
        dispensed = {int(k[2:]): int(v) for k, v in fields.items() if k.startswith(b"d:")}
        closed = ({int(k[2:]): int(v) for k, v in fields.items() if k.startswith(b"f:")}
                  if fields.get(b"closed") == b"1" else None)
        return StoredPrescription(documents.prescription_of(fields[b"content"]), fields[b"status"].decode(),
                                  fields.get(b"replaced_by", b"").decode(), dispensed, int(fields.get(b"v", 0)), closed)

    async def close_dispensing(self, code: str, dispensed: dict[int, int]) -> bool:
        fields = ["closed", "1", *(item for n, q in dispensed.items() for item in (f"f:{n}", q))]
        return bool(await self._close_dispensing(keys=[self._rx_key(code)], args=fields))

    async def apply_dispense(self, *, event_id: str, code: str, sign: int, lines: list[tuple[int, int]]) -> str:
        """applied, seen (this event was applied before) or missing (no such prescription)."""
        shard = self._shard(code[:5])
        args = json.dumps({"event_id": event_id, "sign": sign, "lines": [list(line) for line in lines]})
        keys = [self._rx_key(code), self.layout.key(shard, "applied", code)]
        return _decode(await self._apply_dispense(keys=keys, args=[args]))["outcome"]

    # Read model: a hash per patient, a field per prescription line.

    def patient_key(self, patient_key: str) -> str:
        return f"{READ_PREFIX}:patient:{{{patient_key}}}"

    async def put_medications(self, patient_key: str, meds: list[ActiveMedication], version: int,
                              now: datetime | None = None) -> None:
        if meds:
            args = json.dumps({"version": version, "now_ms": epoch_ms(now or datetime.now(timezone.utc)),
                               "entries": [[f"{m.prescription_code}#{m.line_number}", _med_json(m),
                                            epoch_ms(self._entry_until(m))] for m in meds]})
            await self._put_entries(keys=[self.patient_key(patient_key)], args=[args])

    def _entry_until(self, m: ActiveMedication) -> datetime:
        """An entry stays while its prescription's state does, or while its course runs if longer
        (the safety checks look at what a patient is taking)."""
        course_end = window_end(m.start + timedelta(days=max(m.days, 0)))
        return max(live_until(m.valid_until, self.retention), course_end + self.retention)

    async def medications(self, patient_key: str) -> list[ActiveMedication]:
        rows = await self._redis.hgetall(self.patient_key(patient_key))
        return sorted((_med_from_json(v) for k, v in rows.items() if not k.startswith((b"v:", b"u:"))),
                      key=lambda m: (m.start, m.prescription_code, m.line_number))

    async def clear_read_models(self) -> int:
        """Drops every patient list and every projected dispense, for a replay."""
        removed = 0
        async for key in self._redis.scan_iter(match=f"{READ_PREFIX}:patient:*", count=1000):
            removed += await self._redis.delete(key)
        for shard in range(self.layout.shards):
            async for key in self._redis.scan_iter(match=f"{self.layout.tag(shard)}:applied:*", count=1000):
                removed += await self._redis.delete(key)
            async for key in self._redis.scan_iter(match=f"{self.layout.tag(shard)}:rx:*", count=1000):
                fields = [f for f in await self._redis.hkeys(key) if f.startswith(b"d:") or f == b"completed"]
                if fields:
                    await self._redis.hdel(key, *fields)
        return removed


def _med_json(m: ActiveMedication) -> str:
    return json.dumps({
        "code": m.prescription_code, "line": m.line_number, "facility": m.facility_code, "prescriber": m.prescriber,
        "drug": m.drug_code, "ingredients": list(m.ingredients), "atc": m.atc,
        "daily_mg": {k: str(v) for k, v in sorted(m.daily_mg.items())}, "start": m.start.isoformat(),
        "days": m.days, "prescribed": m.prescribed, "dispensed": m.dispensed, "status": m.status.value,
        "valid_until": m.valid_until.isoformat(), "protected": m.protected,
    }, sort_keys=True)


def _med_from_json(raw: bytes) -> ActiveMedication:
    d = json.loads(raw)
    return ActiveMedication(
        prescription_code=d["code"], line_number=d["line"], facility_code=d["facility"], prescriber=d["prescriber"], drug_code=d["drug"],
        ingredients=tuple(d["ingredients"]), atc=d["atc"],
        daily_mg={k: Decimal(v) for k, v in d["daily_mg"].items()}, start=date.fromisoformat(d["start"]),
        days=d["days"], prescribed=d["prescribed"], dispensed=d["dispensed"], status=Status(d["status"]),
        valid_until=date.fromisoformat(d["valid_until"]), protected=d.get("protected", False))
