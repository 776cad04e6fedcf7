"""The store's database connections terminated again and again under load, through the Python SDK:
no call answers INTERNAL, every idempotent call succeeds, every answer is checked independently."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import psycopg

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientError
from tests import pg
from tests import reference as ind
from tests.api.solo import solo_server

PIN, PVKI = "4321", 1
PANS = [ind.luhn_pan(f"4000000000{i:05d}") for i in range(8)]
LOAD_SECONDS, EVERY = 8.0, 0.25


def test_terminated_store_connections_never_answer_internal(tmp_path: Path) -> None:
    with pg.throwaway_db() as url, solo_server(tmp_path, url) as solo:
        name = url.rsplit("/", 1)[1]
        zpk1, zpk2, pvk = solo.clear["zpk1"], solo.clear["zpk2"], solo.clear["pvk"]
        core, auditor = solo.client(), solo.client("auditor")
        outcomes: Counter[tuple[str, str]] = Counter()
        wrong: list[str] = []
        lock = threading.Lock()
        done = threading.Event()

        def note(method: str, code: str) -> None:
            with lock:
                outcomes[(method, code)] += 1

        def call(method: str, fn: object) -> object:
            try:
                out = fn()  # type: ignore[operator]
            except ClientError as e:
                note(method, e.code.name)
                return None
            note(method, "OK")
            return out

        def load(worker: int, c: Client, reader: Client) -> None:
            i = worker
            while not done.is_set():
                pan = PANS[i % len(PANS)]
                block = ind.tdes_ecb(zpk1, ind.iso0(PIN, pan))
                out = call("TranslatePin", lambda: c.translate_pin("zpk1", "zpk2", block, pan=pan))
                if out is not None and ind.decode_iso0(ind.tdes_ecb(zpk2, out, decrypt=True), pan) != PIN:
                    wrong.append("TranslatePin")
                info = call("GetKey", lambda: reader.get_key("zpk2"))
                if info is not None and info.key_id != "zpk2":  # type: ignore[attr-defined]
                    wrong.append("GetKey")
                kcv = call("GetKeyCheckValue", lambda: c.keys.GetKeyCheckValue(
                    key_pb.GetKeyCheckValueRequest(key=pb.KeyRef(key_id="zpk1"))))
                if kcv is not None and bytes(kcv.kcv)[:3] != ind.tdes_ecb(zpk1, bytes(8))[:3]:  # type: ignore[attr-defined]
                    wrong.append("GetKeyCheckValue")
                pvv = ind.visa_pvv(pvk, pan, PVKI, PIN)
                ok = call("VerifyPin", lambda: c.verify_pin_pvv("zpk1", block, pan, "pvk-visa", PVKI, pvv))
                if ok is False:
                    wrong.append("VerifyPin")
                i += 1

        def terminate() -> int:
            with psycopg.connect(pg.PG_ADMIN, autocommit=True) as a:
                return len(a.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall())

        workers = [threading.Thread(target=load, args=(w, core, auditor)) for w in range(4)]
        for t in workers:
            t.start()
        terminated, rounds, end = 0, 0, time.monotonic() + LOAD_SECONDS
        try:
            while time.monotonic() < end:
                time.sleep(EVERY)
                terminated += terminate()
                rounds += 1
        finally:
            done.set()
            for t in workers:
                t.join(30)
        failed = {k: n for k, n in outcomes.items() if k[1] != "OK"}
        calls = sum(outcomes.values())
        print(f"{calls} calls, {rounds} rounds of termination ending {terminated} connections; "
              f"not OK: {failed or 'none'}")
        assert terminated >= rounds, "each round found the server's connections"
        assert not wrong, wrong
        assert not any(code in ("INTERNAL", "UNKNOWN") for _, code in outcomes), failed
        # The SDK retries idempotent calls; VerifyPin (it counts attempts) it never retries.
        assert not {k: n for k, n in failed.items() if k[0] != "VerifyPin"}, failed
        assert all(code == "UNAVAILABLE" for _, code in failed), failed
        for method in ("TranslatePin", "GetKey", "GetKeyCheckValue", "VerifyPin"):
            assert outcomes[(method, "OK")] > 20, outcomes
        assert "unhandled error" not in solo.log.read_text()
