"""The least a gRPC server must do for TranslatePin and GenerateMac: the floor under hsmsvc.

Same framework and server kind as the echo (grpc.aio, one process). Each call
is parsed and answered as protobuf messages of hsmsvc's own API, and its
cryptography is done with pyca/cryptography on clear keys held in memory, with
the cipher contexts kept from call to call. Nothing else: no identity, policy,
key store, attempt counters, metrics, logs or audit, and no checks beyond the
PIN field's. It imports nothing from ``hsmsvc``.

Its instructions per call, beside echo's and hsmsvc's, say how much of
hsmsvc's cost over echo is the operation itself, which no server in Python
avoids, and how much is hsmsvc's (``tools.bench.instructions --floor``).

``python -m tools.bench.floor --keys FILE --ready-file F``, FILE a JSON object of
hex keys: ``zpk_in``, ``zpk_out`` (two-key TDES, format 0) and ``mak`` (ISO 9797-1
MAC algorithm 3, padding method 1, 8-byte MAC).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import itertools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from hsmsvc_client.v1 import mac_service_pb2 as mm
from hsmsvc_client.v1 import pin_service_pb2 as pm

_DIGITS = frozenset("0123456789")


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _three(key: bytes) -> bytes:
    return key + key[:8] if len(key) == 16 else key


class Floor:
    """The two operations on kept cipher contexts (ECB contexts carry no state between blocks)."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        # Three-key form of the two-key keys: the same cipher, without pyca's deprecation warning.
        self._in = Cipher(TripleDES(_three(keys["zpk_in"])), modes.ECB()).decryptor()
        self._out = Cipher(TripleDES(_three(keys["zpk_out"])), modes.ECB()).encryptor()
        mak = keys["mak"]
        self._k1 = mak[:8] * 3  # single DES as TDES with one key repeated
        self._last_d = Cipher(TripleDES(mak[8:] * 3), modes.ECB()).decryptor()
        self._last_e = Cipher(TripleDES(mak[:8] * 3), modes.ECB()).encryptor()

    def translate(self, r: Any) -> bytes:
        """ISO 9564-1 format 0 under one key to format 0 under another, PAN unchanged."""
        clear = self._in.update(r.pin_block)
        text = _xor(clear, bytes.fromhex("0000" + r.pan[-13:-1])).hex().upper()
        n = int(text[1], 16)
        if text[0] != "0" or not 4 <= n <= 12 or not set(text[2:2 + n]) <= _DIGITS or text[2 + n:] != "F" * (14 - n):
            raise ValueError("PIN block")
        return self._out.update(clear)

    def mac(self, data: bytes) -> bytes:
        """ISO 9797-1 MAC algorithm 3, padding method 1 (zeros), 8 bytes."""
        if len(data) % 8:
            data += bytes(8 - len(data) % 8)
        cbc = Cipher(TripleDES(self._k1), modes.CBC(bytes(8))).encryptor()
        last = cbc.update(data)[-8:]
        return self._last_e.update(self._last_d.update(last))


class _RequestIds(grpc.GenericRpcHandler):  # type: ignore[misc]
    """``--request-ids``: what hsmsvc asks of grpc beyond the operation, for its request ids.

    The id is read from the call's metadata when its handler is looked up, and sent
    back in the trailing metadata, as ``hsmsvc.api.status`` does; nothing else of hsmsvc's.
    """

    def __init__(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self._handlers = handlers

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        rid = next((v for k, v in details.invocation_metadata or () if k == "x-request-id"), None)
        _RID.set(rid if isinstance(rid, str) else f"floor-{next(_SERIAL):x}")
        for h in self._handlers:
            found = h.service(details)
            if found is not None:
                return found
        return None


_RID: contextvars.ContextVar[str] = contextvars.ContextVar("rid", default="-")
_SERIAL = itertools.count(1)


async def _serve(listen: str, floor: Floor, ready: str | None, request_ids: bool) -> None:
    async def translate(r: Any, context: Any) -> Any:
        if request_ids:
            context.set_trailing_metadata((("x-request-id", _RID.get()),))
        try:
            block = floor.translate(r)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "PIN block")
        return pm.TranslatePinResponse(pin_block=block, destination_key_version=1)

    async def mac(r: Any, context: Any) -> Any:
        if request_ids:
            context.set_trailing_metadata((("x-request-id", _RID.get()),))
        return mm.GenerateMacResponse(mac=floor.mac(r.data), key_version=1)

    server = grpc.aio.server()
    handlers = (
        grpc.method_handlers_generic_handler("hsmsvc.v1.PinService", {
            "TranslatePin": grpc.unary_unary_rpc_method_handler(
                translate, pm.TranslatePinRequest.FromString, pm.TranslatePinResponse.SerializeToString)}),
        grpc.method_handlers_generic_handler("hsmsvc.v1.MacService", {
            "GenerateMac": grpc.unary_unary_rpc_method_handler(
                mac, mm.GenerateMacRequest.FromString, mm.GenerateMacResponse.SerializeToString)}),
    )
    server.add_generic_rpc_handlers((_RequestIds(handlers),) if request_ids else handlers)
    port = server.add_insecure_port(listen)
    await server.start()
    gc.collect()
    gc.freeze()  # as hsmsvc serve and the echo do
    if ready:
        Path(ready + ".tmp").write_text(json.dumps({"port": port, "pid": os.getpid(),
                                                    "workers": [{"pid": os.getpid()}]}))
        os.replace(ready + ".tmp", ready)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools.bench.floor")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--keys", required=True, help="JSON file: zpk_in, zpk_out, mak as hex")
    p.add_argument("--ready-file")
    p.add_argument("--request-ids", action="store_true",
                   help="read a request id from the metadata and send it back in the trailers, as hsmsvc does")
    a = p.parse_args(argv)
    keys = {k: bytes.fromhex(v) for k, v in json.loads(Path(a.keys).read_text()).items()}
    asyncio.run(_serve(a.listen, Floor(keys), a.ready_file, a.request_ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
