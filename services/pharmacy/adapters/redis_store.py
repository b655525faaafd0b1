"""The pharmacy service's Redis keyspace: the dispensing ledger (remaining quantity per
prescription line), every sale, idempotency records, and the outbox.

All keys of one prescription share its shard's hash tag, so a sale is one Lua script on one
Redis Cluster slot (lua/dispense.lua): it re-checks the state the domain's plan depends on,
applies the plan and appends its events, or does nothing at all. Scripts take their
arguments as one JSON object and answer one; `_decode` reads every answer."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta

from services.common.outbox import OutboxLayout, OutboxScript
from services.common.redis_client import replication_barrier
from services.common.scripts import lua
from services.pharmacy.adapters import events
from services.kernel.calendar import VIETNAM
from services.kernel.retention import DEFAULT_RETENTION, LONGEST_WINDOW, epoch_ms, window_end
from services.pharmacy.domain.dispensing import (REVERSAL_WINDOW, AlreadyApplied, AlreadyReversed, Applied, DispenseOutcome,
                                                 DispensePlan, LedgerMissing, RecordMissing, ReversalPlan, Reversed,
                                                 ReverseOutcome, StateChanged)
from services.pharmacy.domain.events import DispensingClosed
from services.pharmacy.domain.model import (Closed, DispenseRecord, Ledger, PriorDispense, Prescription, Receipt,
                                            ReceiptLine, SoldLine)

SERVICE = "pharmacy"
KEEP_LIVE = lua(__file__, "keep_live")


def window_end_ms(valid_until: date) -> int:
    """The end of the last day of the window, in Vietnam (the next day's midnight there)."""
    return epoch_ms(window_end(valid_until))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _remaining(raw) -> dict[int, int]:
    return {int(k): int(v) for k, v in json.loads(raw).items()}


def receipt_json(receipt: Receipt) -> str:
    return json.dumps({"dispense_id": receipt.dispense_id, "claim_id": receipt.claim_id,
                       "reimbursement_id": receipt.reimbursement_id,
                       "lines": [[l.line_number, l.quantity, l.insured_vnd, l.fund_vnd, l.patient_vnd, l.reimbursable_vnd]
                                 for l in receipt.lines]})


def receipt_of(raw) -> Receipt:
    d = json.loads(raw)
    return Receipt(d["dispense_id"], d["claim_id"], tuple(ReceiptLine(*line) for line in d["lines"]),
                   d.get("reimbursement_id", ""))


def record_json(record: DispenseRecord) -> str:
    return json.dumps({"dispense_id": record.dispense_id, "code": record.code, "pharmacy": record.pharmacy,
                       "dispensed_at": record.dispensed_at.isoformat(), "claim_id": record.claim_id,
                       "member_id": record.member_id,
                       "lines": [[l.line_number, l.drug_code, l.quantity, l.unit_price_vnd, l.substitution]
                                 for l in record.lines]})


def record_of(raw, reversed_at=None) -> DispenseRecord:
    d = json.loads(raw)
    return DispenseRecord(d["dispense_id"], d["code"], d["pharmacy"], datetime.fromisoformat(d["dispensed_at"]),
                          d["claim_id"], d["member_id"], tuple(SoldLine(*line) for line in d["lines"]),
                          datetime.fromisoformat(_text(reversed_at)) if reversed_at else None)


def _decode(reply) -> dict:
    """Every script answers one JSON object with an `outcome`."""
    answer = json.loads(reply)
    if not isinstance(answer, dict) or "outcome" not in answer:
        raise ValueError(f"a ledger script answered {reply!r}")
    return answer


def _dispense_outcome(answer: dict) -> DispenseOutcome:
    match answer["outcome"]:
        case "applied":
            return Applied(_remaining(answer["remaining"]))
        case "duplicate":
            return AlreadyApplied(PriorDispense(answer["fingerprint"], receipt_of(answer["receipt"]),
                                                _remaining(answer["remaining"])))
        case "refused":
            return StateChanged(answer["rule"], answer.get("line"), answer.get("remaining"), answer.get("successor", ""))
        case "missing":
            return LedgerMissing()
    raise ValueError(f"unknown dispense outcome {answer!r}")


_REVERSE_OUTCOMES = {"reversed": Reversed, "already": AlreadyReversed, "missing": RecordMissing}


PRIOR_FIELDS = ["fp", "receipt", "remaining"]


def _ledger_of(fields: dict) -> Ledger | None:
    if not fields or b"content" not in fields:
        return None
    remaining = {int(k[2:]): int(v) for k, v in fields.items() if k.startswith(b"r:")}
    return Ledger(events.prescription_of(fields[b"content"]), fields[b"status"].decode(), remaining,
                  fields.get(b"successor", b"").decode())


class RedisLedgerStore:
    def __init__(self, redis, shards: int, retention: timedelta = DEFAULT_RETENTION):
        self.redis = redis
        self.layout = OutboxLayout(SERVICE, shards)
        self.retention = retention
        self._t = {"retention_ms": int(retention.total_seconds() * 1000),
                   "reversal_ms": int(REVERSAL_WINDOW.total_seconds() * 1000),
                   "unopened_ms": int(LONGEST_WINDOW.total_seconds() * 1000)}
        self._open = redis.register_script(KEEP_LIVE + lua(__file__, "open_ledger"))
        self._close = redis.register_script(KEEP_LIVE + lua(__file__, "close_ledger"))
        self._activate = redis.register_script(KEEP_LIVE + lua(__file__, "activate"))
        self._announce = OutboxScript(redis, lua(__file__, "announce_closed"))
        self._dispense = OutboxScript(redis, KEEP_LIVE + lua(__file__, "dispense"))
        self._reverse = OutboxScript(redis, KEEP_LIVE + lua(__file__, "reverse"))
        self._keep_live = redis.register_script(KEEP_LIVE + "return keep_live(KEYS[1], cjson.decode(ARGV[1]))")

    def _shard(self, code: str) -> int:
        return self.layout.shard_of(code)

    def ledger_key(self, code: str) -> str:
        return self.layout.key(self._shard(code), "ledger", code)

    def _idem_key(self, code: str, pharmacy: str, key: str) -> str:
        # Scoped to the prescription: the same key is the same request only for the same code.
        return self.layout.key(self._shard(code), "idem", pharmacy, code, key)

    def _sale_key(self, code: str, dispense_id: str) -> str:
        return self.layout.key(self._shard(code), "dispense", dispense_id)

    async def open_ledger(self, prescription: Prescription, carried: dict[int, int] | None = None,
                          settled: bool = True) -> bool:
        carried = carried or {}
        lines = [[l.line_number, l.quantity,
                  f"{l.batch_start.isoformat()}|{l.batch_end.isoformat()}" if l.batch_start else "",
                  carried.get(l.line_number, 0)]
                 for l in prescription.lines]
        args = [json.dumps({"valid_until": prescription.valid_until.isoformat(), "settled": settled, "lines": lines,
                            "valid_end_ms": window_end_ms(prescription.valid_until), "t": self._t}),
                prescription.document]
        return bool(await self._open(keys=[self.ledger_key(prescription.code)], args=args))

    async def close_ledger(self, code: str, status: str, successor: str = "",
                           closed_at: datetime | None = None) -> Closed | None:
        closed_ms = epoch_ms(closed_at or datetime.now(VIETNAM))
        answer = _decode(await self._close(keys=[self.ledger_key(code)], args=[json.dumps(
            {"status": status, "successor": successor, "closed_ms": closed_ms, "t": self._t})]))
        if answer["outcome"] != "closed":
            return None
        ledger = await self.ledger(code)
        return Closed(ledger.prescription, answer["status"], answer["successor"],
                      {int(k): int(v) for k, v in (answer["dispensed"] or {}).items()})

    async def activate(self, code: str, carried: dict[int, int]) -> bool:
        args = json.dumps({"carried": [[n, q] for n, q in carried.items()], "t": self._t})
        return bool(await self._activate(keys=[self.ledger_key(code)], args=[args]))

    async def keep_live(self, code: str) -> int:
        """Sets the expiry of the code's ledger and what goes with it from what the ledger holds
        (lua/keep_live.lua; every script that changes a ledger does it too). Unix ms."""
        return int(await self._keep_live(keys=[self.ledger_key(code)], args=[json.dumps(self._t)]))

    async def announce(self, event: DispensingClosed) -> bool:
        code = event.closed.prescription.code
        keys = [self.layout.stream(self._shard(code)), self.ledger_key(code)]
        return bool(await self._announce(keys, [], [events.encode(event)]))

    async def ledger(self, code: str) -> Ledger | None:
        return _ledger_of(await self.redis.hgetall(self.ledger_key(code)))

    async def prior(self, code: str, pharmacy: str, key: str) -> PriorDispense | None:
        idem = self._idem_key(code, pharmacy, key)
        return await self._prior_of(idem, await self.redis.hmget(idem, PRIOR_FIELDS))

    async def prior_and_ledger(self, code: str, pharmacy: str, key: str) -> tuple[PriorDispense | None,
                                                                                   Ledger | None]:
        idem = self._idem_key(code, pharmacy, key)
        async with self.redis.pipeline(transaction=False) as pipe:   # one hash slot: the code's
            pipe.hmget(idem, PRIOR_FIELDS)
            pipe.hgetall(self.ledger_key(code))
            prior, fields = await pipe.execute()
        return await self._prior_of(idem, prior), _ledger_of(fields)

    async def _prior_of(self, idem: str, values) -> PriorDispense | None:
        fp, receipt, remaining = values
        if fp is None:
            return None
        await replication_barrier(self.redis, idem)   # an answer given again is a replicated one
        return PriorDispense(_text(fp), receipt_of(receipt), _remaining(remaining))

    async def dispense(self, plan: DispensePlan) -> DispenseOutcome:
        command = plan.command
        keys = [self.layout.stream(self._shard(command.code)), self.ledger_key(command.code),
                self._idem_key(command.code, command.pharmacy, command.idempotency_key),
                self._sale_key(command.code, plan.receipt.dispense_id)]
        args = json.dumps({"fingerprint": command.fingerprint(), "receipt": receipt_json(plan.receipt),
                           "record": record_json(plan.record), "dispense_id": plan.receipt.dispense_id,
                           "today": plan.today.isoformat(), "now_ms": epoch_ms(plan.record.dispensed_at),
                           "lines": [list(q) for q in plan.quantities], "t": self._t})
        reply = await self._dispense(keys, [args], [events.encode(e) for e in plan.events])
        return _dispense_outcome(_decode(reply))

    async def dispense_record(self, code: str, dispense_id: str) -> DispenseRecord | None:
        doc, reversed_at = await self.redis.hmget(self._sale_key(code, dispense_id), ["doc", "reversed_at"])
        return record_of(doc, reversed_at) if doc else None

    async def dispenses(self, code: str) -> list[DispenseRecord]:
        listed = await self.redis.hget(self.ledger_key(code), "sales")
        ids = _text(listed).split() if listed else []
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for dispense_id in ids:
                pipe.hmget(self._sale_key(code, dispense_id), ["doc", "reversed_at"])
            rows = await pipe.execute()
        return [record_of(doc, reversed_at) for doc, reversed_at in rows if doc]

    async def reverse(self, plan: ReversalPlan) -> ReverseOutcome:
        code = plan.record.code
        keys = [self.layout.stream(self._shard(code)), self.ledger_key(code),
                self._sale_key(code, plan.record.dispense_id)]
        args = json.dumps({"reversed_at": plan.reversed_at.isoformat(), "lines": [list(q) for q in plan.quantities],
                           "t": self._t})
        reply = await self._reverse(keys, [args], [events.encode(e) for e in plan.events])
        return _REVERSE_OUTCOMES[_decode(reply)["outcome"]]()
