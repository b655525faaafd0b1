"""Fault runs, Jepsen-style: the whole system under a steady load of prescription lifecycles,
one fault at a time, and after each the checks that matter to a pharmacy and to the fund.

Starts its own system (run folder .run/chaos, ports 3xxxx): three KRaft brokers (replication 3,
min.insync.replicas 2), Redis with AOF `always`, two relays per service, every process restarted
when it dies (as an orchestrator would), and toxiproxy between every process and Redis and
between the pharmacy and the insurer's services port. A lifecycle is: issue, look up until the
pharmacy sees it, sell half of each line (BHYT), then the rest; so each prescription has two sales
in a known order and two claims.

For each fault, with the load running: a quiet lead-in, the fault, its duration, the heal, a
tail; then the load stops and, once the claims had time to be adjudicated, the checks read the
topics from where the phase began:

- every acknowledged sale is on rx.dispenses.v1, once after de-duplication on the event id;
- no prescription line sold beyond its prescribed quantity (from the events, not the ledger);
- per-key order: a prescription's second sale is after its first on the topic;
- every claim of an acknowledged sale adjudicated, once;
- the longest time no lifecycle step succeeded from the fault to the end of the phase.

    python chaos/run.py [--short] [--only broker-kill,relay-stop] [--out docs/chaos/x.json]"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "build" / "gen")]

# Below 32768, where Linux never hands out a connection's own port (its ephemeral range is
# 32768-60999): a listening port there could be taken by any outgoing connection, and a run
# once failed to start on "Failed to bind to address 127.0.0.1:53052".
PORTS = {"kafka": 23192, "controller": 23193, "redis": 27380, "prescribing": 24051, "pharmacy": 24052,
         "insurance": 24053, "insurance_internal": 24063, "fhir": 24080,
         "toxiproxy": 28474, "redis_proxy": 27390, "insurance_proxy": 24064}
# --redis-cluster: the same system on a Redis Cluster (six nodes on the Redis port + 0..5), for the
# faults of a cluster (a master killed); its clients reach the nodes the cluster names, directly.
CLUSTER = "--redis-cluster" in sys.argv
ENV = {
    "EPRX_RUN_DIR": str(ROOT / ".run" / "chaos"), "EPRX_KAFKA_PORT": str(PORTS["kafka"]),
    "EPRX_KAFKA_CONTROLLER_PORT": str(PORTS["controller"]), "EPRX_REDIS_PORT": str(PORTS["redis"]),
    "EPRX_PRESCRIBING_PORT": str(PORTS["prescribing"]), "EPRX_PHARMACY_PORT": str(PORTS["pharmacy"]),
    "EPRX_INSURANCE_PORT": str(PORTS["insurance"]), "EPRX_INSURANCE_INTERNAL_PORT": str(PORTS["insurance_internal"]),
    "EPRX_FHIR_PORT": str(PORTS["fhir"]), "EPRX_METRICS_BASE_PORT": "0",
    "EPRX_KAFKA_BROKERS": "3", "EPRX_REDIS_APPENDFSYNC": "always", "EPRX_RELAY_REPLICAS": "2",
    "EPRX_SUPERVISOR_RESTART": "1", "EPRX_LOG_LEVEL": "warning", "EPRX_LOG_FORMAT": "json",
    # Through toxiproxy: every process to Redis, the pharmacy to the insurer.
    "EPRX_REDIS_URL": f"redis://127.0.0.1:{PORTS['redis_proxy']}/0",
    "EPRX_INSURANCE_ADDRESS": f"127.0.0.1:{PORTS['insurance_proxy']}",
}
if CLUSTER:
    ENV.update({"EPRX_RUN_DIR": str(ROOT / ".run" / "chaos-cluster"), "EPRX_REDIS_CLUSTER": "1",
                "EPRX_REDIS_URL": f"redis://127.0.0.1:{PORTS['redis']}/0"})
os.environ.update(ENV)

import grpc  # noqa: E402
from eprescription.pharmacy.v1 import pharmacy_pb2, pharmacy_pb2_grpc  # noqa: E402
from eprescription.prescribing.v1 import prescribing_pb2, prescribing_pb2_grpc  # noqa: E402

from bench.lifecycle import AdjudicationWatcher, draft, import_members  # noqa: E402
from services.common.auth import load_tokens  # noqa: E402
from services.common.config import CommonSettings  # noqa: E402
from services.common.events import decode, payload_of  # noqa: E402
from services.common.topic_reader import end_offsets, read_to_end  # noqa: E402
from services.common.topics import DISPENSES  # noqa: E402

TOXIPROXY = ROOT / ".cache" / "toxiproxy" / "bin" / "server"
PRESCRIBED = {1: 14, 2: 12}            # the draft's lines
HALVES = ({1: 7, 2: 6}, {1: 7, 2: 6})   # two sales per prescription
PRICES = {1: ("J01CR02-1GT", 16_200), 2: ("N02BE01-500T", 1_050)}


# ---- faults -------------------------------------------------------------------------------

def pid_of(name: str) -> int:
    return int((Path(ENV["EPRX_RUN_DIR"]) / "pids" / f"{name}.pid").read_text())


def toxiproxy(method: str, path: str, body: dict | None = None) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{PORTS['toxiproxy']}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


@dataclass
class Fault:
    name: str
    description: str
    start: Callable[[], None]
    heal: Callable[[], None] = lambda: None
    hold_s: float = 0.0          # how long the fault lasts before it is healed (0: a kill, healed by restart)


def kill(process: str) -> Callable[[], None]:
    return lambda: os.kill(pid_of(process), signal.SIGKILL)


def stop(process: str) -> tuple[Callable[[], None], Callable[[], None]]:
    held = {}

    def start() -> None:
        held["pid"] = pid_of(process)
        os.kill(held["pid"], signal.SIGSTOP)

    def heal() -> None:
        os.kill(held["pid"], signal.SIGCONT)
    return start, heal


def toxic(proxy: str, kind: str, attributes: dict) -> tuple[Callable[[], None], Callable[[], None]]:
    name = f"{proxy}-{kind}"

    def start() -> None:
        for stream in ("upstream", "downstream"):
            toxiproxy("POST", f"/proxies/{proxy}/toxics", {"name": f"{name}-{stream}", "type": kind,
                                                           "stream": stream, "attributes": attributes})

    def heal() -> None:
        for stream in ("upstream", "downstream"):
            toxiproxy("DELETE", f"/proxies/{proxy}/toxics/{name}-{stream}")
    return start, heal


def kill_master_of(key: str) -> Callable[[], None]:
    """SIGKILL of the cluster master that serves `key` (the supervisor restarts it; it comes
    back as its promoted replica's replica)."""
    def start() -> None:
        from redis.crc import key_slot

        from services.common.redis_cluster import node_client
        settings = CommonSettings.from_env()
        slot = key_slot(key.encode())
        for start_slot, end_slot, master, *_ in node_client(settings, PORTS["redis"]).execute_command(
                "CLUSTER", "SLOTS"):
            if start_slot <= slot <= end_slot:
                n = int(master[1]) - PORTS["redis"]
                os.kill(pid_of("redis" if n == 0 else f"redis-{n + 1}"), signal.SIGKILL)
                return
        raise LookupError(slot)
    return start


def faults(short: bool) -> list[Fault]:
    if CLUSTER:
        return [Fault("redis-master-kill", "SIGKILL of the Redis Cluster master of a pharmacy shard (replica "
                                           "promoted; the node restarted as a replica)",
                      kill_master_of("{pharmacy:s0000}"))]
    out = [Fault("broker-kill", "SIGKILL of one Kafka broker (the supervisor restarts it)", kill("kafka-2"))]
    start, heal = stop("kafka-3")
    out.append(Fault("broker-stop", "SIGSTOP of one Kafka broker beyond the request timeout (35 s), then SIGCONT",
                     start, heal, 12.0 if short else 35.0))
    out.append(Fault("redis-kill", "SIGKILL of Redis (AOF appendfsync always; restarted)", kill("redis")))
    for process in (["pharmacy", "pharmacy-relay", "insurance-worker"] if short else
                    ["prescribing", "pharmacy", "insurance", "prescribing-relay", "pharmacy-relay",
                     "insurance-relay", "prescribing-worker", "pharmacy-worker", "insurance-worker"]):
        out.append(Fault(f"kill-{process}", f"SIGKILL of {process} (restarted)", kill(process)))
    start, heal = stop("pharmacy-relay")
    out.append(Fault("relay-stop", "SIGSTOP of a pharmacy relay beyond its 15 s lease, then SIGCONT",
                     start, heal, 20.0))
    for proxy, peer in (("redis", "every process and Redis"), ("insurance", "pharmacy and insurance")):
        start, heal = toxic(proxy, "latency", {"latency": 200, "jitter": 100})
        out.append(Fault(f"{proxy}-latency", f"200±100 ms each way between {peer}", start, heal,
                         10.0 if short else 30.0))
        start, heal = toxic(proxy, "reset_peer", {"timeout": 500})
        out.append(Fault(f"{proxy}-reset", f"connections between {peer} reset after 0.5 s", start, heal,
                         5.0 if short else 15.0))
    return out


# ---- load ---------------------------------------------------------------------------------

@dataclass
class Load:
    members: list
    sales: dict[str, tuple[str, int, dict]] = field(default_factory=dict)   # dispense id -> (code, which, lines)
    claims: set[str] = field(default_factory=set)
    successes: list[float] = field(default_factory=list)                    # when each step succeeded
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def drive(settings: CommonSettings, load: Load, concurrency: int) -> None:
    tokens = load_tokens(settings.credentials_file.parent / "tokens.json")
    prescriber = (("authorization", f"Bearer {tokens['prescriber-hospital-a']}"),)
    dispensary = (("authorization", f"Bearer {tokens['pharmacy-a']}"),)
    rx_channel = settings.pki.aio_channel(f"127.0.0.1:{settings.ports.prescribing}")
    ph_channel = settings.pki.aio_channel(f"127.0.0.1:{settings.ports.pharmacy}")
    prescribing = prescribing_pb2_grpc.PrescribingServiceStub(rx_channel)
    pharmacy = pharmacy_pb2_grpc.PharmacyServiceStub(ph_channel)
    members = iter(load.members)

    async def step(call):
        """One call, retried on failure with the same request (the idempotency keys make a
        retry the same request), until it succeeds or the load stops."""
        while not load.stop.is_set():
            try:
                reply = await call()
                load.successes.append(time.monotonic())
                return reply
            except grpc.aio.AioRpcError as err:
                load.errors[err.code().name] += 1
                if err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                                  grpc.StatusCode.PERMISSION_DENIED):
                    raise
                await asyncio.sleep(0.2)
        return None

    async def lifecycle(cccd: str, card: str) -> None:
        request = prescribing_pb2.IssuePrescriptionRequest(client_request_id=str(uuid.uuid4()), draft=draft(cccd, card))
        issued = await step(lambda: prescribing.IssuePrescription(request, metadata=prescriber, timeout=10))
        if issued is None:
            return
        code = issued.prescription.code
        lookup = pharmacy_pb2.LookupPrescriptionRequest(code=code)
        while not load.stop.is_set():
            try:
                await pharmacy.LookupPrescription(lookup, metadata=dispensary, timeout=10)
                load.successes.append(time.monotonic())
                break
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    load.errors[err.code().name] += 1
                await asyncio.sleep(0.05)
        for which, half in enumerate(HALVES):
            sale = pharmacy_pb2.DispensePrescriptionRequest(
                idempotency_key=str(uuid.uuid4()), code=code, bhyt_card=card,
                lines=[pharmacy_pb2.DispenseLine(line_number=n, drug_code=PRICES[n][0], quantity=q,
                                                 unit_price_vnd=PRICES[n][1]) for n, q in half.items()])
            sold = await step(lambda: pharmacy.DispensePrescription(sale, metadata=dispensary, timeout=10))
            if sold is None:
                return
            load.sales[sold.dispense_id] = (code, which, half)
            if sold.claim_id:
                load.claims.add(sold.claim_id)

    async def driver() -> None:
        while not load.stop.is_set():
            member = next(members, None)
            if member is None:
                load.errors["out of prepared members"] += 1
                return
            try:
                await lifecycle(*member)
            except grpc.aio.AioRpcError as err:
                load.errors[f"refused {err.code().name}"] += 1

    await asyncio.gather(*(driver() for _ in range(concurrency)))
    await rx_channel.close()
    await ph_channel.close()


