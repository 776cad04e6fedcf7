"""Two processes on one PostgreSQL store: a revocation in one is refused by the next call in the other."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection
from pathlib import Path

from hsmsvc.hsm.commands import TranslatePin
from hsmsvc.hsm.model import KeySpec, PinBlock
from hsmsvc.hsm.config import SoftConfig
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage, PinBlockFormat
from tests.hsm import softhsm
from tests.hsm.components_env import LMK
from tests.hsm.helpers import PAN
from tests.reference import ecb, iso0


def _serve(config: SoftConfig, url: str, conn: Connection) -> None:
    """A second hsmsvc process: its own backend and store connection, same database."""
    from hsmsvc.errors import HsmsvcError
    from hsmsvc.hsm.config import build
    from hsmsvc.hsm.policy import Operation

    backend = build(config)
    km = KeyManager(KeyStore(url, backend), backend, "process-b")
    conn.send("ready")
    while True:
        req = conn.recv()
        if req is None:
            return
        block, src, dst = req
        try:
            s = km.for_use(src, Operation.PIN_DECRYPT)
            d = km.for_use(dst, Operation.PIN_ENCRYPT)
            out = backend.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_0, PAN),
                                               src=s.cryptogram, dst=d.cryptogram,
                                               dst_format=PinBlockFormat.ISO_0))
            conn.send(("ok", out))
        except HsmsvcError as e:
            conn.send(("err", type(e).__name__, str(e)))


def test_revocation_is_seen_by_another_process(pg_url: str, tmp_path: Path) -> None:
    config = softhsm.soft_config(tmp_path)
    backend = SoftBackend(LMK, anchor_path=tmp_path / "a.anchor")
    store = KeyStore(pg_url, backend)
    store.migrate()
    km = KeyManager(store, backend, "process-a")
    tpk_clear = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    parts = [bytes(16), tpk_clear]
    km.form(KeySpec("tpk-1", 1, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION), parts)
    km.generate(KeySpec("zpk-1", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION))

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(config, pg_url, child), daemon=True)
    proc.start()
    try:
        assert parent.poll(60) and parent.recv() == "ready"
        block = ecb(Algorithm.TDES_2KEY, tpk_clear, iso0("1234", PAN))
        parent.send((block, "tpk-1", "zpk-1"))
        assert parent.recv()[0] == "ok"
        km.revoke("zpk-1", 1, "test")
        parent.send((block, "tpk-1", "zpk-1"))
        reply = parent.recv()
        assert reply[0] == "err" and reply[1] == "KeyStateError", reply
        assert "REVOKED" in reply[2]
        parent.send(None)
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
        store.close()
