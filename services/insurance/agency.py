"""The insurance agency's consumer of rx.claims.adjudicated.v1.

    python -m services.insurance.agency follow [--group G] [--max N] [--idle-exit S]
        prints each adjudication as it arrives, in its own consumer group, and resumes
        where that group stopped;
    python -m services.insurance.agency export --month 2026-11 --out claims.csv
        writes a month of claims (by dispense date) with the claims-XML drug-table columns.

Each claim's latest outcome wins (a reversal replaces the adjudication); events are
de-duplicated on their event id."""
from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from eprescription.events.v1 import events_pb2
from kafka import KafkaConsumer

from services.common import dates
from services.common.config import CommonSettings
from services.common.events import EventDecodeError, decode, payload_of
from services.common.national_codes import time_to_claims_xml
from services.common.progress import Progress
from services.common.redis_client import connect
from services.common.topic_reader import read_to_end, topic_size
from services.common.kafka_security import AGENCY
from services.common.topics import ALERTS, CLAIMS_ADJUDICATED
from services.insurance import xml130
from services.insurance.adapters.redis_store import RedisInsuranceStore

# Decision 130/QD-BYT table 2 (drugs) names, with the member and card of table 1.
COLUMNS = ("MA_LK", "STT", "MA_BN", "MA_THE", "MA_THUOC", "SO_LUONG", "DON_GIA", "TYLE_TT", "THANH_TIEN",
           "T_BHTT", "T_BNCCT", "T_BNTT", "MUC_HUONG", "NGAY_YL", "KET_QUA", "LY_DO")
OUTCOME = {v.number: v.name.removeprefix("CLAIM_OUTCOME_") for v in events_pb2.ClaimOutcome.DESCRIPTOR.values}
LINE_OUTCOME = {v.number: v.name.removeprefix("LINE_OUTCOME_") for v in events_pb2.LineOutcome.DESCRIPTOR.values}


# A reimbursement decision: what BHXH pays the patient back for a retail purchase (Decree 188/2025 art. 60).
REIMBURSEMENT_COLUMNS = ("MA_YC", "STT", "MA_BN", "MA_THE", "MA_THUOC", "SO_LUONG", "DON_GIA", "TYLE_TT",
                         "THANH_TIEN", "T_HOANTRA", "SO_HOADON", "MA_CSKCB", "NGAY_QD", "KET_QUA", "LY_DO")


def reimbursement(claim: events_pb2.ClaimAdjudicated) -> bool:
    return claim.payee == events_pb2.PAYEE_PATIENT


def describe(claim: events_pb2.ClaimAdjudicated) -> str:
    kind = "reimbursement to the patient" if reimbursement(claim) else "claim"
    paid = "reimbursed" if reimbursement(claim) else "fund"
    lines = "; ".join(f"{l.drug_code} x{l.quantity}: {LINE_OUTCOME[l.outcome]} {l.reason_code} {paid} {l.fund_vnd} "
                      f"patient {l.patient_vnd}" for l in claim.lines)
    invoice = f" invoice {claim.invoice_number}" if claim.invoice_number else ""
    revision = f" (revision {claim.revision}, adjusted by {claim.adjusted_by_claim_id})" if claim.revision else ""
    return (f"{kind} {claim.claim_id} {OUTCOME[claim.outcome]} {claim.reason_code}{revision} member {claim.member_id} "
            f"card {claim.card_code}{invoice} dispensed {dates.from_proto(claim.dispensed_on)} {paid} "
            f"{claim.fund_total_vnd} patient {claim.patient_total_vnd} | {lines}")


def describe_alert(alert: events_pb2.SafetyAlert) -> str:
    kind = events_pb2.AlertKind.Name(alert.kind).removeprefix("ALERT_KIND_").lower().replace("_", " ")
    return (f"alert {alert.alert_id} {kind}: patient {alert.patient_key} prescriptions "
            f"{', '.join(alert.prescription_codes)} prescribers {', '.join(alert.prescriber_ids)} | {alert.detail}")


def describe_event(envelope) -> str | None:
    """The line the agency sees for an event of its topics (outcomes and alerts); None for
    anything else."""
    kind = envelope.WhichOneof("payload")
    if kind == "claim_adjudicated":
        return describe(envelope.claim_adjudicated)
    if kind == "safety_alert":
        return describe_alert(envelope.safety_alert)
    return None


