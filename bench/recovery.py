"""`make bench-recovery`: how long the insurance worker takes to recover its member table from
the changelog that a million adjudicated claims leave, with the table in memory and on RocksDB.

Starts its own Kafka and Redis (run folder .run/bench-recovery, the benchmark's ports), writes
the changelog of CLAIMS claims (default 1,000,000) spread over CLAIMS/2 members: one record
per claim, each the member's whole state after that claim, built with the adjudicator's own
MemberState (claim marks, visits with their priced sales, the year's co-payment, pruning), as
the worker writes it. Then it starts the real worker (`services.insurance.worker`) three times
and times each from process start to the worker's `worker.tables_recovered` line:

- memory store, empty: the whole changelog is read (what every restart cost before RocksDB);
- RocksDB, empty disk: the whole changelog is read (a new node, or a lost volume);
- RocksDB, restarted on its own disk: only what was written since its last flush is read.

    python bench/recovery.py [--claims 1000000] [--out docs/benchmarks/recovery.json]"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "build" / "gen")]

ENV = {
    "EPRX_RUN_DIR": str(ROOT / ".run" / "bench-recovery"), "EPRX_KAFKA_PORT": "29092",
    "EPRX_KAFKA_CONTROLLER_PORT": "29093", "EPRX_REDIS_PORT": "26380", "EPRX_PRESCRIBING_PORT": "25051",
    "EPRX_PHARMACY_PORT": "25052", "EPRX_INSURANCE_PORT": "25053", "EPRX_INSURANCE_INTERNAL_PORT": "25063",
    "EPRX_FHIR_PORT": "25080", "EPRX_METRICS_BASE_PORT": "25400", "EPRX_LOG_LEVEL": "info", "EPRX_LOG_FORMAT": "json",
}
os.environ.update(ENV)

from kafka import KafkaProducer  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from services.common.config import CommonSettings  # noqa: E402
from services.common.streams import kafka_partition  # noqa: E402
from services.insurance.domain.coverage import PricedLine, Sale  # noqa: E402
from services.insurance.domain.state import SUBMITTED, ClaimMark, MemberState, VisitState, YearState  # noqa: E402
from services.insurance.worker import TABLE  # noqa: E402

# About 200 million insured visits a year over about 93 million members: 2 claims a member.
CLAIMS_PER_MEMBER = int(os.environ.get("RECOVERY_CLAIMS_PER_MEMBER", 2))
TOKEN = "MEMBERTOKEN"


def member_states(claims: int, start: date) -> list[bytes]:
    """The template member's record after each of its claims (TOKEN stands for the member),
    a claim every week, each of its own visit with three priced lines."""
    state, records = MemberState(), []
    for k in range(claims):
        day = start + timedelta(days=7 * k)
        claim = f"c-{TOKEN}-{k:04d}"
        lines = tuple(PricedLine(n, f"J01CR02-{n}T", 14, 1800 + n, 2000, "reference", 100, True, "OK")
                      for n in (1, 2, 3))
        visit = VisitState(day, 150_000, f"{day.isoformat()}T08:00:00+00:00", (Sale(f"d-{TOKEN}-{k:04d}", lines, 80),),
                           {claim: tuple((25_000, 20_000, 5_000) for _ in lines)})
        state = state.with_year(day.year, YearState(copay=15_000 * (k + 1)))
        state = state.with_claim(claim, ClaimMark(day, 15_000, "APPROVED"), f"d-{TOKEN}-{k:04d}")
        state = state.marked(claim, SUBMITTED, f"e-{TOKEN}-{k:04d}")
        state = state.with_visit(f"01001|{day.isoformat()}|{TOKEN}-{k}", visit, claim, day).pruned(day)
        records.append(json.dumps(state.to_json()).encode())
    return records


def supervise(command: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "deploy" / "local" / "supervise.py"), command, "--infra-only"],
                   check=command != "down", env=os.environ, stdout=subprocess.DEVNULL)


def changelog_name() -> str:
    return f"eprx-insurance-{TABLE}-changelog"


def write_changelog(settings: CommonSettings, claims: int) -> dict:
    access = settings.kafka_access("admin")
    admin = KafkaAdminClient(**access.kwargs())
    admin.create_topics([NewTopic(changelog_name(), settings.topic_partitions, settings.replication_factor,
                                  topic_configs={"cleanup.policy": "compact"})])
    admin.close()
    producer = KafkaProducer(acks="all", linger_ms=50, batch_size=1 << 20, max_request_size=4 << 20,
                             buffer_memory=256 << 20, **access.kwargs())
    templates = member_states(CLAIMS_PER_MEMBER, date(2026, 1, 5))
    members = claims // CLAIMS_PER_MEMBER
    started, size = time.monotonic(), 0
    for k in range(CLAIMS_PER_MEMBER):      # claim k of every member, as a day of claims would arrive
        template = templates[k]
        for m in range(members):
            key = f"{m:010d}".encode()
            value = template.replace(TOKEN.encode(), key)
            size += len(value)
            producer.send(changelog_name(), key=key, value=value,
                          partition=kafka_partition(key, settings.topic_partitions))
    producer.flush()
    producer.close()
    return {"records": members * CLAIMS_PER_MEMBER, "members": members, "bytes": size,
            "mean_record_bytes": size // (members * CLAIMS_PER_MEMBER),
            "largest_record_bytes": max(len(t) + 10 - len(TOKEN) for t in templates),
            "write_seconds": round(time.monotonic() - started, 1)}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def recover(store: str, keep_disk: bool, timeout: float = 1800) -> dict:
    """Starts the worker; returns the seconds it reported to recover its tables."""
    datadir = Path(ENV["EPRX_RUN_DIR"]) / "faust" / "eprx-insurance"
    if not keep_disk:
        shutil.rmtree(datadir, ignore_errors=True)
    env = dict(os.environ, EPRX_TABLE_STORE=store, PYTHONUNBUFFERED="1")
    log_path = Path(ENV["EPRX_RUN_DIR"]) / f"worker-{store}-{'warm' if keep_disk else 'cold'}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.insurance.worker", "worker", "--without-web"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline, found = time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline and found is None:
            time.sleep(0.5)
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited ({proc.returncode}); see {log_path}")
            for line in log_path.read_text(errors="replace").splitlines():
                if '"worker.tables_recovered"' in line:
                    found = json.loads(line[line.index("{"):])
        if found is None:
            raise RuntimeError(f"no recovery within {timeout} s; see {log_path}")
        time.sleep(15)   # let it settle (a first flush of RocksDB's offsets) before it is stopped
        memory = rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    disk = sum(f.stat().st_size for f in datadir.rglob("*") if f.is_file()) if datadir.exists() else 0
    return {"store": store, "disk": "kept" if keep_disk else "empty", "seconds": found["seconds"],
            "worker_rss_mib": round(memory / 1024), "table_on_disk_mib": round(disk / 2**20)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=int(os.environ.get("RECOVERY_CLAIMS", 1_000_000)))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    shutil.rmtree(ENV["EPRX_RUN_DIR"], ignore_errors=True)
    supervise("up")
    try:
        settings = CommonSettings.from_env()
        written = write_changelog(settings, args.claims)
        print(f"changelog: {written}", flush=True)
        runs = []
        for store, keep in (("memory", False), ("rocksdb", False), ("rocksdb", True)):
            runs.append(recover(store, keep))
            print(f"recovered: {runs[-1]}", flush=True)
    finally:
        supervise("down")
    result = {"what": "insurance worker: start to tables recovered, from the member table's changelog",
              "conditions": {"machine": f"{os.cpu_count()} cores, this machine; Kafka (1 broker) and Redis on it",
                             "partitions": settings.topic_partitions, "claims": args.claims,
                             "claims_per_member": CLAIMS_PER_MEMBER},
              "changelog": written, "runs": runs,
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = args.out or ROOT / "bench" / "results" / f"recovery-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
