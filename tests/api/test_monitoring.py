"""Issue 31: the alert rules and the Grafana dashboard in deploy/monitoring/ are valid, and
name only series that hsmsvc exports (tests/api/test_metrics_workers.py checks them against
running servers, single and with workers)."""

from __future__ import annotations

import json
import subprocess


from tests.api.monitoring import DASHBOARD, MONITORING, RULES, dashboard_exprs, promtool, referenced

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
