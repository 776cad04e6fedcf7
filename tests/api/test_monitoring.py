"""Issue 31: the alert rules and the Grafana dashboard in deploy/monitoring/ are valid, and
name only series that hsmsvc exports (tests/api/test_metrics_workers.py checks them against
running servers, single and with workers)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "hsmsvc-alerts.yml"
DASHBOARD = MONITORING / "hsmsvc-dashboard.json"
_NAME = re.compile(r"\b(?:hsmsvc|process|python)_[a-z0-9_]+\b")
SCRAPED = frozenset({"up"})
"""Series Prometheus makes itself at each scrape."""


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool missing under CI (apt-get install prometheus; .ci/run does this)")
    pytest.skip("promtool missing: apt-get install prometheus")


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    out = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "definition") and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return out


def referenced() -> set[str]:
    """Every series name in the rules file (comments included) and in the dashboard's queries."""
    return set(_NAME.findall(RULES.read_text())) | {n for e in dashboard_exprs() for n in _NAME.findall(e)}


def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    tool = promtool()
    r = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([tool, "test", "rules", "hsmsvc-alerts.test.yml"], cwd=MONITORING, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_the_dashboard_is_grafana_json_whose_queries_name_the_rules_series() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "hsmsvc-overview" and doc["schemaVersion"] >= 36
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        if p["type"] != "row":
            assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
    exprs = dashboard_exprs()
    assert len(exprs) > 20 and all(e.count("(") == e.count(")") for e in exprs)
    names = referenced()
    assert {"hsmsvc_rpc_calls_total", "hsmsvc_rpc_duration_seconds_bucket", "hsmsvc_backend_healthy",
            "hsmsvc_audit_write_failures_total", "hsmsvc_sealed", "hsmsvc_lmk_loaded", "process_cpu_seconds_total",
            "hsmsvc_worker_restarts_total", "hsmsvc_build_info"} <= names
    assert not [n for n in names if "key_id" in n]
