"""`make bench`: complete prescription lifecycles against the whole system on this machine.

Starts its own Kafka, Redis, services, relays and workers (run folder .run/bench, ports
2xxxx), measures this machine's ceiling for the same kind of work, drives lifecycles
(issue, lookup until visible at the pharmacy, dispense with a BHYT quote, until the claim's
adjudication is seen by a consumer) at a concurrency for a duration, then checks that no
event was lost or doubled and writes bench/results/<stamp>.json and .png.

    python bench/run.py [--concurrency 32] [--seconds 60]"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "build" / "gen")]

BENCH_ENV = {
    "EPRX_RUN_DIR": str(ROOT / ".run" / "bench"), "EPRX_KAFKA_PORT": "29092", "EPRX_KAFKA_CONTROLLER_PORT": "29093",
    "EPRX_REDIS_PORT": "26380", "EPRX_PRESCRIBING_PORT": "52051", "EPRX_PHARMACY_PORT": "52052",
    "EPRX_INSURANCE_PORT": "52053", "EPRX_INSURANCE_INTERNAL_PORT": "52063", "EPRX_FHIR_PORT": "52080",
    "EPRX_LOG_LEVEL": "warning", "EPRX_LOG_FORMAT": "json",
}
os.environ.update(BENCH_ENV)

import grpc  # noqa: E402
import redis  # noqa: E402
from eprescription.pharmacy.v1 import pharmacy_pb2, pharmacy_pb2_grpc  # noqa: E402
from eprescription.prescribing.v1 import prescribing_pb2, prescribing_pb2_grpc  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from services.common.auth import load_tokens  # noqa: E402
from services.common.config import CommonSettings  # noqa: E402
from services.common.events import decode, payload_of  # noqa: E402
from services.common.topic_reader import end_offsets, read_to_end  # noqa: E402
from services.common.topics import DISPENSES, TopicSpec, apply_topics  # noqa: E402
from services.kernel.calendar import utc_now  # noqa: E402

from bench.lifecycle import AdjudicationWatcher, draft, import_members  # noqa: E402

CEILING_PORT = 52099
PY = sys.executable


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 3)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": pct(values, 50), "p95_ms": pct(values, 95), "p99_ms": pct(values, 99)}


def supervise(command: str) -> None:
    subprocess.run([PY, str(ROOT / "deploy" / "local" / "supervise.py"), command], check=command != "down",
                   env=os.environ)


async def timed_calls(call, n: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one():
        async with gate:
            t = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - t) * 1000)
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - started), latencies


async def ceilings(settings: CommonSettings, concurrency: int) -> dict:
    server = subprocess.Popen([PY, str(ROOT / "bench" / "ceiling_server.py"), str(CEILING_PORT), settings.redis_url_for("admin")],
                              env=os.environ)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{CEILING_PORT}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            noop = channel.unary_unary("/bench.Ceiling/Noop")
            redis_get = channel.unary_unary("/bench.Ceiling/RedisGet")
            noop_rate, noop_lat = await timed_calls(lambda: noop(b""), 5000, concurrency)
            redis_rate, redis_lat = await timed_calls(lambda: redis_get(b""), 5000, concurrency)
    finally:
        server.terminate()
        server.wait()
    topic = f"bench.ceiling.{uuid.uuid4().hex[:6]}"
    apply_topics(settings.kafka_access("admin"), [TopicSpec(topic, settings.topic_partitions, 1, 1)])
    producer = KafkaProducer(**settings.kafka_access("admin").kwargs(), acks="all", linger_ms=2)
    payload = os.urandom(1000)
    n = 20000
    started = time.perf_counter()
    futures = [producer.send(topic, key=str(i).encode(), value=payload) for i in range(n)]
    producer.flush()
    assert all(f.succeeded() for f in futures)
    produce_rate = n / (time.perf_counter() - started)
    producer.close()
    started = time.perf_counter()
    got = sum(1 for _ in read_to_end(settings.kafka_access("admin"), topic))
    assert got >= n
    consume_rate = got / (time.perf_counter() - started)
    return {"grpc_noop_per_s": round(noop_rate), "grpc_noop_latency": summary(noop_lat),
            "grpc_redis_roundtrip_per_s": round(redis_rate), "grpc_redis_latency": summary(redis_lat),
            "kafka_produce_1kb_acks_all_per_s": round(produce_rate), "kafka_consume_1kb_per_s": round(consume_rate)}


async def load(settings: CommonSettings, members, concurrency: int, seconds: float, watcher) -> dict:
    tokens = load_tokens(settings.credentials_file.parent / "tokens.json")
    prescriber = (("authorization", f"Bearer {tokens['prescriber-hospital-a']}"),)
    pharmacies = [(("authorization", f"Bearer {tokens[p]}"),) for p in ("pharmacy-a", "pharmacy-b")]
    # A lifecycle ends in a claim: the sale is made at the prescribing facility's own dispensary
    # (pharmacy-a, PH0001); a retail pharmacy's BHYT sale would be cash and claim nothing.
    dispensary = pharmacies[0]
    rx_channel = settings.pki.aio_channel(f"127.0.0.1:{settings.ports.prescribing}")
    ph_channel = settings.pki.aio_channel(f"127.0.0.1:{settings.ports.pharmacy}")
    prescribing = prescribing_pb2_grpc.PrescribingServiceStub(rx_channel)
    pharmacy = pharmacy_pb2_grpc.PharmacyServiceStub(ph_channel)
    lat = defaultdict(list)
    lags_visible, dispensed_at, errors = [], {}, defaultdict(int)
    accepted_dispenses: set[str] = set()
    timeline: list[tuple[float, str, float]] = []   # (t, rpc, ms)
    next_member = iter(members)
    ran_out: list[float] = []     # when each driver found no prepared member left
    start = time.monotonic()
    deadline = start + seconds

    async def rpc(name, call):
        t = time.perf_counter()
        reply = await call
        ms = (time.perf_counter() - t) * 1000
        lat[name].append(ms)
        timeline.append((time.monotonic() - start, name, ms))
        return reply

    async def lifecycle(n: int):
        member = next(next_member, None)
        if member is None:
            raise LookupError("no member left")
        cccd, card = member
        issued = await rpc("IssuePrescription", prescribing.IssuePrescription(prescribing_pb2.IssuePrescriptionRequest(
            client_request_id=str(uuid.uuid4()), draft=draft(cccd, card)), metadata=prescriber, timeout=30))
        code, issued_at = issued.prescription.code, time.monotonic()
        while True:
            try:
                await rpc("LookupPrescription", pharmacy.LookupPrescription(
                    pharmacy_pb2.LookupPrescriptionRequest(code=code), metadata=pharmacies[n % 2], timeout=30))
                break
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                await asyncio.sleep(0.02)
        lags_visible.append((time.monotonic() - issued_at) * 1000)
        sold = await rpc("DispensePrescription", pharmacy.DispensePrescription(pharmacy_pb2.DispensePrescriptionRequest(
            idempotency_key=str(uuid.uuid4()), code=code, bhyt_card=card,
            lines=[pharmacy_pb2.DispenseLine(line_number=1, drug_code="J01CR02-1GT", quantity=14, unit_price_vnd=16_200),
                   pharmacy_pb2.DispenseLine(line_number=2, drug_code="N02BE01-500T", quantity=12, unit_price_vnd=1_050)]),
            metadata=dispensary, timeout=30))
        dispensed_at[sold.claim_id] = time.monotonic()
        accepted_dispenses.add(sold.dispense_id)

    async def driver(k: int):
        n = k
        while time.monotonic() < deadline:
            try:
                await lifecycle(n)
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] += 1
            except LookupError:
                errors["out of prepared members"] += 1
                ran_out.append(time.monotonic() - start)
                return
            n += concurrency

    await asyncio.gather(*(driver(k) for k in range(concurrency)))
    load_end = time.monotonic()
    settle = load_end + 60
    while time.monotonic() < settle and any(c not in watcher.seen for c in dispensed_at):
        await asyncio.sleep(0.2)
    await rx_channel.close()
    await ph_channel.close()
    adjudicated = {c: watcher.seen[c] for c in dispensed_at if c in watcher.seen}
    in_window = [c for c, t in adjudicated.items() if t <= load_end]
    lags_adjudicated = [(adjudicated[c] - dispensed_at[c]) * 1000 for c in adjudicated]
    per_second = defaultdict(int)
    for t in adjudicated.values():
        per_second[int(t - start)] += 1
    return {
        "duration_asked_s": seconds, "duration_s": round(load_end - start, 1), "concurrency": concurrency,
        # A run that could not last as long as asked says so (every rate is over duration_s).
        "ended_early": (f"out of prepared members after {min(ran_out):.0f} s" if ran_out else None),
        "lifecycles_started_dispensed": len(dispensed_at),
        "lifecycles_completed": len(adjudicated),
        "lifecycles_per_s_sustained": round(len(in_window) / (load_end - start), 1),
        "rpc_latency": {name: summary(v) for name, v in lat.items()},
        "issue_to_visible_at_pharmacy": summary(lags_visible),
        "dispense_to_adjudicated": summary(lags_adjudicated),
        "errors": dict(errors),
        "_timeline": timeline, "_per_second": dict(per_second), "_accepted": accepted_dispenses,
        "_claims": set(dispensed_at), "_start_wall": start,
    }


def verify_events(settings: CommonSettings, dispense_offsets, accepted: set[str], claims: set[str], watcher) -> dict:
    per_dispense, raw = defaultdict(set), 0
    for record in read_to_end(settings.kafka_access("admin"), DISPENSES, from_offsets=dispense_offsets):
        env = decode(record.value)
        if env.WhichOneof("payload") == "medication_dispensed":
            raw += 1
            per_dispense[payload_of(env).dispense_id].add(env.event_id)
    return {
        "dispenses_accepted": len(accepted),
        "dispense_events_lost": len(accepted - set(per_dispense)),
        "dispense_events_duplicated": sum(1 for d in accepted if len(per_dispense.get(d, ())) > 1),
        "dispense_events_unexpected": len(set(per_dispense) - accepted),
        "dispense_records_redelivered_raw": raw - sum(len(v) for v in per_dispense.values()),
        "claims_submitted": len(claims),
        "claims_not_adjudicated": len([c for c in claims if c not in watcher.seen]),
        "claims_adjudicated_twice": len([c for c in claims if len(watcher.events.get(c, ())) > 1]),
    }


def process_stats(settings: CommonSettings) -> dict[str, dict]:
    stats = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pidfile in sorted((settings.run_dir / "pids").glob("*.pid")):
        pid = int(pidfile.read_text())
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        stats[pidfile.stem] = {"cpu_s": (int(fields[11]) + int(fields[12])) / tick, "rss_mb": round(rss / 1024, 1)}
    return stats


def chart(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    timeline, per_second = result["_timeline"], result["_per_second"]
    seconds = int(max([t for t, _, _ in timeline] + [0])) + 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    top.plot(range(seconds), [per_second.get(s, 0) for s in range(seconds)], label="lifecycles adjudicated / s")
    top.set_ylabel("per second")
    top.legend()
    top.set_title(f"e-prescription lifecycles, concurrency {result['concurrency']}")
    for rpc in ("IssuePrescription", "LookupPrescription", "DispensePrescription"):
        buckets = defaultdict(list)
        for t, name, ms in timeline:
            if name == rpc:
                buckets[int(t)].append(ms)
        xs = sorted(buckets)
        for p, style in ((50, "-"), (99, ":")):
            bottom.plot(xs, [pct(buckets[x], p) for x in xs], style, label=f"{rpc} p{p}")
    bottom.set_ylabel("latency ms")
    bottom.set_xlabel("seconds")
    bottom.set_yscale("log")
    bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# Every lifecycle needs a member of its own (a second prescription of the same drugs for the same
# patient is refused as duplicate therapy): enough for the rate the targets ask (200/s) and more.
MAX_RATE_PER_S = 250


def members_for(concurrency: int, seconds: float) -> int:
    """Members to prepare so that the run lasts as long as asked at up to MAX_RATE_PER_S (or 4
    lifecycles a second per concurrent driver, if more); a faster run says it ended early."""
    return int(seconds * max(concurrency * 4, MAX_RATE_PER_S)) + 1000


async def main_async(args) -> dict:
    settings = CommonSettings.from_env()
    supervise("down")
    shutil.rmtree(settings.run_dir, ignore_errors=True)   # from nothing: the same start for every run
    supervise("up")
    try:
        members = import_members(members_for(args.concurrency, args.seconds))
        ceiling = await ceilings(settings, args.concurrency)
        r = redis.Redis.from_url(settings.redis_url_for("admin"))
        dispense_offsets = end_offsets(settings.kafka_access("admin"), DISPENSES)
        watcher = AdjudicationWatcher(settings)
        watcher.start()
        memory_before, cpu_before = r.info("memory")["used_memory"], process_stats(settings)
        result = await load(settings, iter(members), args.concurrency, args.seconds, watcher)
        cpu_after = process_stats(settings)
        memory_after = r.info("memory")["used_memory"]
        watcher.stop.set()
        checks = verify_events(settings, dispense_offsets, result["_accepted"], result["_claims"], watcher)
    finally:
        supervise("down")
    window = result["duration_s"]
    processes = {name: {"cpu_percent": round((cpu_after[name]["cpu_s"] - cpu_before.get(name, {"cpu_s": 0})["cpu_s"])
                                             / window * 100, 1), "rss_mb": cpu_after[name]["rss_mb"]}
                 for name in cpu_after}
    issued = max(result["lifecycles_started_dispensed"], 1)
    report = {
        "when": utc_now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "conditions": f"everything on one machine ({os.cpu_count()} cores): Kafka (1 broker, 512 MB heap), Redis "
                      f"(AOF everysec), 3 services, 3 relays, 3 Faust workers and this load generator; "
                      f"{args.concurrency} concurrent lifecycles for {args.seconds} s; "
                      + ("TLS on gRPC, Kafka SASL_SSL (SCRAM) with ACLs, Redis ACL users, audit trail on"
                         if settings.pki.enabled else "PLAINTEXT (EPRX_PLAINTEXT_DEV=1): no TLS, SASL or ACLs"),
        "ceiling": ceiling,
        "load": {k: v for k, v in result.items() if not k.startswith("_")},
        "events": checks,
        "processes": processes,
        "redis_bytes_per_prescription": round((memory_after - memory_before) / issued),
    }
    report["ratios"] = {
        "lifecycles_vs_grpc_noop": round(report["load"]["lifecycles_per_s_sustained"] / ceiling["grpc_noop_per_s"], 4),
        "lifecycles_vs_grpc_redis": round(report["load"]["lifecycles_per_s_sustained"]
                                          / ceiling["grpc_redis_roundtrip_per_s"], 4),
        "lifecycles_vs_kafka_produce": round(report["load"]["lifecycles_per_s_sustained"]
                                             / ceiling["kafka_produce_1kb_acks_all_per_s"], 4),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    (out / f"{stamp}.json").write_text(json.dumps(report, indent=2))
    chart(result, out / f"{stamp}.png")
    report["files"] = [str(out / f"{stamp}.json"), str(out / f"{stamp}.png")]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("BENCH_CONCURRENCY", 32)))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 60)))
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2))
    if report["load"]["ended_early"]:
        print(f"bench: asked for {args.seconds:.0f} s, ran {report['load']['duration_s']} s: "
              f"{report['load']['ended_early']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
