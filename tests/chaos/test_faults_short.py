"""The short versions of the fault runs (chaos/run.py; `make chaos` runs every fault, longer):
a whole system of its own (three brokers, Redis with AOF always, two relays per service,
toxiproxy in the way) under a steady load of lifecycles, a fault at a time. After each: no
acknowledged sale lost or doubled, no line oversold, per-key order kept, every claim
adjudicated once, and the system answering again."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = ("broker-kill", "redis-kill", "kill-pharmacy", "kill-insurance-worker", "relay-stop", "insurance-reset")


@pytest.mark.timeout(1500)   # a whole system of its own, six faults: about seven minutes on 2 cores
def test_the_system_keeps_every_acknowledged_sale_through_each_fault(tmp_path):
    out = tmp_path / "chaos.json"
    runner = [sys.executable, str(ROOT / "chaos" / "run.py")]
    try:
        run = subprocess.run([*runner, "--short", "--only", ",".join(SHORT), "--out", str(out)], cwd=ROOT,
                             capture_output=True, text=True, timeout=1400)
    finally:   # a run cut short leaves its system up: it would hold its ports for the next tests
        subprocess.run([*runner, "--down"], cwd=ROOT, capture_output=True, timeout=180)
    assert out.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["fault"] for r in report["results"]] == list(SHORT)
    for result in report["results"]:
        assert result["sales_acknowledged"] > 0, result   # the load went on around the fault
        assert result["sales_lost"] == 0 and result["sales_duplicated"] == 0, result
        assert result["lines_oversold"] == 0 and result["per_key_order_violations"] == 0, result
        assert result["claims_not_adjudicated"] == 0 and result["claims_adjudicated_twice"] == 0, result
        assert result["answers_again_after_heal_s"] < 60, result
    assert report["ok"], report["table"]
