"""Driving the ceremony client from a test: a console fed from a pipe, and a request recorder."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable

import grpc

from hsmsvc.ceremony.console import Console
from hsmsvc.crypto import kcv
from hsmsvc.types import Algorithm


def scripted(lines: list[str]) -> Console:
    """A console whose keyboard is ``lines``; its screen is a StringIO (``console.out``)."""
    r, w = os.pipe()
    os.write(w, ("\n".join(lines) + "\n").encode())
    os.close(w)
    return Console(fd=r, out=io.StringIO())


def typed_components(alg: Algorithm, parts: list[bytes]) -> list[str]:
    """What custodians type at `ceremony zmk form`: each component, then the KCV on its mailer."""
    out: list[str] = []
    for p in parts:
        out += [p.hex().upper(), kcv.kcv(alg, p).hex().upper()]
    return out


class Recorder(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Keeps the serialized bytes of every request sent through it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        self.sent.append(request.SerializeToString())
        return continuation(details, request)


def mailer_component(path: Path) -> bytes:
    """The component as a custodian reads it off a text mailer: the indented lines after
    "Component:", up to the blank line (an AES-256 component takes two)."""
    lines = path.read_text().splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("Component:")) + 2
    end = lines.index("", start)
    return bytes.fromhex("".join(lines[start:end]).replace(" ", ""))


def mailer_file(directory: Path, position: int, custodian: str, suffix: str = ".txt") -> Path:
    """The one mailer for ``custodian`` at ``position`` in ``directory``: its name is
    ``<ceremony id>-<position>-<custodian>``, and the ceremony id is not known in advance."""
    found = sorted(directory.glob(f"*-{position}-{custodian}{suffix}"))
    assert len(found) == 1, found
    return found[0]
