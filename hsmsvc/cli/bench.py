"""``hsmsvc bench``: the pressure test, from a source checkout (the tool is ``tools/bench``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "pressure test: the real server against a bare gRPC echo, with h2load"
DESCRIPTION = "Run from a source checkout: the tool lives in tools/bench."
# Described only when chosen: it pulls in the request builders and h2load driver.
LAZY = True


def _bench_module() -> Any:
    """``tools.bench.pressure`` from the source checkout this package runs from, if there is one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "tools" / "bench" / "pressure.py").exists():
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tools.bench import pressure

    return pressure


def add_arguments(p: argparse.ArgumentParser) -> None:
    bench = _bench_module()
    if bench is not None:
        bench.add_arguments(p)
        p.set_defaults(bench=bench)


def run(args: argparse.Namespace) -> int:
    bench = getattr(args, "bench", None)
    if bench is None:
        print("hsmsvc bench: run it from a source checkout (the tool is tools/bench)", file=sys.stderr)
        return 2
    rc: int = bench.run(args)
    return rc
