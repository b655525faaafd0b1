"""The operators' dashboard: valid JSON, and every metric a panel queries is one the code exports."""
import json
import re
from pathlib import Path

from services.common import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "eprescription-dashboard.json"
SUFFIXES = ("_bucket", "_count", "_sum")
PROMQL_WORDS = {"sum", "by", "rate", "max", "histogram_quantile", "increase", "on", "group_left", "le"}


def queried_metrics(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    without_groups = re.sub(r"\b(by|on)\s*\([^)]*\)", "", without_labels)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_groups)) - PROMQL_WORDS
    return {n for n in names if not re.fullmatch(r"\d+[smh]?", n)}


def test_every_panel_queries_metrics_the_code_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    exported = set(metrics.EXPORTED)
    assert dashboard["panels"], "no panels"
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in queried_metrics(target["expr"]):
                base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
                assert base in exported, (panel["title"], name)
                used.add(base)
    assert used == exported, exported - used     # every exported metric has a panel


def test_the_exported_names_are_the_registered_ones():
    from prometheus_client import REGISTRY
    registered = {m.name for m in REGISTRY.collect()}
    for name in metrics.EXPORTED:
        assert name.removesuffix("_total") in registered, name
