"""The pharmacy service's Redis keyspace: the dispensing ledger (remaining quantity per
prescription line), every dispense, idempotency records, and the outbox.

All keys of one prescription share its shard's hash tag, so a dispense is one Lua script
on one Redis Cluster slot: it checks every rule that depends on state, applies the change
and appends the events, or does nothing at all."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from eprescription.common.v1 import common_pb2

from services.common.events import KafkaRecord
from services.common.outbox import OutboxLayout, OutboxScript

SERVICE = "pharmacy"

# The ledger of a prescription is created once, from its PrescriptionIssued event.
_OPEN_LEDGER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'content', ARGV[1], 'status', ARGV[2], 'valid_until', ARGV[3], 'lines', ARGV[4])
for i = 5, #ARGV, 3 do
  redis.call('HSET', KEYS[1], 'p:' .. ARGV[i], ARGV[i + 1], 'r:' .. ARGV[i], ARGV[i + 1], 'b:' .. ARGV[i], ARGV[i + 2])
end
return 1
"""

# Cancelled and replaced are final; they win whatever order the events come in.
_CLOSE_LEDGER = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'pending', '1')
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return 1
"""

# KEYS: outbox, ledger, idempotency record, dispense record
# ARGV: fingerprint, template (JSON), today, dispense record (JSON), n, then n x (line, qty)
_DISPENSE = """
local prior = redis.call('HGET', KEYS[3], 'fp')
if prior then
  return {'duplicate', prior, redis.call('HGET', KEYS[3], 'template'), redis.call('HGET', KEYS[3], 'remaining')}
end
local status = redis.call('HGET', KEYS[2], 'status')
if not status or redis.call('HEXISTS', KEYS[2], 'content') == 0 then return {'not_found'} end
if status ~= 'active' then return {'refused', 'PRESCRIPTION_' .. string.upper(status)} end
local today = ARGV[3]
if today > redis.call('HGET', KEYS[2], 'valid_until') then return {'refused', 'VALIDITY_WINDOW_ENDED'} end
local n = tonumber(ARGV[5])
for i = 0, n - 1 do
  local line, qty = ARGV[6 + i * 2], tonumber(ARGV[7 + i * 2])
  local remaining = redis.call('HGET', KEYS[2], 'r:' .. line)
  if not remaining then return {'refused', 'LINE_UNKNOWN', line} end
  local batch = redis.call('HGET', KEYS[2], 'b:' .. line)
  if batch ~= '' then
    local sep = string.find(batch, '|', 1, true)
    if today < string.sub(batch, 1, sep - 1) or today > string.sub(batch, sep + 1) then
      return {'refused', 'OUTSIDE_BATCH_DATES', line}
    end
  end
  if qty > tonumber(remaining) then return {'refused', 'QUANTITY_EXCEEDS_REMAINING', line, remaining} end
end
for i = 0, n - 1 do
  redis.call('HINCRBY', KEYS[2], 'r:' .. ARGV[6 + i * 2], -tonumber(ARGV[7 + i * 2]))
end
local after = {}
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'r:' then after[string.sub(fields[i], 3)] = tonumber(fields[i + 1]) end
end
local remaining = cjson.encode(after)
redis.call('SET', KEYS[4], ARGV[4])
redis.call('HSET', KEYS[3], 'fp', ARGV[1], 'template', ARGV[2], 'remaining', remaining)
outbox_append(KEYS[1])
return {'done', ARGV[1], ARGV[2], remaining}
"""

# KEYS: outbox, ledger, dispense record; ARGV: reversed-at, n, n x (line, qty)
_REVERSE = """
local record = redis.call('GET', KEYS[3])
if not record then return {'not_found'} end
local d = cjson.decode(record)
if d.reversed_at then return {'already', record} end
for i = 0, tonumber(ARGV[2]) - 1 do
  redis.call('HINCRBY', KEYS[2], 'r:' .. ARGV[3 + i * 2], tonumber(ARGV[4 + i * 2]))