# ---- checks -------------------------------------------------------------------------------

def check(settings: CommonSettings, offsets, load: Load, watcher: AdjudicationWatcher) -> dict:
    events: dict[str, set[str]] = defaultdict(set)        # dispense id -> event ids
    position: dict[str, tuple[int, int]] = {}              # dispense id -> (partition, offset) first seen
    sold: dict[tuple[str, int], int] = defaultdict(int)    # (code, line) -> quantity, each sale once
    for record in read_to_end(settings.kafka_access("admin"), DISPENSES, from_offsets=offsets):
        env = decode(record.value)
        if env.WhichOneof("payload") != "medication_dispensed":
            continue
        sale = payload_of(env)
        if sale.dispense_id not in events:
            position[sale.dispense_id] = (record.partition, record.offset)
            for line in sale.lines:
                sold[(sale.prescription_code, line.line_number)] += line.quantity
        events[sale.dispense_id].add(env.event_id)
    acknowledged = set(load.sales)
    by_code: dict[str, dict[int, str]] = defaultdict(dict)
    for dispense_id, (code, which, _) in load.sales.items():
        by_code[code][which] = dispense_id
    out_of_order = sum(1 for pair in by_code.values()
                       if 0 in pair and 1 in pair and pair[0] in position and pair[1] in position
                       and position[pair[0]] > position[pair[1]])
    return {
        "sales_acknowledged": len(acknowledged),
        "sales_on_kafka": len(acknowledged & set(events)),
        "sales_lost": len(acknowledged - set(events)),
        "sales_duplicated": sum(1 for d in acknowledged if len(events.get(d, ())) > 1),
        "sales_on_kafka_unacknowledged": len(set(events) - acknowledged),   # the answer lost, the sale made
        "lines_oversold": sum(1 for (code, line), q in sold.items() if q > PRESCRIBED.get(line, 0)),
        "per_key_order_violations": out_of_order,
        "claims": len(load.claims),
        "claims_not_adjudicated": sum(1 for c in load.claims if c not in watcher.seen),
        # which ones, to look for them in the run folder (kept until the next run)
        "lost_sales": [f"{d} (prescription {load.sales[d][0]})" for d in sorted(acknowledged - set(events))[:20]],
        "claims_not_adjudicated_ids": sorted(c for c in load.claims if c not in watcher.seen)[:20],
        "claims_adjudicated_twice": sum(1 for c in load.claims if len(watcher.events.get(c, ())) > 1),
    }


