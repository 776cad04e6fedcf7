"""Generate the Python stubs for proto/hsmsvc/v1 into hsmsvc/v1 (`make proto`).

The output depends only on the .proto files and the pinned grpcio-tools, so
CI regenerates into a scratch directory and fails if it differs from what is
committed (tests/api/test_proto_fresh.py).
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto" / "hsmsvc" / "v1").glob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    out.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out / "hsmsvc" / "v1" / "__init__.py"
    init.write_text('"""Generated from proto/hsmsvc/v1 by tools/gen_proto.py; do not edit."""\n')


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
