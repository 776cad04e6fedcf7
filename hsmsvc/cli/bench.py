"""``hsmsvc bench``: the pressure test. It is not packaged: the tool, ``tools/bench``, starts
servers and h2load from a source checkout, and only there is ``tools`` importable (on the path
of the checkout's ``make`` venv, or of ``python -m hsmsvc`` run in the checkout). Elsewhere the
command says how to run it."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

HELP = "pressure test: the real server against a bare gRPC echo, with h2load"
DESCRIPTION = "Run from a source checkout: the tool lives in tools/bench."
# Described only when chosen: it pulls in the request builders and h2load driver.
LAZY = True

_HOW = ("hsmsvc bench: run it from a source checkout (the tool is tools/bench): "
        "`make .venv/.installed`, then `.venv/bin/hsmsvc bench ...`, or `python -m tools.bench ...` "
        "in the checkout")


def _pressure() -> ModuleType | None:
    """``tools.bench.pressure``, if this process can import it."""
    try:
        from tools.bench import pressure
    except ModuleNotFoundError as e:
        if e.name in ("tools", "tools.bench", "tools.bench.pressure"):
            return None
        raise
    return pressure


def add_arguments(p: argparse.ArgumentParser) -> None:
    pressure = _pressure()
    if pressure is not None:
        pressure.add_arguments(p)
        p.set_defaults(bench=pressure)
    else:
        p.set_defaults(any_options=True)


def run(args: argparse.Namespace) -> int:
    pressure = getattr(args, "bench", None)
    if pressure is None:
        print(_HOW, file=sys.stderr)
        return 2
    rc: int = pressure.run(args)
    return rc