def longest_stall(successes: list[float], since: float, until: float) -> float:
    points = sorted([since, *[t for t in successes if since <= t <= until], until])
    return round(max(b - a for a, b in zip(points, points[1:])), 1)


async def phase(settings: CommonSettings, fault: Fault, members, concurrency: int, lead_s: float,
                tail_s: float) -> dict:
    offsets = end_offsets(settings.kafka_access("admin"), DISPENSES)
    watcher = AdjudicationWatcher(settings)
    watcher.start()
    load = Load(members)
    driving = asyncio.create_task(drive(settings, load, concurrency))
    await asyncio.sleep(lead_s)
    fault_at = time.monotonic()
    fault.start()
    if fault.hold_s:
        await asyncio.sleep(fault.hold_s)
        fault.heal()
    healed_at = time.monotonic()
    await asyncio.sleep(tail_s)
    end = time.monotonic()
    load.stop.set()
    await driving
    settle = time.monotonic() + 120
    while time.monotonic() < settle and any(c not in watcher.seen for c in load.claims):
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)   # a late duplicate would show now
    watcher.stop.set()
    result = {"fault": fault.name, "description": fault.description, "held_s": fault.hold_s,
              "load": f"{concurrency} concurrent lifecycles", "lifecycle_steps_ok": len(load.successes),
              "errors_retried": dict(load.errors),
              **check(settings, offsets, load, watcher),
              "longest_stall_s": longest_stall(load.successes, fault_at, end),
              "answers_again_after_heal_s": round(next((t for t in sorted(load.successes) if t >= healed_at), end)
                                                  - healed_at, 1)}
    result["ok"] = all(result[k] == 0 for k in ("sales_lost", "sales_duplicated", "lines_oversold",
                                                   "per_key_order_violations", "claims_not_adjudicated",
                                                   "claims_adjudicated_twice"))
    return result