def follow(settings: CommonSettings, group: str, max_events: int | None, idle_exit: float | None) -> int:
    """Shows every outcome (claims and reimbursement decisions) and every alert, as they come."""
    # The agency's principal reads the outcomes and the alerts, nothing else (its Kafka ACLs).
    consumer = KafkaConsumer(CLAIMS_ADJUDICATED, ALERTS, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", **settings.kafka_access(AGENCY).kwargs())
    seen: set[str] = set()
    count, last = 0, time.monotonic()
    try:
        while max_events is None or count < max_events:
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:
                        envelope = decode(record.value)
                    except EventDecodeError as exc:
                        print(f"skipped undecodable message at offset {record.offset}: {exc}", file=sys.stderr)
                        continue
                    if envelope.event_id in seen:
                        continue
                    seen.add(envelope.event_id)
                    shown = describe_event(envelope)
                    if shown is None:
                        continue
                    print(shown, flush=True)
                    count += 1
            if batch:
                consumer.commit()  # resume after what was shown
                last = time.monotonic()
            elif idle_exit is not None and time.monotonic() - last > idle_exit:
                break
    finally:
        consumer.close()
    return count


def month_claims(settings: CommonSettings, month: str) -> list[events_pb2.ClaimAdjudicated]:
    year, mon = (int(p) for p in month.split("-"))
    latest: dict[str, tuple[datetime, events_pb2.ClaimAdjudicated]] = {}
    kafka = settings.kafka_access(AGENCY)
    progress = Progress(f"export {month}", total=topic_size(kafka, CLAIMS_ADJUDICATED))
    for record in read_to_end(kafka, CLAIMS_ADJUDICATED):
        progress.advance()
        try:
            claim = payload_of(decode(record.value))
        except EventDecodeError:
            continue
        day = dates.from_proto(claim.dispensed_on)
        if day is None or (day.year, day.month) != (year, mon):
            continue
        at = claim.adjudicated_at.ToDatetime(tzinfo=timezone.utc)
        if claim.claim_id not in latest or latest[claim.claim_id][0] <= at:
            latest[claim.claim_id] = (at, claim)
    progress.finish()
    return [claim for _, claim in sorted(latest.values(), key=lambda item: item[1].claim_id)]


def _rows(claims: list[events_pb2.ClaimAdjudicated]):
    """Per line: (claim, line number, line, reversed, decision time, fund, outcome, reason);
    a reversed claim pays nothing and says why once for all its lines."""
    for claim in claims:
        when = time_to_claims_xml(claim.adjudicated_at.ToDatetime(tzinfo=timezone.utc))
        reversed_ = claim.outcome == events_pb2.CLAIM_OUTCOME_REVERSED
        for n, line in enumerate(claim.lines, start=1):
            yield (claim, n, line, reversed_, when, 0 if reversed_ else line.fund_vnd,
                   OUTCOME[claim.outcome] if reversed_ else LINE_OUTCOME[line.outcome],
                   claim.reason_code if reversed_ else line.reason_code)


def export_reimbursements(decisions: list[events_pb2.ClaimAdjudicated], out) -> int:
    """The month's reimbursement decisions, one row per line, apart from the facilities' claims."""
    writer = csv.writer(out)
    writer.writerow(REIMBURSEMENT_COLUMNS)
    rows = 0
    for claim, n, line, _, when, fund, outcome, reason in _rows(decisions):
        writer.writerow([claim.claim_id, n, claim.member_id, claim.card_code, line.drug_code, line.quantity,
                         line.unit_price_vnd, line.payment_ratio, line.quantity * line.unit_price_vnd, fund,
                         claim.invoice_number, claim.pharmacy_code, when, outcome, reason])
        rows += 1
    return rows


def export(claims: list[events_pb2.ClaimAdjudicated], out) -> int:
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    rows = 0
    for claim, n, line, reversed_, when, fund, outcome, reason in _rows(claims):
        price = line.quantity * line.unit_price_vnd
        writer.writerow([claim.claim_id, n, claim.member_id, claim.card_code, line.drug_code, line.quantity,
                         line.unit_price_vnd, line.payment_ratio, price, fund, 0 if reversed_ else line.copay_vnd,
                         price - fund, claim.benefit_percent, when, outcome, reason])
        rows += 1
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("follow")
    f.add_argument("--group", default="bhyt-agency")
    f.add_argument("--max", type=int, default=None)
    f.add_argument("--idle-exit", type=float, default=None, help="stop after this many idle seconds")
    e = sub.add_parser("export")
    e.add_argument("--month", required=True, help="YYYY-MM, by dispense date")
    e.add_argument("--out", default="-")
    e.add_argument("--xml-out", default=None,
                   help="the facilities' claims as Decision 130 XML (GIAMDINHHS; default: beside --out, .xml)")
    e.add_argument("--reimbursements-out", default=None,
                   help="the reimbursement decisions, apart (default: beside --out, '-reimbursements' added)")
    args = parser.parse_args(argv)
    settings = CommonSettings.from_env()
    if args.command == "follow":
        follow(settings, args.group, args.max, args.idle_exit)
        return 0
    everything = month_claims(settings, args.month)
    claims = [c for c in everything if not reimbursement(c)]
    decisions = [c for c in everything if reimbursement(c)]
    if args.out == "-":
        rows = export(claims, sys.stdout)
    else:
        with open(args.out, "w", newline="", encoding="utf-8") as out:
            rows = export(claims, out)
    apart = args.reimbursements_out
    if apart is None and args.out != "-":
        path = Path(args.out)
        apart = str(path.with_name(f"{path.stem}-reimbursements{path.suffix or '.csv'}"))
    reimbursed = 0
    if apart:
        with open(apart, "w", newline="", encoding="utf-8") as out:
            reimbursed = export_reimbursements(decisions, out)
    xml_out = args.xml_out
    if xml_out is None and args.out != "-":
        xml_out = str(Path(args.out).with_suffix(".xml"))
    if xml_out:
        members = asyncio.run(members_of(settings, {c.member_id for c in claims}))
        Path(xml_out).write_bytes(xml130.envelope(claims, members, datetime.now(timezone.utc)))
    print(f"exported {len(claims)} claims, {rows} lines; {len(decisions)} reimbursement decisions, "
          f"{reimbursed} lines", file=sys.stderr)
    return 0


async def members_of(settings: CommonSettings, member_ids: set[str]) -> dict:
    """The members the XML names (name, birth date, sex, card periods), from the registry."""
    client = connect(settings, "agency")   # reads members (and nothing else) for the XML export
    try:
        store = RedisInsuranceStore(client)
        found = {member_id: await store.member(member_id) for member_id in sorted(member_ids)}
    finally:
        await client.aclose()
    return {k: v for k, v in found.items() if v is not None}


if __name__ == "__main__":
    sys.exit(main())
