"""The prescribing service's Redis keyspace: prescriptions, idempotency records and the
outbox (write side), and the patients' medication lists (read model).

Every key of one facility's prescriptions lives in that facility's outbox shard, so that a
command's script touches one Redis Cluster slot; a code's first five characters are its
facility, so any code leads to its shard."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from eprescription.common.v1 import common_pb2

from services.common.events import KafkaRecord
from services.common.outbox import OutboxLayout, OutboxScript
from services.prescribing.domain.model import ActiveMedication, Status

SERVICE = "prescribing"
READ_PREFIX = "prescribing:read"

# Shared by the command scripts. ARGV of a new prescription: fingerprint, response,
# content, valid_until, patient_key, prescribed.
_COMMANDS = """
local function replayed(req)
  local prior = redis.call('HGET', req, 'fp')
  if prior then return {'duplicate', prior, redis.call('HGET', req, 'response')} end
end
local function refusal(rx)
  local status = redis.call('HGET', rx, 'status')
  if not status then return {'not_found'} end
  if status ~= 'active' then return {'state', status} end
  if redis.call('HGET', rx, 'completed') == '1' then return {'state', 'completed'} end
end
local function create(rx, req)
  redis.call('HSET', rx, 'content', ARGV[3], 'status', 'active', 'valid_until', ARGV[4],
             'patient_key', ARGV[5], 'prescribed', ARGV[6], 'v', 1)
  redis.call('HSET', req, 'fp', ARGV[1], 'response', ARGV[2])
end
"""

_ISSUE = _COMMANDS + """
local earlier = replayed(KEYS[3])
if earlier then return earlier end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'collision'} end
create(KEYS[2], KEYS[3])
outbox_append(KEYS[1])
return {'done'}
"""

_REPLACE = _COMMANDS + """
local earlier = replayed(KEYS[4]) or refusal(KEYS[2])
if earlier then return earlier end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'collision'} end
redis.call('HSET', KEYS[2], 'status', 'replaced', 'replaced_by', ARGV[7])
redis.call('HINCRBY', KEYS[2], 'v', 1)
create(KEYS[3], KEYS[4])
outbox_append(KEYS[1])
return {'done'}
"""

_CANCEL = _COMMANDS + """
if redis.call('HGET', KEYS[2], 'status') == 'cancelled' then return {'already'} end
local refused = refusal(KEYS[2])
if refused then return refused end
redis.call('HSET', KEYS[2], 'status', 'cancelled', 'cancel_reason', ARGV[1])
redis.call('HINCRBY', KEYS[2], 'v', 1)
outbox_append(KEYS[1])
return {'done'}
"""

# Projection of a dispense or its reversal: applied once per event id, atomically with the
# change, so a redelivered event changes nothing.
_APPLY_DISPENSE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
local sign = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], 'd:' .. ARGV[i], sign * tonumber(ARGV[i + 1]))
end
local prescribed = cjson.decode(redis.call('HGET', KEYS[1], 'prescribed'))
local complete = '1'
for line, qty in pairs(prescribed) do
  if tonumber(redis.call('HGET', KEYS[1], 'd:' .. line) or '0') < qty then complete = '0' end
end
redis.call('HSET', KEYS[1], 'completed', complete)
redis.call('HINCRBY', KEYS[1], 'v', 1)
return 1
"""

# A patient's entries for one prescription, written only if they are not older than what
# is there: two projectors racing (a worker and a replay) cannot leave a stale entry.
_PUT_ENTRIES = """
local version = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local seen = tonumber(redis.call('HGET', KEYS[1], 'v:' .. ARGV[i]) or '0')
  if seen <= version then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1], 'v:' .. ARGV[i], version)
  end
end
return 1
"""


@dataclass(frozen=True)
class Outcome:
    result: str            # done | duplicate | collision | not_found | state | already
    detail: bytes = b""    # prior fingerprint, or the blocking state
    response: bytes = b""  # the first response, for a duplicate request


@dataclass(frozen=True)
class StoredPrescription:
    content: common_pb2.Prescription
    recorded_status: str
    valid_until: date
    replaced_by: str
    patient_key: str
    prescribed: dict[int, int]
    dispensed: dict[int, int]
    version: int


def _outcome(reply) -> Outcome:
    parts = [p if isinstance(p, bytes) else str(p).encode() for p in reply]
    return Outcome(parts[0].decode(), *parts[1:])


