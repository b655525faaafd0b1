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
import resource
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
    "EPRX_REDIS_PORT": "26380", "EPRX_PRESCRIBING_PORT": "25051", "EPRX_PHARMACY_PORT": "25052",
    "EPRX_INSURANCE_PORT": "25053", "EPRX_INSURANCE_INTERNAL_PORT": "25063", "EPRX_FHIR_PORT": "25080", "EPRX_METRICS_BASE_PORT": "25400",
    "EPRX_LOG_LEVEL": "warning", "EPRX_LOG_FORMAT": "json",
    # room for the scale run's million stored prescriptions (the default bound is 1 GB)
    "EPRX_REDIS_MAXMEMORY": os.environ.get("BENCH_REDIS_MAXMEMORY", "16gb"),
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
from bench import ghz_curves  # noqa: E402
from bench.fill import Template, count_prescriptions, fill  # noqa: E402
from bench.redis_inventory import inventory  # noqa: E402

CEILING_PORT = 25099
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


PROBE_EVERY = 20       # one lifecycle in this many measures the issue-to-visible lag
PROBE_POLL_S = 0.005   # how often a probe looks up
RETRY_S = 0.05         # how soon a patient's pharmacy looks up again after NOT_FOUND

# An open-loop run starts lifecycles at a fixed rate whatever the system answers; no more than
# this many at once (past it the system has fallen behind, and the run says how often).
MAX_IN_FLIGHT = 1024


async def load(settings: CommonSettings, members, concurrency: int, seconds: float, watcher,
               rate: float | None = None, arrival_s: float = 0.1) -> dict:
    """Lifecycles for `seconds`: closed loop (`concurrency` drivers, each starting its next when
    its last ends: the sustained maximum), or, with `rate`, open loop (one started every 1/rate
    seconds, as clients arrive, so latency is measured at that load)."""
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
    sample: list[tuple[str, str]] = []   # one dispensed prescription's code and card, for ghz
    not_found = {True: 0, False: 0}      # lookups answered NOT_FOUND, by probes and by patients
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
        # A probe measures how soon the prescription is visible at a pharmacy by looking it up
        # every few milliseconds; every other lifecycle is a patient who reaches the pharmacy
        # `arrival_s` after the issue and is looked up then (again a little later if it is not
        # there yet). Polling every lifecycle would make most lookups NOT_FOUND calls, each with
        # its audit record: load no pharmacy makes, and CPU the lifecycle does not need.
        probe = n % PROBE_EVERY == 0
        if not probe:
            await asyncio.sleep(arrival_s)
        while True:
            try:
                await rpc("LookupPrescription", pharmacy.LookupPrescription(
                    pharmacy_pb2.LookupPrescriptionRequest(code=code), metadata=pharmacies[n % 2], timeout=30))
                break
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                not_found[probe] += 1
                await asyncio.sleep(PROBE_POLL_S if probe else RETRY_S)
        if probe:
            lags_visible.append((time.monotonic() - issued_at) * 1000)
        sold = await rpc("DispensePrescription", pharmacy.DispensePrescription(pharmacy_pb2.DispensePrescriptionRequest(
            idempotency_key=str(uuid.uuid4()), code=code, bhyt_card=card,
            lines=[pharmacy_pb2.DispenseLine(line_number=1, drug_code="J01CR02-1GT", quantity=14, unit_price_vnd=16_200),
                   pharmacy_pb2.DispenseLine(line_number=2, drug_code="N02BE01-500T", quantity=12, unit_price_vnd=1_050)]),
            metadata=dispensary, timeout=30))
        dispensed_at[sold.claim_id] = time.monotonic()
        accepted_dispenses.add(sold.dispense_id)
        if not sample:
            sample.append((code, card))

    async def arrival(n: int) -> bool:
        """One lifecycle, its failure counted; False when no prepared member is left."""
        try:
            await lifecycle(n)
        except grpc.aio.AioRpcError as error:
            errors[error.code().name] += 1
        except LookupError:
            errors["out of prepared members"] += 1
            ran_out.append(time.monotonic() - start)
            return False
        return True

    async def driver(k: int):
        n = k
        while time.monotonic() < deadline and await arrival(n):
            n += concurrency

    async def open_loop():
        in_flight: set[asyncio.Task] = set()
        n, due = 0, time.monotonic()
        while due < deadline and not ran_out:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if len(in_flight) >= MAX_IN_FLIGHT:
                errors["not started: client at its in-flight cap"] += 1
            else:
                task = asyncio.create_task(arrival(n))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            n, due = n + 1, due + 1 / rate
        await asyncio.gather(*in_flight)

    if rate:
        await open_loop()
    else:
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
        "mode": f"open loop, {rate:g} lifecycles started per second" if rate
                else f"closed loop, {concurrency} concurrent",
        "duration_asked_s": seconds, "duration_s": round(load_end - start, 1),
        "concurrency": None if rate else concurrency, "rate_asked_per_s": rate,
        # A run that could not last as long as asked says so (every rate is over duration_s).
        "ended_early": (f"out of prepared members after {min(ran_out):.0f} s" if ran_out else None),
        "lifecycles_started_dispensed": len(dispensed_at),
        "lifecycles_completed": len(adjudicated),
        "lifecycles_per_s_sustained": round(len(in_window) / (load_end - start), 1),
        "rpc_latency": {name: summary(v) for name, v in lat.items()},
        "issue_to_visible_at_pharmacy": {**summary(lags_visible),
                                         "how": f"one lifecycle in {PROBE_EVERY} looks up every "
                                                f"{PROBE_POLL_S * 1000:g} ms from its issue"},
        "patient_arrives_after_ms": arrival_s * 1000,
        "lookups_not_found": {"probes": not_found[True], "patients": not_found[False]},
        "dispense_to_adjudicated": summary(lags_adjudicated),
        "errors": dict(errors),
        "_timeline": timeline, "_per_second": dict(per_second), "_accepted": accepted_dispenses,
        "_claims": set(dispensed_at), "_start_wall": start, "_sample": sample[0] if sample else None,
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


