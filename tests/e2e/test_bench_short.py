"""The benchmark's short version (`make bench` is the long one): its own whole system, a
sustained run, two half-load runs with more prescriptions stored, then the report. What it
must show whatever the figures: no event lost or doubled, every target judged, and Redis
holding live state only (every per-prescription key of the real system has an expiry)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NOT_PER_PRESCRIPTION = ("insurance:member", "insurance:idx")


def test_a_short_benchmark_reports_every_target_and_keeps_only_live_state(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPRX_")}   # its own ports and folder
    env["BENCH_REDIS_MAXMEMORY"] = "1gb"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--concurrency", "4", "--seconds", "6",
                          "--small", "300", "--large", "900", "--no-ghz", "--no-chart"],
                         capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    # the system's own start-up failure is printed by the supervisor on stdout
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout[run.stdout.rindex('{\n  "when"'):])
    try:
        assert set(report["runs"]) == {"max", "half_10k", "half_1m"}
        for phase in report["runs"].values():
            assert phase["lifecycles_completed"] > 0 and not phase["errors"], phase
            assert phase["cpu"]["total_ms_per_lifecycle"] > 0
        assert report["scale"]["half_1m"]["prescriptions_stored"] >= 900
        events = report["events"]
        assert events["dispense_events_lost"] == events["dispense_events_duplicated"] == 0
        assert events["claims_not_adjudicated"] == events["claims_adjudicated_twice"] == 0
        assert {row["target"] for row in report["targets"]} >= {
            "CPU per complete lifecycle, every process (ms)", "lookup p99 at half load (ms)",
            "LookupPrescription p99 at 1M against 10k (change)"}
        kept_forever = {kind: row for kind, row in report["redis_keys_by_kind"].items()
                        if kind not in NOT_PER_PRESCRIPTION and "outbox" not in kind and row["expiring"] < row["keys"]}
        assert not kept_forever, f"per-prescription keys without an expiry: {kept_forever}"
    finally:
        for path in report.get("files", []):
            Path(path).unlink(missing_ok=True)