class RedisPrescriptionStore:
    def __init__(self, redis, shards: int):
        self._redis = redis
        self.redis = redis
        self.layout = OutboxLayout(SERVICE, shards)
        self._issue = OutboxScript(redis, _ISSUE)
        self._replace = OutboxScript(redis, _REPLACE)
        self._cancel = OutboxScript(redis, _CANCEL)
        self._apply_dispense = redis.register_script(_APPLY_DISPENSE)
        self._put_entries = redis.register_script(_PUT_ENTRIES)

    def _shard(self, facility_code: str) -> int:
        return self.layout.shard_of(facility_code.lower())

    def _rx_key(self, code: str) -> str:
        return self.layout.key(self._shard(code[:5]), "rx", code)

    def _req_key(self, facility: str, request_id: str) -> str:
        return self.layout.key(self._shard(facility), "req", facility.lower(), request_id)

    async def issue(self, *, facility: str, request_id: str, fingerprint: str, response: bytes,
                    rx: common_pb2.Prescription, patient_key: str, valid_until: date,
                    records: list[KafkaRecord]) -> Outcome:
        shard = self._shard(facility)
        keys = [self.layout.stream(shard), self._rx_key(rx.code), self._req_key(facility, request_id)]
        args = [fingerprint, response, rx.SerializeToString(deterministic=True), valid_until.isoformat(),
                patient_key, _prescribed_json(rx)]
        return _outcome(await self._issue(keys, args, records))

    async def replace(self, *, facility: str, request_id: str, fingerprint: str, response: bytes, old_code: str,
                      rx: common_pb2.Prescription, patient_key: str, valid_until: date,
                      records: list[KafkaRecord]) -> Outcome:
        shard = self._shard(facility)
        keys = [self.layout.stream(shard), self._rx_key(old_code), self._rx_key(rx.code),
                self._req_key(facility, request_id)]
        args = [fingerprint, response, rx.SerializeToString(deterministic=True), valid_until.isoformat(),
                patient_key, _prescribed_json(rx), rx.code]
        return _outcome(await self._replace(keys, args, records))

    async def cancel(self, *, code: str, reason: str, records: list[KafkaRecord]) -> Outcome:
        shard = self._shard(code[:5])
        return _outcome(await self._cancel([self.layout.stream(shard), self._rx_key(code)], [reason], records))

    async def prior(self, facility: str, request_id: str) -> tuple[str, bytes] | None:
        """The fingerprint and response of an earlier request with this id, if any."""
        fp, response = await self._redis.hmget(self._req_key(facility, request_id), ["fp", "response"])
        return None if fp is None else (fp.decode(), response)

    async def get(self, code: str) -> StoredPrescription | None:
        fields = await self._redis.hgetall(self._rx_key(code))
        if not fields:
            return None
        content = common_pb2.Prescription()
        content.ParseFromString(fields[b"content"])
        dispensed = {int(k[2:]): int(v) for k, v in fields.items() if k.startswith(b"d:")}
        return StoredPrescription(
            content=content, recorded_status=fields[b"status"].decode(),
            valid_until=date.fromisoformat(fields[b"valid_until"].decode()),
            replaced_by=fields.get(b"replaced_by", b"").decode(), patient_key=fields[b"patient_key"].decode(),
            prescribed={int(k): v for k, v in json.loads(fields[b"prescribed"]).items()}, dispensed=dispensed,
            version=int(fields.get(b"v", 0)))

    async def apply_dispense(self, *, event_id: str, code: str, sign: int, lines: list[tuple[int, int]]) -> int:
        """1 applied, 0 already applied, -1 unknown prescription."""
        shard = self._shard(code[:5])
        args: list = [event_id, sign]
        for line, qty in lines:
            args += [line, qty]
        keys = [self._rx_key(code), self.layout.key(shard, "applied", code)]
        return int(await self._apply_dispense(keys=keys, args=args))

    # Read model: a hash per patient, a field per prescription line.

    def patient_key(self, patient_key: str) -> str:
        return f"{READ_PREFIX}:patient:{{{patient_key}}}"

    async def put_medications(self, patient_key: str, meds: list[ActiveMedication], version: int) -> None:
        args: list = [version]
        for m in meds:
            args += [f"{m.prescription_code}#{m.line_number}", _med_json(m)]
        if meds:
            await self._put_entries(keys=[self.patient_key(patient_key)], args=args)

    async def medications(self, patient_key: str) -> list[ActiveMedication]:
        rows = await self._redis.hgetall(self.patient_key(patient_key))
        return sorted((_med_from_json(v) for k, v in rows.items() if not k.startswith(b"v:")),
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


def _prescribed_json(rx: common_pb2.Prescription) -> str:
    return json.dumps({str(line.line_number): line.quantity for line in rx.lines}, sort_keys=True)


def _med_json(m: ActiveMedication) -> str:
    return json.dumps({
        "code": m.prescription_code, "line": m.line_number, "facility": m.facility_code, "prescriber": m.prescriber,
        "drug": m.drug_code, "ingredients": list(m.ingredients), "atc": m.atc,
        "daily_mg": {k: str(v) for k, v in sorted(m.daily_mg.items())}, "start": m.start.isoformat(),
        "days": m.days, "prescribed": m.prescribed, "dispensed": m.dispensed, "status": m.status.value,
        "valid_until": m.valid_until.isoformat(),
    }, sort_keys=True)


def _med_from_json(raw: bytes) -> ActiveMedication:
    d = json.loads(raw)
    return ActiveMedication(
        prescription_code=d["code"], line_number=d["line"], facility_code=d["facility"], prescriber=d["prescriber"], drug_code=d["drug"],
        ingredients=tuple(d["ingredients"]), atc=d["atc"],
        daily_mg={k: Decimal(v) for k, v in d["daily_mg"].items()}, start=date.fromisoformat(d["start"]),
        days=d["days"], prescribed=d["prescribed"], dispensed=d["dispensed"], status=Status(d["status"]),
        valid_until=date.fromisoformat(d["valid_until"]))