def supervise(command: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "deploy" / "local" / "supervise.py"), command],
                   check=command != "down", env=os.environ, stdout=subprocess.DEVNULL)


def start_toxiproxy() -> subprocess.Popen:
    if not TOXIPROXY.exists():
        sys.exit(f"{TOXIPROXY} missing: run `make toxiproxy`")
    log = open(Path(ENV["EPRX_RUN_DIR"]) / "toxiproxy.log", "w")
    proc = subprocess.Popen([str(TOXIPROXY), "-host", "127.0.0.1", "-port", str(PORTS["toxiproxy"])],
                            stdout=log, stderr=subprocess.STDOUT)
    (Path(ENV["EPRX_RUN_DIR"]) / "toxiproxy.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 20
    while True:
        try:
            toxiproxy("GET", "/version")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    toxiproxy("POST", "/proxies", {"name": "redis", "listen": f"127.0.0.1:{PORTS['redis_proxy']}",
                                   "upstream": f"127.0.0.1:{PORTS['redis']}"})
    toxiproxy("POST", "/proxies", {"name": "insurance", "listen": f"127.0.0.1:{PORTS['insurance_proxy']}",
                                   "upstream": f"127.0.0.1:{PORTS['insurance_internal']}"})
    return proc


def table(results: list[dict]) -> str:
    rows = ["| fault | held | acknowledged sales | on Kafka | duplicates | oversold | out of order | claims "
            "adjudicated / twice | longest stall | answers after heal |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['description']} | {r['held_s']:.0f} s | {r['sales_acknowledged']} | {r['sales_on_kafka']} | "
                    f"{r['sales_duplicated']} | {r['lines_oversold']} | {r['per_key_order_violations']} | "
                    f"{r['claims'] - r['claims_not_adjudicated']}/{r['claims']} / {r['claims_adjudicated_twice']} | "
                    f"{r['longest_stall_s']} s | {r['answers_again_after_heal_s']} s |")
    return "\n".join(rows)


async def main_async(args) -> dict:
    run_dir = Path(ENV["EPRX_RUN_DIR"])
    down()
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    run_dir.mkdir(parents=True)
    proxy = start_toxiproxy()
    results = []
    try:
        supervise("up")
        settings = CommonSettings.from_env()
        known = {f.name for f in faults(args.short)}
        if args.only and args.only - known:
            sys.exit(f"unknown faults {sorted(args.only - known)}; these exist: {sorted(known)}")
        chosen = [f for f in faults(args.short) if not args.only or f.name in args.only]
        per_phase = (args.lead + args.tail + max(f.hold_s for f in chosen) + 10) * 6 * args.concurrency
        members = import_members(int(per_phase * len(chosen)) + 500)
        for n, fault in enumerate(chosen):
            share = members[n * len(members) // len(chosen):(n + 1) * len(members) // len(chosen)]
            result = await phase(settings, fault, share, args.concurrency, args.lead, args.tail)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        supervise("down")
        proxy.terminate()
        proxy.wait()
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "conditions": f"one machine ({os.cpu_count()} cores): 3 KRaft brokers (RF 3, min ISR 2), "
                            + ("a Redis Cluster of 3 masters and 3 replicas (AOF always, writes acknowledged "
                               "once replicated)" if CLUSTER else "Redis AOF always")
                            + ", 2 relays per service, TLS/SASL/ACLs on, toxiproxy on every "
                            + ("" if CLUSTER else "Redis and ")
                            + f"pharmacy-insurer connection; {args.concurrency} concurrent lifecycles, "
                            f"{args.lead:.0f} s before each fault and {args.tail:.0f} s after it heals",
              "results": results, "table": table(results), "ok": all(r["ok"] for r in results)}
    return report


def down() -> None:
    """Stops what a run left behind (a run that was killed cannot stop its own system)."""
    supervise("down")
    pidfile = Path(ENV["EPRX_RUN_DIR"]) / "toxiproxy.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
        pidfile.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the faults make test runs, shorter")
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=None)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lead", type=float, default=None)
    parser.add_argument("--tail", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--redis-cluster", action="store_true", help="on a Redis Cluster: its own faults")
    parser.add_argument("--down", action="store_true", help="stop what an interrupted run left running")
    args = parser.parse_args()
    if args.down:
        down()
        return 0
    args.lead = args.lead if args.lead is not None else (5.0 if args.short else 15.0)
    args.tail = args.tail if args.tail is not None else (15.0 if args.short else 45.0)
    report = asyncio.run(main_async(args))
    out = args.out or ROOT / "chaos" / "results" / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(report["table"])
    print(f"report: {out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
