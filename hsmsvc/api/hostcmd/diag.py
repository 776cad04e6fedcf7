"""Diagnostics and status: NC (perform diagnostics), NO (HSM status).

Any principal of the policy may ask, as gRPC health answers any; neither says more than the
LMK's check value and this software's version.
"""

from __future__ import annotations

import re

from hsmsvc import __version__
from hsmsvc.api.hostcmd.fields import Fields
from hsmsvc.api.hostcmd.registry import command
from hsmsvc.api.runner import Lane
from hsmsvc.service.context import Caller, Services

__all__ = ["FIRMWARE"]


def _firmware(version: str) -> bytes:
    """This version in the 9-character ``xxxx-xxxx`` form of a firmware number."""
    digits = "".join(f"{int(p):02d}"[-2:] for p in re.findall(r"\d+", version)[:3]).ljust(6, "0")
    return f"HSMS-{digits[:4]}".encode("ascii")


FIRMWARE = _firmware(__version__)


@command("NC", None, Lane.OTHER)
def diagnostics(s: Services, c: Caller, f: Fields) -> bytes:
    """NC: the LMK's check value (16H) and the firmware number (9A)."""
    f.end()
    kcv = s.backend.lmk_kcv().hex().upper()
    return kcv.ljust(16, "0")[:16].encode("ascii") + FIRMWARE


@command("NO", None, Lane.INLINE, needs_services=False)
def status(s: Services | None, c: Caller, f: Fields) -> bytes:
    """NO: mode ``00``; I/O buffer size (1N), Ethernet type (1N, TCP), TCP sockets (2N), firmware
    number (9A), DSP fitted (1N, none)."""
    if f.rest():
        f.digits(2, "mode flag")
    f.end()
    return b"2" + b"1" + b"64" + FIRMWARE + b"0"
