"""Latency against rate from a client nobody here wrote: ghz (github.com/bojand/ghz), through
TLS with the services' own CA, the calls' bearer tokens as metadata.

For each method, ghz runs at rising constant rates (each for `step_s` seconds) until the rate
it achieves falls below 90% of the rate asked (saturation) or errors pass 1%, then once
without a rate limit (the ceiling). Each point: asked and achieved calls/s, p50/p90/p99 ms,
status codes. `make bench` runs it against the system it started (`bench/run.py`)."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GHZ = ROOT / ".cache" / "ghz" / "bin" / "ghz"
RATES = (100, 200, 400, 800, 1600, 3200, 6400)


@dataclass(frozen=True)
class Target:
    name: str            # e.g. "LookupPrescription"
    call: str            # fully qualified, e.g. eprescription.pharmacy.v1.PharmacyService.LookupPrescription
    proto: str           # relative to protos/
    address: str
    data: dict
    token: str


def _percentile(report: dict, p: int) -> float | None:
    for row in report.get("latencyDistribution") or []:
        if row["percentage"] == p:
            return round(row["latency"] / 1e6, 2)
    return None


def run_once(target: Target, ca_file: Path, *, rps: int, seconds: float, concurrency: int = 64,
             connections: int = 4) -> dict:
    command = [str(GHZ), "--cacert", str(ca_file), "--cname", "localhost",
               "--proto", str(ROOT / "protos" / target.proto), "--import-paths", str(ROOT / "protos"),
               "--call", target.call, "-d", json.dumps(target.data),
               "-m", json.dumps({"authorization": f"Bearer {target.token}"}),
               "-c", str(concurrency), "--connections", str(connections), "-z", f"{seconds}s",
               "--timeout", "10s", "--duration-stop", "wait", "-O", "json"]
    if rps:
        command += ["--rps", str(rps)]
    out = subprocess.run(command + [target.address], capture_output=True, text=True, timeout=seconds + 60,
                         env={**os.environ, "GOMAXPROCS": os.environ.get("GHZ_GOMAXPROCS", "2")})
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise RuntimeError(f"ghz failed ({out.returncode}): {out.stderr.strip()[:500]}")
    report = json.loads(out.stdout)
    statuses = report.get("statusCodeDistribution") or {}
    count = report.get("count", 0)
    return {"asked_per_s": rps or None, "achieved_per_s": round(report.get("rps", 0), 1), "calls": count,
            "p50_ms": _percentile(report, 50), "p90_ms": _percentile(report, 90), "p99_ms": _percentile(report, 99),
            "statuses": statuses,
            "error_share": round(1 - statuses.get("OK", 0) / count, 4) if count else None}


def curve(target: Target, ca_file: Path, *, step_s: float = 8, rates=RATES) -> dict:
    points = []
    for rps in rates:
        point = run_once(target, ca_file, rps=rps, seconds=step_s)
        points.append(point)
        if point["achieved_per_s"] < 0.9 * rps or (point["error_share"] or 0) > 0.01:
            break
    ceiling = run_once(target, ca_file, rps=0, seconds=step_s)
    return {"call": target.call, "points": points, "unlimited": ceiling}


def available() -> bool:
    return GHZ.exists()
