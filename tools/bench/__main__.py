"""``python -m tools.bench``: the pressure test, run in the source checkout (as ``hsmsvc bench``)."""

from __future__ import annotations

import argparse
import sys

from tools.bench import pressure


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench",
                                description="pressure test: the real server against a bare gRPC echo, with h2load")
    pressure.add_arguments(p)
    return pressure.run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