def chart(report: dict, result: dict, path: Path) -> None:
    """One picture of the report: the sustained run over time, its latencies, ghz's curves and
    the latencies at half load with 10k and with 1M prescriptions stored."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    timeline, per_second = result["_timeline"], result["_per_second"]
    seconds = int(max([t for t, _, _ in timeline] + [0])) + 1
    fig, ((top, curves), (bottom, scale)) = plt.subplots(2, 2, figsize=(15, 9))
    top.plot(range(seconds), [per_second.get(s, 0) for s in range(seconds)], label="lifecycles adjudicated / s")
    top.set_ylabel("per second")
    top.set_xlabel("seconds")
    top.legend()
    top.set_title(f"sustained maximum: {result['mode']}")
    for rpc in ("IssuePrescription", "LookupPrescription", "DispensePrescription"):
        buckets = defaultdict(list)
        for t, name, ms in timeline:
            if name == rpc:
                buckets[int(t)].append(ms)
        xs = sorted(buckets)
        for p, style in ((50, "-"), (99, ":")):
            bottom.plot(xs, [pct(buckets[x], p) for x in xs], style, label=f"{rpc} p{p}")
    bottom.set_ylabel("latency ms (sustained maximum)")
    bottom.set_xlabel("seconds")
    bottom.set_yscale("log")
    bottom.legend(fontsize=7)
    for name, data in (report.get("ghz") or {}).items():
        if not isinstance(data, dict) or "points" not in data:
            continue
        points = [p for p in data["points"] if p["p99_ms"] is not None]
        xs = [p["achieved_per_s"] for p in points]
        line, = curves.plot(xs, [p["p50_ms"] for p in points], "o-", label=f"{name} p50")
        curves.plot(xs, [p["p99_ms"] for p in points], "o:", color=line.get_color(), label=f"{name} p99")
    curves.set_title("ghz through TLS: latency against achieved rate")
    curves.set_xlabel("calls per second achieved")
    curves.set_ylabel("ms")
    curves.set_yscale("log")
    curves.legend(fontsize=7)
    runs = [(label, report["runs"][key]) for key, label in (("half_10k", "10k stored"), ("half_1m", "1M stored"))
            if key in report["runs"]]
    measures = (("LookupPrescription p99", lambda r: r["rpc_latency"].get("LookupPrescription", {}).get("p99_ms")),
                ("DispensePrescription p99", lambda r: r["rpc_latency"].get("DispensePrescription", {}).get("p99_ms")),
                ("issue→visible p99", lambda r: r["issue_to_visible_at_pharmacy"]["p99_ms"]),
                ("dispense→adjudicated p99", lambda r: r["dispense_to_adjudicated"]["p99_ms"]))
    width = 0.8 / max(len(runs), 1)
    for i, (label, run) in enumerate(runs):
        scale.bar([m + i * width for m in range(len(measures))], [f(run) or 0 for _, f in measures], width,
                  label=label)
    scale.set_xticks([m + width * (len(runs) - 1) / 2 for m in range(len(measures))], [n for n, _ in measures],
                     fontsize=8)
    scale.set_yscale("log")
    scale.set_ylabel("ms")
    scale.set_title("half of the sustained maximum (open loop)")
    scale.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# Every lifecycle needs a member of its own (a second prescription of the same drugs for the same
# patient is refused as duplicate therapy): enough for the rate the targets ask (200/s) and more.
MAX_RATE_PER_S = 250


def members_for(concurrency: int, seconds: float) -> int:
    """Members to prepare so that the run lasts as long as asked at up to MAX_RATE_PER_S (or 4
    lifecycles a second per concurrent driver, if more); a faster run says it ended early."""
    return int(seconds * max(concurrency * 4, MAX_RATE_PER_S)) + 1000


def say(what: str) -> None:
    print(f"bench: {what}", file=sys.stderr, flush=True)


def quiesce(settings: CommonSettings, *, below_percent: float = 50.0, limit_s: float = 90.0) -> float:
    """Waits until the system is quiet (every process together under `below_percent` of one core
    for 2 s: what an earlier phase or a fill left, such as Redis rewriting its AOF, is done), so
    that a phase measures itself; returns how long that took. An idle system uses about a third
    of a core: the workers' consumers fetch every 10-50 ms (EPRX_FETCH_WAIT_MS) even with
    nothing to read."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = process_stats(settings)
        time.sleep(2)
        after = process_stats(settings)
        used = {n: (after[n]["cpu_s"] - before.get(n, {"cpu_s": 0})["cpu_s"]) / 2 * 100 for n in after}
        if sum(used.values()) < below_percent:
            break
    else:
        say(f"not quiet after {limit_s:g} s: " + ", ".join(f"{n} {p:.0f}%" for n, p in sorted(
            used.items(), key=lambda item: -item[1])[:3]))
    return round(time.monotonic() - started, 1)


