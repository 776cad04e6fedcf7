"""Generate the Python stubs for proto/hsmsvc/v1 into clients/python/hsmsvc_client/v1 (`make proto`).

The stubs ship in the client distribution (hsmsvc-client) and the server imports them from
there: one copy of each module, so a process registers each .proto file once in protobuf's
default descriptor pool. protoc names the modules after the .proto paths (``hsmsvc.v1``);
only the Python import lines and module names are rewritten. The .proto file names, the
protobuf package and the gRPC method paths stay ``hsmsvc/v1`` and ``hsmsvc.v1``: they are the
wire API.

The output depends only on the .proto files and the pinned grpcio-tools, so CI regenerates
into a scratch directory and fails if it differs from what is committed
(tests/api/test_units.py).
"""

from __future__ import annotations

import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "clients" / "python" / "hsmsvc_client" / "v1"
_REWRITES = (
    # Imports between the generated modules.
    (re.compile(r"^from hsmsvc\.v1 import ", re.M), "from hsmsvc_client.v1 import "),
    # The module name given to the message classes (their __module__).
    (re.compile(r"'hsmsvc\.v1\.(\w+_pb2)'"), r"'hsmsvc_client.v1.\1'"),
    # The path named in the grpcio version check's error message.
    (re.compile(r"generated code in hsmsvc/v1/"), "generated code in hsmsvc_client/v1/"),
)
_LEFT = re.compile(r"^\s*(from|import) hsmsvc\.v1\b", re.M)


def rewrite(text: str) -> str:
    """protoc's output for ``hsmsvc.v1`` as the modules of ``hsmsvc_client.v1``."""
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    if _LEFT.search(text):
        raise SystemExit("gen_proto: an import of hsmsvc.v1 was left unrewritten")
    return text


def generate(out: Path = OUT) -> None:
    """Write the stubs for every proto/hsmsvc/v1/*.proto into the package directory ``out``."""
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto" / "hsmsvc" / "v1").glob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", *protos]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted((Path(tmp) / "hsmsvc" / "v1").iterdir()):
            (out / f.name).write_text(rewrite(f.read_text()))
    (out / "__init__.py").write_text('"""Generated from proto/hsmsvc/v1 by tools/gen_proto.py; do not edit."""\n')


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
