"""Instructions per backend command, in process, counted by callgrind: the card commands' own cost.

A command's cost without gRPC, the store or the server: a soft backend with a throw-away LMK runs
the command ``--calls`` times, and the same process runs it not at all; the difference of the two
callgrind totals over the calls is one command's instructions. Issue 35's floor for VerifyArqc
(``docs/performance.md``) is this count next to echo's per call.

``python -m tools.bench.commands --op arqc --calls 1000``
"""

from __future__ import annotations

import argparse
import pathlib
import re
import secrets
import subprocess
import sys
import tempfile

__all__ = ["main"]

OPS = ("arqc", "cvv")


def _run(op: str, calls: int) -> object:
    """The measured process: form the keys, run the command once to warm, then ``calls`` times; the
    first answer."""
    from hsmsvc.crypto.cvv import CvvKind
    from hsmsvc.hsm.commands import CvvData, FormKey, VerifyArqcs, VerifyCvvs
    from hsmsvc.hsm.model import KeySpec
    from hsmsvc.hsm.soft.backend import SoftBackend
    from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
    from tools.bench import workload as w

    from hsmsvc.api.cards import _authorisation

    b = SoftBackend(secrets.token_bytes(32), anchor_path=pathlib.Path(tempfile.mkdtemp()) / "lmk.anchor")

    def form(kt: KeyType, usage: KeyUsage, mode: ModeOfUse, clear: bytes) -> object:
        c1 = secrets.token_bytes(16)
        spec = KeySpec(f"k{secrets.token_hex(3)}", 1, kt, Algorithm.TDES_2KEY, usage, mode)
        return b.execute(FormKey(spec=spec, components=[c1, bytes(x ^ y for x, y in zip(c1, clear))]))[0]

    imk, cvk = w._tdes_key(), w._tdes_key()
    keys = w.Keys(b"", b"", b"", imk=imk, cvk=cvk)
    if op == "arqc":
        command: object = VerifyArqcs(key=form(KeyType.IMK, KeyUsage.EMV_AC, ModeOfUse.DERIVE, imk),  # type: ignore[arg-type]
                                      items=[_authorisation(w._authorisation(keys))])
    else:
        r = w._verify_cvv(keys)
        command = VerifyCvvs(key=form(KeyType.CVK, KeyUsage.CVK, ModeOfUse.MAC_GENERATE_VERIFY, cvk),  # type: ignore[arg-type]
                             items=[CvvData(kind=CvvKind.CVV2, pan=r.card.pan, expiry=r.card.expiry)], values=[r.cvv])
    first = b.execute(command)  # type: ignore[arg-type]
    for _ in range(calls):
        b.execute(command)  # type: ignore[arg-type]
    return first


def _total(op: str, calls: int) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg", sys.executable, "-m",
                              "tools.bench.commands", "--run", op, "--calls", str(calls)],
                             capture_output=True, text=True, check=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise SystemExit("callgrind gave no total:\n" + out.stderr[-2000:])
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(prog="tools.bench.commands", description=__doc__.split("\n\n")[0])
    a.add_argument("--op", choices=OPS, action="append", help="arqc (VerifyArqcs with an ARPC) or cvv (VerifyCvvs)")
    a.add_argument("--calls", type=int, default=1000)
    a.add_argument("--run", choices=OPS, help=argparse.SUPPRESS)
    args = a.parse_args(argv)
    if args.run:
        _run(args.run, args.calls)
        return 0
    for op in args.op or list(OPS):
        base, loaded = _total(op, 0), _total(op, args.calls)
        print(f"{op}: {(loaded - base) // args.calls:,} instructions per command ({args.calls:,} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