def rewrite_aof(r, limit_s: float = 900.0) -> float:
    """Has Redis rewrite its append-only file now and waits for the end: a fill of gigabytes
    would otherwise start a rewrite (a fork and the whole data set written out) in the middle of
    the phase that follows it. Returns how long the rewrite took."""
    started = time.monotonic()
    try:
        r.bgrewriteaof()
    except redis.ResponseError:
        pass                                       # one is already running: wait for it
    while time.monotonic() - started < limit_s:
        persistence = r.info("persistence")
        if not persistence.get("aof_rewrite_in_progress") and not persistence.get("aof_rewrite_scheduled"):
            break
        time.sleep(1)
    return round(time.monotonic() - started, 1)


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_table(before: dict, after: dict, wall_s: float, lifecycles: int) -> dict:
    """Each process's CPU over a run (its settling included): percent of one core and
    milliseconds per completed lifecycle; `total` sums every process of the system."""
    rows = {}
    for name in after:
        used = after[name]["cpu_s"] - before.get(name, {"cpu_s": 0})["cpu_s"]
        rows[name] = {"cpu_percent": round(used / wall_s * 100, 1),
                      "ms_per_lifecycle": round(used * 1000 / lifecycles, 2) if lifecycles else None,
                      "rss_mb": after[name]["rss_mb"]}
    rows = dict(sorted(rows.items(), key=lambda item: -(item[1]["ms_per_lifecycle"] or 0)))
    total = round(sum(r["ms_per_lifecycle"] or 0 for r in rows.values()), 2)
    return {"per_process": rows, "total_ms_per_lifecycle": total}


