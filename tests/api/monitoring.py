"""deploy/monitoring/'s series names, for test_monitoring.py and test_metrics_workers.py; a helper
module, so that neither test module imports the other."""

from __future__ import annotations

import json
import os
import re
import shutil
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
