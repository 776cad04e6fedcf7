"""Driving the ceremony client from a test: a console fed from a pipe, and a request recorder."""

from __future__ import annotations

import io
import os
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