async def run_phase(settings: CommonSettings, r, members, watcher, *, concurrency: int, seconds: float,
                    rate: float | None = None, arrival_s: float = 0.1) -> dict:
    quiet_after = quiesce(settings)
    before, own_before, started = process_stats(settings), own_cpu_s(), time.monotonic()
    memory_before = r.info("memory")["used_memory"]
    result = await load(settings, members, concurrency, seconds, watcher, rate=rate, arrival_s=arrival_s)
    result["quiet_before_s"] = quiet_after
    after, own_after, wall = process_stats(settings), own_cpu_s(), time.monotonic() - started
    result["cpu"] = cpu_table(before, after, wall, result["lifecycles_completed"])
    result["load_generator_cpu_ms_per_lifecycle"] = (round((own_after - own_before) * 1000
                                                           / result["lifecycles_completed"], 2)
                                                     if result["lifecycles_completed"] else None)
    result["redis_bytes_per_prescription"] = round((r.info("memory")["used_memory"] - memory_before)
                                                   / max(result["lifecycles_started_dispensed"], 1))
    return result


def public(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def p99(run: dict, rpc: str) -> float | None:
    return run["rpc_latency"].get(rpc, {}).get("p99_ms")


def targets(report: dict) -> list[dict]:
    """Issue 15's targets against this report: each with what was measured and whether it is met."""
    sustained, runs, events = report["runs"]["max"], report["runs"], report["events"]
    half = runs.get("half_10k")
    rows = [("CPU per complete lifecycle, every process (ms)", 8, sustained["cpu"]["total_ms_per_lifecycle"], "<="),
            ("lifecycles per second sustained", 200, sustained["lifecycles_per_s_sustained"], ">="),
            ("events lost", 0, events["dispense_events_lost"] + events["claims_not_adjudicated"], "<="),
            ("events duplicated", 0, events["dispense_events_duplicated"] + events["claims_adjudicated_twice"], "<="),
            ("Redis bytes per live prescription", 2048, sustained["redis_bytes_per_prescription"], "<=")]
    if half:
        rows += [("lookup p99 at half load (ms)", 15, p99(half, "LookupPrescription"), "<="),
                 ("dispense with quote p99 at half load (ms)", 50, p99(half, "DispensePrescription"), "<="),
                 ("issue to visible at pharmacy p99 at half load (ms)", 100,
                  half["issue_to_visible_at_pharmacy"]["p99_ms"], "<="),
                 ("dispense to adjudicated p99 at half load (ms)", 500, half["dispense_to_adjudicated"]["p99_ms"], "<=")]
    scale = report.get("scale") or {}
    for rpc in ("LookupPrescription", "DispensePrescription"):
        if rpc in scale.get("p99_change", {}):
            rows.append((f"{rpc} p99 at 1M against 10k (change)", 0.20, scale["p99_change"][rpc], "<="))
    out = []
    for name, target, measured, sense in rows:
        met = measured is not None and (measured <= target if sense == "<=" else measured >= target)
        out.append({"target": name, "wanted": f"{sense} {target}", "measured": measured, "met": met})
    return out


async def main_async(args) -> dict:
    settings = CommonSettings.from_env()
    supervise("down")
    shutil.rmtree(settings.run_dir, ignore_errors=True)   # from nothing: the same start for every run
    supervise("up")
    runs: dict[str, dict] = {}
    try:
        # the sustained run, then two half-load runs
        members = iter(import_members(members_for(args.concurrency, args.seconds * 2)))
        ceiling = await ceilings(settings, args.concurrency)
        r = redis.Redis.from_url(settings.redis_url_for("admin"))
        dispense_offsets = end_offsets(settings.kafka_access("admin"), DISPENSES)
        watcher = AdjudicationWatcher(settings)
        watcher.start()
        say(f"sustained maximum: {args.concurrency} concurrent for {args.seconds:g} s")
        runs["max"] = await run_phase(settings, r, members, watcher, concurrency=args.concurrency,
                                      seconds=args.seconds, arrival_s=args.arrival_ms / 1000)
        keys_by_kind = inventory(r)
        template = Template.take(r)
        scale: dict = {"note": "stored prescriptions beyond the runs' own are copies of the sustained run's "
                               "per-prescription Redis keys (bench/fill.py)"}
        half_rate = args.half_rate or max(1.0, round(runs["max"]["lifecycles_per_s_sustained"] / 2, 1))
        next_copy = 1
        for key, stored in (("half_10k", args.small), ("half_1m", args.large)):
            if not stored:
                continue
            started = time.monotonic()
            say(f"filling Redis to {stored:,} prescriptions")
            next_copy = fill(r, template, stored, first_copy=next_copy)
            scale[key] = {"prescriptions_stored": count_prescriptions(r),
                          "fill_s": round(time.monotonic() - started, 1),
                          "redis_used_memory_mb": round(r.info("memory")["used_memory"] / 2**20, 1),
                          "aof_rewrite_s": rewrite_aof(r)}
            say(f"half load: {half_rate:g} lifecycles started per second for {args.seconds:g} s, "
                f"{scale[key]['prescriptions_stored']:,} stored")
            runs[key] = await run_phase(settings, r, members, watcher, concurrency=args.concurrency,
                                        seconds=args.seconds, rate=half_rate, arrival_s=args.arrival_ms / 1000)
        if args.ghz:
            say("ghz: LookupPrescription and CheckEligibility at rising rates")
        ghz = await asyncio.to_thread(ghz_report, settings, runs["max"]) if args.ghz else None
        watcher.stop.set()
        accepted = set().union(*(run["_accepted"] for run in runs.values()))
        claims = set().union(*(run["_claims"] for run in runs.values()))
        checks = verify_events(settings, dispense_offsets, accepted, claims, watcher)
    finally:
        supervise("down")
    if "half_10k" in runs and "half_1m" in runs:
        scale["p99_change"] = {rpc: round(p99(runs["half_1m"], rpc) / p99(runs["half_10k"], rpc) - 1, 3)
                               for rpc in ("LookupPrescription", "DispensePrescription")
                               if p99(runs["half_1m"], rpc) and p99(runs["half_10k"], rpc)}
    report = {
        "when": utc_now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "conditions": f"everything on one machine ({os.cpu_count()} cores): Kafka (1 broker, 512 MB heap), Redis "
                      f"(AOF everysec), 3 services, 3 relays, 3 Faust workers and this load generator; "
                      f"the sustained maximum with {args.concurrency} concurrent lifecycles for {args.seconds} s, "
                      f"then {args.seconds} s at half of it (open loop) with {args.small:,} and with "
                      f"{args.large:,} prescriptions stored, then ghz; a patient's pharmacy looks the "
                      f"prescription up {args.arrival_ms:g} ms after its issue (again every {RETRY_S * 1000:g} ms "
                      f"if not yet visible), one lifecycle in {PROBE_EVERY} polls every {PROBE_POLL_S * 1000:g} ms "
                      f"to measure the issue-to-visible lag; "
                      + ("TLS on gRPC, Kafka SASL_SSL (SCRAM) with ACLs, Redis ACL users, audit trail on"
                         if settings.pki.enabled else "PLAINTEXT (EPRX_PLAINTEXT_DEV=1): no TLS, SASL or ACLs"),
        "ceiling": ceiling,
        "load": public(runs["max"]),
        "runs": {key: public(run) for key, run in runs.items()},
        "events": checks,
        "processes": runs["max"]["cpu"]["per_process"],
        "redis_bytes_per_prescription": runs["max"]["redis_bytes_per_prescription"],
        # Where they go: every key after the sustained run, by kind (bench/redis_inventory.py).
        "redis_keys_by_kind": {kind: {**row, "bytes_per_prescription":
                                      round(row["bytes"] / max(runs["max"]["lifecycles_started_dispensed"], 1))}
                               for kind, row in keys_by_kind.items()},
        "scale": scale,
        "ghz": ghz,
    }
    report["ratios"] = {
        "lifecycles_vs_grpc_noop": round(report["load"]["lifecycles_per_s_sustained"] / ceiling["grpc_noop_per_s"], 4),
        "lifecycles_vs_grpc_redis": round(report["load"]["lifecycles_per_s_sustained"]
                                          / ceiling["grpc_redis_roundtrip_per_s"], 4),
        "lifecycles_vs_kafka_produce": round(report["load"]["lifecycles_per_s_sustained"]
                                             / ceiling["kafka_produce_1kb_acks_all_per_s"], 4),
    }
    report["targets"] = targets(report)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    (out / f"{stamp}.json").write_text(json.dumps(report, indent=2))
    report["files"] = [str(out / f"{stamp}.json")]
    if args.chart:
        chart(report, runs["max"], out / f"{stamp}.png")
        report["files"].append(str(out / f"{stamp}.png"))
    return report


def ghz_report(settings: CommonSettings, sustained: dict) -> dict:
    if not ghz_curves.available():
        return {"skipped": f"ghz not built ({ghz_curves.GHZ}); `make ghz` builds it"}
    tokens = load_tokens(settings.credentials_file.parent / "tokens.json")
    code, card = sustained["_sample"]
    targets_ = (
        ghz_curves.Target("LookupPrescription", "eprescription.pharmacy.v1.PharmacyService.LookupPrescription",
                          "eprescription/pharmacy/v1/pharmacy.proto", f"127.0.0.1:{settings.ports.pharmacy}",
                          {"code": code}, tokens["pharmacy-b"]),
        ghz_curves.Target("CheckEligibility", "eprescription.insurance.v1.InsuranceService.CheckEligibility",
                          "eprescription/insurance/v1/insurance.proto", f"127.0.0.1:{settings.ports.insurance}",
                          {"card_identifier": card, "facility_code": "01001"}, tokens["pharmacy-a"]))
    return {t.name: ghz_curves.curve(t, settings.pki.ca_file) for t in targets_}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("BENCH_CONCURRENCY", 32)))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 60)))
    parser.add_argument("--small", type=int, default=int(os.environ.get("BENCH_SMALL", 10_000)),
                        help="prescriptions stored for the first half-load run (0: no such run)")
    parser.add_argument("--large", type=int, default=int(os.environ.get("BENCH_LARGE", 1_000_000)),
                        help="prescriptions stored for the second half-load run (0: no such run)")
    parser.add_argument("--no-ghz", dest="ghz", action="store_false", help="skip ghz's latency curves")
    parser.add_argument("--no-chart", dest="chart", action="store_false",
                        help="no PNG (matplotlib comes with requirements-bench.txt, which `make bench` installs)")
    parser.add_argument("--half-rate", type=float, default=float(os.environ.get("BENCH_HALF_RATE", 0)) or None,
                        help="lifecycles/s of the open-loop phases instead of half the sustained maximum "
                             "(to compare two versions at the same work)")
    parser.add_argument("--arrival-ms", type=float, default=float(os.environ.get("BENCH_ARRIVAL_MS", 100)),
                        help="how long after the issue a patient's pharmacy looks the prescription up")
    args = parser.parse_args()
    if args.half_rate is not None and not 0 < args.half_rate <= 10_000:
        parser.error(f"--half-rate must be between 0 and 10,000 lifecycles/s, got {args.half_rate:g}")
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2))
    short = {key: run["ended_early"] for key, run in report["runs"].items() if run["ended_early"]}
    for key, why in short.items():
        print(f"bench: run {key} asked for {args.seconds:.0f} s, ran {report['runs'][key]['duration_s']} s: {why}",
              file=sys.stderr)
    for row in report["targets"]:
        print(f"bench: {'met   ' if row['met'] else 'MISSED'} {row['target']}: {row['measured']} (wanted "
              f"{row['wanted']})", file=sys.stderr)
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