end
d.reversed_at = ARGV[1]
record = cjson.encode(d)
redis.call('SET', KEYS[3], record)
outbox_append(KEYS[1])
return {'done', record}
"""


@dataclass(frozen=True)
class Ledger:
    content: common_pb2.Prescription | None
    status: str
    valid_until: date | None
    prescribed: dict[int, int]
    remaining: dict[int, int]
    batches: dict[int, str]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PharmacyStore:
    def __init__(self, redis, shards: int):
        self.redis = redis
        self.layout = OutboxLayout(SERVICE, shards)
        self._open = redis.register_script(_OPEN_LEDGER)
        self._close = redis.register_script(_CLOSE_LEDGER)
        self._dispense = OutboxScript(redis, _DISPENSE)
        self._reverse = OutboxScript(redis, _REVERSE)

    def _shard(self, code: str) -> int:
        return self.layout.shard_of(code)

    def ledger_key(self, code: str) -> str:
        return self.layout.key(self._shard(code), "ledger", code)

    def _idem_key(self, code: str, pharmacy: str, key: str) -> str:
        # Scoped to the prescription: the same key is the same request only for the same code.
        return self.layout.key(self._shard(code), "idem", pharmacy, code, key)

    def _dispense_key(self, code: str, dispense_id: str) -> str:
        return self.layout.key(self._shard(code), "dispense", dispense_id)

    async def open_ledger(self, rx: common_pb2.Prescription, valid_until: date,
                          batches: dict[int, tuple[date, date]]) -> bool:
        args: list = [rx.SerializeToString(deterministic=True), "active", valid_until.isoformat(), len(rx.lines)]
        for line in rx.lines:
            batch = batches.get(line.line_number)
            args += [line.line_number, line.quantity, f"{batch[0].isoformat()}|{batch[1].isoformat()}" if batch else ""]
        opened = bool(await self._open(keys=[self.ledger_key(rx.code)], args=args))
        if not opened:
            # A cancel or replace that overtook the issue left a placeholder: fill it in, keep its status.
            fields = await self.redis.hgetall(self.ledger_key(rx.code))
            if fields.get(b"pending") == b"1" and b"content" not in fields:
                mapping = {"content": args[0], "valid_until": args[2], "lines": args[3]}
                for i in range(4, len(args), 3):
                    n = args[i]
                    mapping.update({f"p:{n}": args[i + 1], f"r:{n}": args[i + 1], f"b:{n}": args[i + 2]})
                await self.redis.hset(self.ledger_key(rx.code), mapping=mapping)
                await self.redis.hdel(self.ledger_key(rx.code), "pending")
        return opened

    async def close_ledger(self, code: str, status: str) -> None:
        await self._close(keys=[self.ledger_key(code)], args=[status])

    async def ledger(self, code: str) -> Ledger | None:
        fields = await self.redis.hgetall(self.ledger_key(code))
        if not fields or b"content" not in fields:
            return None
        content = common_pb2.Prescription.FromString(fields[b"content"])
        pick = lambda prefix: {int(k[len(prefix):]): v for k, v in fields.items() if k.startswith(prefix)}  # noqa: E731
        return Ledger(content, fields[b"status"].decode(), date.fromisoformat(fields[b"valid_until"].decode()),
                      {k: int(v) for k, v in pick(b"p:").items()}, {k: int(v) for k, v in pick(b"r:").items()},
                      {k: v.decode() for k, v in pick(b"b:").items()})

    async def prior(self, code: str, pharmacy: str, key: str) -> tuple[str, str, str] | None:
        fp, template, remaining = await self.redis.hmget(self._idem_key(code, pharmacy, key),
                                                         ["fp", "template", "remaining"])
        return None if fp is None else (_text(fp), _text(template), _text(remaining))

    async def dispense(self, *, code: str, pharmacy: str, key: str, fingerprint: str, template: str, today: date,
                       dispense_id: str, record: str, lines: list[tuple[int, int]],
                       records: list[KafkaRecord]) -> list[str]:
        shard = self._shard(code)
        keys = [self.layout.stream(shard), self.ledger_key(code), self._idem_key(code, pharmacy, key),
                self._dispense_key(code, dispense_id)]
        args: list = [fingerprint, template, today.isoformat(), record, len(lines)]
        for line, qty in lines:
            args += [line, qty]
        return [_text(p) for p in await self._dispense(keys, args, records)]

    async def dispense_record(self, code: str, dispense_id: str) -> dict | None:
        raw = await self.redis.get(self._dispense_key(code, dispense_id))
        return json.loads(raw) if raw else None

    async def reverse(self, *, code: str, dispense_id: str, reversed_at: str, lines: list[tuple[int, int]],
                      records: list[KafkaRecord]) -> list[str]:
        shard = self._shard(code)
        args: list = [reversed_at, len(lines)]
        for line, qty in lines:
            args += [line, qty]
        keys = [self.layout.stream(shard), self.ledger_key(code), self._dispense_key(code, dispense_id)]
        return [_text(p) for p in await self._reverse(keys, args, records)]
