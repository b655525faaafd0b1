"""Rebuilds the pharmacy's Redis state from the topics alone, after Redis was lost or
damaged: every ledger (remaining quantity per line, status, successor, what a replacement
carried), every sale's record (what a reversal needs), and every point-of-sale retry record
(the idempotency key, the request's fingerprint, the answer it got), so that the same retries
after a rebuild never sell twice.

    python -m services.pharmacy.rebuild            # as an operator: reads the topics as `admin`

Sources: rx.prescriptions.v1 (issues, replacements, cancellations), rx.dispenses.v1 (sales,
reversals, the final counts of closed codes), rx.claims.v1 (the member of each claim, which a
reversal needs). The outbox is not touched: nothing is published again. Safe to run again."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import structlog

from services.common.events import EventDecodeError, decode, payload_of
from services.common.progress import Progress
from services.common.topic_reader import read_to_end, topic_size
from services.common.topics import CLAIMS, DISPENSES, PRESCRIPTIONS
from services.pharmacy.adapters.events import decode_prescription_event
from services.kernel.calendar import utc_now
from services.kernel import retention as retention_rules
from services.pharmacy.adapters.redis_store import receipt_json, record_json
from services.pharmacy.domain import dispensing
from services.kernel.retention import REVERSAL_WINDOW
from services.pharmacy.domain.events import PrescriptionClosed, PrescriptionIssued
from services.pharmacy.domain.model import (Closed, DispenseRecord, Prescription, Receipt, ReceiptLine,
                                            SoldLine)

log = structlog.get_logger("pharmacy-rebuild")


@dataclass
class Sale:
    dispense_id: str
    pharmacy: str
    at: datetime
    claim_id: str
    lines: tuple[SoldLine, ...]
    idempotency_key: str
    fingerprint: str
    receipt: Receipt
    reversed_at: datetime | None = None


@dataclass
class CodeHistory:
    """What the topics say of one code."""
    prescription: Prescription | None = None
    closed: tuple[str, str] | None = None          # (status, successor)
    closed_at: datetime | None = None               # when (its event's time), if known
    events: list = field(default_factory=list)      # ("sale", Sale) | ("reversal", dispense id, lines, at), in order
    announced: bool = False
    closed_counts: dict[int, int] | None = None     # DispensingClosed: what was dispensed under it when it closed


@dataclass
class LedgerImage:
    prescription: Prescription
    status: str
    successor: str
    settled: bool
    carried: dict[int, int]
    remaining: dict[int, int]
    announced: bool
    sales: list[Sale]
    snapshots: dict[str, dict[int, int]]            # dispense id -> remaining just after it
    closed_at: datetime | None = None


def histories(prescription_envelopes, dispense_envelopes) -> dict[str, CodeHistory]:
    found: dict[str, CodeHistory] = {}
    for envelope in prescription_envelopes:
        try:
            event = decode_prescription_event(envelope)
        except ValueError as exc:   # what the live worker sent to the dead-letter topic: not a ledger
            log.warning("rebuild.skipped", topic=PRESCRIPTIONS, event_id=envelope.event_id, error=str(exc)[:200])
            continue
        if isinstance(event, PrescriptionIssued):
            rx = event.prescription
            found.setdefault(rx.code, CodeHistory()).prescription = rx
            if rx.replaces_code:
                replaced = found.setdefault(rx.replaces_code, CodeHistory())
                replaced.closed, replaced.closed_at = ("replaced", rx.code), event.at
        elif isinstance(event, PrescriptionClosed):
            history = found.setdefault(event.code, CodeHistory())
            if history.closed is None:   # the first final status wins, as in the ledger
                history.closed, history.closed_at = (event.status, event.successor), event.at
    for envelope in dispense_envelopes:
        kind = envelope.WhichOneof("payload")
        payload = payload_of(envelope)
        if kind == "medication_dispensed":
            at = (payload.dispensed_at if payload.HasField("dispensed_at") else envelope.occurred_at).ToDatetime(
                tzinfo=timezone.utc)
            receipt = Receipt(payload.dispense_id, payload.claim_id, tuple(
                ReceiptLine(r.line_number, r.quantity, r.insured_vnd, r.fund_vnd, r.patient_vnd, r.reimbursable_vnd)
                for r in payload.receipt), payload.reimbursement_id)
            lines = tuple(SoldLine(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd, l.substitution)
                          for l in payload.lines)
            sale = Sale(payload.dispense_id, payload.pharmacy_code, at, payload.claim_id or payload.reimbursement_id,
                        lines, payload.idempotency_key, payload.request_fingerprint, receipt)
            found.setdefault(payload.prescription_code, CodeHistory()).events.append(("sale", sale))
        elif kind == "dispense_reversed":
            found.setdefault(payload.prescription_code, CodeHistory()).events.append(
                ("reversal", payload.dispense_id, tuple((l.line_number, l.quantity) for l in payload.lines),
                 envelope.occurred_at.ToDatetime(tzinfo=timezone.utc)))
        elif kind == "dispensing_closed":
            history = found.setdefault(payload.prescription_code, CodeHistory())
            history.announced = True
            history.closed_counts = {line.line_number: line.quantity for line in payload.lines}
    return found


def images(found: dict[str, CodeHistory]) -> dict[str, LedgerImage]:
    """Every ledger as the live system would have it, predecessors first (a replacement
    starts with what its predecessor dispensed taken, as when the live ledger settled)."""
    done: dict[str, LedgerImage] = {}

    def build(code: str, depth: int = 0) -> LedgerImage | None:
        if code in done:
            return done[code]
        history = found.get(code)
        if history is None or history.prescription is None or depth > 1000:
            return None
        rx = history.prescription
        carried: dict[int, int] = {}
        settled = True
        if rx.replaces_code:
            before = build(rx.replaces_code, depth + 1)
            if before is None:
                settled = False      # its predecessor's issue is not on the topic: it waits, as live
            else:
                # The count when it closed (a reversal after the close gives back to the old code
                # only: the patient may lose it, never gain it); computed when not announced yet.
                dispensed = found[rx.replaces_code].closed_counts or {
                    n: q - before.remaining.get(n, 0) for n, q in
                    ((l.line_number, l.quantity) for l in before.prescription.lines)}
                carried = dispensing.carry_over(Closed(before.prescription, before.status, code, dispensed), rx)
        prescribed = {l.line_number: l.quantity for l in rx.lines}
        remaining = {n: q - min(carried.get(n, 0), q) for n, q in prescribed.items()}
        sales, snapshots, by_id = [], {}, {}
        for event in history.events:
            if event[0] == "sale":
                sale = event[1]
                for line in sale.lines:
                    remaining[line.line_number] = remaining.get(line.line_number, 0) - line.quantity
                sales.append(sale)
                by_id[sale.dispense_id] = sale
                snapshots[sale.dispense_id] = dict(remaining)
            else:
                _, dispense_id, lines, at = event
                sale = by_id.get(dispense_id)
                if sale is None or sale.reversed_at is not None:
                    continue
                sale.reversed_at = at
                for line_number, quantity in lines:
                    remaining[line_number] = remaining.get(line_number, 0) + quantity
        status, successor = history.closed or ("active" if settled else "awaiting", "")
        done[code] = LedgerImage(rx, status, successor, settled, carried, remaining, history.announced, sales,
                                 snapshots, history.closed_at if history.closed else None)
        return done[code]

    for code in found:
        build(code)
    return done


def live_until(image: LedgerImage, retention: timedelta) -> datetime:
    """When Redis lets the ledger go (the rule of adapters/lua/keep_live.lua, which sets it)."""
    ends = retention_rules.window_end(image.prescription.valid_until)
    last_sale = max((sale.at for sale in image.sales), default=None)
    return max(ends, last_sale + REVERSAL_WINDOW if last_sale else ends) + retention


async def write(store, image: LedgerImage, members: dict[str, str], now: datetime) -> bool:
    """Puts one ledger, its sales and its retry records in Redis (the ledger replaced whole),
    with their expiry; a ledger whose live time has passed is not put back (False)."""
    rx, redis = image.prescription, store.redis
    ledger = store.ledger_key(rx.code)
    await redis.delete(ledger)
    until = live_until(image, store.retention)
    if until <= now:
        return False
    await store.open_ledger(rx, image.carried, settled=image.settled)
    async with redis.pipeline(transaction=True) as pipe:
        fields = {f"r:{n}": q for n, q in image.remaining.items()}
        fields["status"] = image.status
        fields["successor"] = image.successor
        deps = []
        if image.sales:
            fields["sales"] = "".join(f"{s.dispense_id} " for s in image.sales)
            fields["last_sale_ms"] = max(int(s.at.timestamp() * 1000) for s in image.sales)
        if image.closed_at is not None:
            fields["closed_ms"] = int(image.closed_at.timestamp() * 1000)
        if image.announced:
            fields["announced"] = "1"
        pipe.hset(ledger, mapping=fields)
        for sale in image.sales:
            record = DispenseRecord(sale.dispense_id, rx.code, sale.pharmacy, sale.at, sale.claim_id,
                                    members.get(sale.claim_id, ""), sale.lines)
            sale_key = store._sale_key(rx.code, sale.dispense_id)
            deps.append(sale_key)
            pipe.hset(sale_key, mapping={"doc": record_json(record)})
            if sale.reversed_at is not None:
                pipe.hset(sale_key, "reversed_at", sale.reversed_at.isoformat())
            if sale.idempotency_key:
                deps.append(store._idem_key(rx.code, sale.pharmacy, sale.idempotency_key))
                pipe.hset(deps[-1], mapping={
                    "fp": sale.fingerprint, "receipt": receipt_json(sale.receipt),
                    "remaining": json.dumps({str(n): q for n, q in image.snapshots[sale.dispense_id].items()})})
        if deps:
            pipe.hset(ledger, "deps", json.dumps(deps))
        # each key gets its expiry in the same transaction as its fields: a rebuild stopped after
        # it leaves nothing kept forever (keep_live below sets the same, by the same rule)
        for key in deps:
            pipe.pexpireat(key, retention_rules.epoch_ms(until))
        await pipe.execute()
    await store.keep_live(rx.code)
    return True


def _envelopes(kafka, topic: str):
    with Progress(f"read {topic}", total=topic_size(kafka, topic)) as progress:
        for record in read_to_end(kafka, topic):
            progress.advance()
            try:
                yield decode(record.value)
            except EventDecodeError:
                continue


async def rebuild(settings, now: datetime | None = None) -> dict[str, int]:
    """`now`: the clock (a ledger past its live time is not put back); default the current time."""
    from services.common.redis_client import connect
    from services.pharmacy.adapters.redis_store import RedisLedgerStore
    kafka = settings.common.kafka_access("admin")
    members = {}
    for envelope in _envelopes(kafka, CLAIMS):
        kind = envelope.WhichOneof("payload")
        if kind == "claim_submitted":
            members[envelope.claim_submitted.claim_id] = envelope.claim_submitted.member_id
        elif kind == "reimbursement_requested":
            members[envelope.reimbursement_requested.reimbursement_id] = envelope.reimbursement_requested.member_id
    found = histories(_envelopes(kafka, PRESCRIPTIONS), _envelopes(kafka, DISPENSES))
    built = images(found)
    client = connect(settings.common, "pharmacy")
    store = RedisLedgerStore(client, settings.common.outbox_shards,
                                 timedelta(days=settings.common.retention_days))
    try:
        with Progress("write ledgers", total=len(built)) as progress:
            now, restored = now or utc_now(), 0
            for image in built.values():
                restored += await write(store, image, members, now)
                progress.advance()
    finally:
        await client.aclose()
    sales = sum(len(i.sales) for i in built.values())
    log.info("ledgers.rebuilt", ledgers=restored, past_their_live_time=len(built) - restored, sales=sales)
    return {"ledgers": restored, "past_their_live_time": len(built) - restored, "sales": sales,
            "retry_records": sum(1 for i in built.values() for s in i.sales if s.idempotency_key)}


def main() -> None:
    from services.common.logging import configure_logging, load_mask_key
    from services.pharmacy.config import Settings
    settings = Settings.from_env()
    configure_logging("pharmacy-rebuild", fmt=settings.common.log_format, level=settings.common.log_level,
                      mask_key=load_mask_key(settings.common.run_dir, settings.common.log_mask_key))
    report = asyncio.run(rebuild(settings))
    print(f"rebuilt {report['ledgers']} ledgers, {report['sales']} sales, {report['retry_records']} retry records")


if __name__ == "__main__":
    main()
