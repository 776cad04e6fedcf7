#!/usr/bin/python3
"""Render the hsmsvc chart without Helm: ``{{ .Values.a.b }}`` and ``{{ .Release.Name }}`` only.

    python3 deploy/helm/render.py deploy/helm/hsmsvc --name hsmsvc [--set replicas=5] | kubectl apply -f -

Any other template action is refused, so a chart edit that needs Helm proper is caught here and in
tests/ops/test_deploy_kit.py. Needs PyYAML (Debian's python3-yaml, which yamllint depends on).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")


def lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise SystemExit(f"render.py: no value .Values.{path}")
        node = node[part]
    if isinstance(node, (dict, list)):
        raise SystemExit(f"render.py: .Values.{path} is not a scalar")
    return node


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def render(text: str, values: dict[str, Any], name: str, source: str) -> str:
    def one(m: re.Match[str]) -> str:
        action = m.group(1)
        if action == ".Release.Name":
            return name
        if re.fullmatch(r"\.Values(\.[A-Za-z_][A-Za-z0-9_]*)+", action):
            return scalar(lookup(values, action[len(".Values."):]))
        raise SystemExit(f"render.py: {source}: {{{{ {action} }}}} needs Helm; keep to plain substitutions")

    return ACTION.sub(one, text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("chart", type=Path)
    p.add_argument("--name", default="hsmsvc", help="the release name")
    p.add_argument("--set", action="append", default=[], metavar="a.b=VALUE", help="override a value")
    p.add_argument("--json", action="store_true", help="print the objects as one JSON list instead")
    args = p.parse_args()
    values = yaml.safe_load((args.chart / "values.yaml").read_text()) or {}
    for item in args.set:
        path, _, raw = item.partition("=")
        *parents, leaf = path.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    text = "".join(render(t.read_text(), values, args.name, t.name)
                   for t in sorted((args.chart / "templates").glob("*.yaml")))
    if args.json:
        text = json.dumps([d for d in yaml.safe_load_all(text) if d is not None], indent=1) + "\n"
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
