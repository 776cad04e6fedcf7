"""Faults that used to freeze the server or outlast their bounds (issue 26, found in review).

Each runs a real server on a throw-away PostgreSQL database and holds a real lock:

1. A key row locked by another session while a limited key needs its use count:
   the event loop must not wait on the use meter's reservation (it runs the call
   off the loop instead), and health keeps answering.
2. A call that runs inline, then again off the loop, counts its keys' uses once.
3. The audit anchor's file lock held by another process: the backend's own lock
   is not held across it, so PIN translations and health go on.
4. SIGTERM with a call stuck on a row lock: the process exits within the grace
   period plus the store's lock timeout, not when the lock is released.
5. The SDK: a caller's timeout bounds the whole call, retries included.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import psycopg
import pytest

from tests import pg
from tests import reference as ind
from tests.api.solo import solo_server

PAN = "4012345678909"


def _pg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_a_locked_key_row_must_not_freeze_the_event_loop(tmp_path: Path) -> None:
    with pg.throwaway_db() as url:
        with psycopg.connect(_pg(url), autocommit=True) as c:
            pass
        with solo_server(tmp_path, url) as s:
            # zpk1 gets a use limit (blocks of 2 uses), so a reservation is due every other call
            with psycopg.connect(_pg(url), autocommit=True) as c:
                c.execute("UPDATE keys SET max_uses = 100 WHERE key_id = 'zpk1'")
            cl = s.client(deadline=3.0, retries=0)
            blk = lambda: ind.tdes_ecb(s.clear["zpk1"], ind.iso0("1234", PAN))  # noqa: E731
            time.sleep(0.5)  # the key cache's audit-head refresh
            cl.translate_pin("zpk1", "zpk2", blk(), pan=PAN)
            locker = psycopg.connect(_pg(url))
            try:
                locker.execute("SELECT 1 FROM keys WHERE key_id = 'zpk1' FOR UPDATE")
                results: list[object] = []

                def one() -> None:
                    try:
                        results.append(cl.translate_pin("zpk1", "zpk2", blk(), pan=PAN))
                    except Exception as e:  # noqa: BLE001
                        results.append(e)

                ts = [threading.Thread(target=one) for _ in range(6)]
                for t in ts:
                    t.start()
                    time.sleep(0.05)
                time.sleep(0.3)
                started = time.monotonic()
                try:
                    status = s.health(timeout=2.0)
                    err = None
                except grpc.RpcError as e:
                    status, err = None, e.code()
                took = time.monotonic() - started
                code, _ = (None, None)
                try:
                    code, _ = s.http("/healthz", timeout=2.0)
                except Exception as e:  # noqa: BLE001
                    code = repr(e)
                ready = s.http("/readyz", timeout=2.0)
                print(f"health={status} err={err} took={took:.2f}s /healthz={code} /readyz={ready}")
            finally:
                locker.rollback()
                locker.close()
            for t in ts:
                t.join(10)
            print("calls:", [type(r).__name__ for r in results])
            assert err is None and took < 1.0, f"event loop frozen by a lock held across store I/O ({err}, {took:.2f}s)"


def test_a_rerun_inline_call_counts_its_key_uses_once(tmp_path: Path) -> None:
    n = 20
    with pg.throwaway_db() as url:
        with solo_server(tmp_path, url) as s:
            with psycopg.connect(_pg(url), autocommit=True) as c:
                c.execute("UPDATE keys SET max_uses = 100 WHERE key_id IN ('zpk1', 'zpk2')")
            cl = s.client(deadline=5.0, retries=0)
            for _ in range(n):
                cl.translate_pin("zpk1", "zpk2", ind.tdes_ecb(s.clear["zpk1"], ind.iso0("1234", PAN)), pan=PAN)
            _, body = s.http("/metrics")
            lines = [ln for ln in body.splitlines() if ln.startswith("hsmsvc_key_uses_total")]
            with psycopg.connect(_pg(url), autocommit=True) as c:
                db = c.execute("SELECT key_id, use_count FROM keys "
                               "WHERE key_id IN ('zpk1','zpk2') ORDER BY 1").fetchall()
            print(lines, db)
            # Each translation uses both keys: their sum (the page has no label per key).
            assert lines == [f"hsmsvc_key_uses_total {float(2 * n)}"], f"{n} translations, but {lines}"


def test_an_audit_anchor_write_must_not_freeze_the_event_loop(tmp_path: Path) -> None:
    """3. CommandBackend.write_audit_anchor holds the backend's one lock across the anchor's
    flock and file write (soft backend); every inline call on the loop needs that lock."""
    import fcntl

    from hsmsvc_client import ClientError

    with pg.throwaway_db() as url:
        with solo_server(tmp_path, url) as s:
            cl = s.client(deadline=3.0, retries=0)
            good = ind.tdes_ecb(s.clear["zpk1"], ind.iso0("1234", PAN))
            cl.translate_pin("zpk1", "zpk2", good, pan=PAN)
            with psycopg.connect(_pg(url)) as c:  # each store has its own anchor file
                row = c.execute("SELECT value FROM store_meta WHERE name = 'store_id'").fetchone()
            assert row is not None
            lock_file = open(tmp_path / f"lmk.sealed.anchor.{row[0]}.lock", "a")  # e.g. a second process on it
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                def bad() -> None:  # a wrong block: a failed attempt, audited, so an anchor write
                    try:
                        cl.translate_pin("zpk1", "zpk2", bytes(8), pan=PAN)
                    except ClientError:
                        pass

                t = threading.Thread(target=bad)
                t.start()
                time.sleep(0.5)
                started = time.monotonic()
                try:
                    cl2 = s.client(deadline=2.0, retries=0)
                    cl2.translate_pin("zpk1", "zpk2", good, pan=PAN)
                    err = None
                except ClientError as e:
                    err = e.code
                took = time.monotonic() - started
                for _ in range(10):  # once a thread has refilled the key cache, an inline run waits on the lock
                    threading.Thread(target=lambda: _quiet(cl2.translate_pin, "zpk1", "zpk2", good, pan=PAN)).start()
                    time.sleep(0.05)
                try:
                    status = s.health(timeout=2.0)
                except grpc.RpcError as e:
                    status = e.code()
                print(f"translate err={err} took={took:.2f}s health={status} readyz={s.http('/readyz')}")
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
                lock_file.close()
            t.join(10)
            assert status == 1, f"gRPC health did not answer while the anchor was locked: {status}"
            assert err is None and took < 1.0, f"loop frozen behind the anchor file lock ({err}, {took:.2f}s)"


def _quiet(fn, *a, **kw):  # type: ignore[no-untyped-def]
    try:
        return fn(*a, **kw)
    except Exception:  # noqa: BLE001
        return None


def test_sigterm_with_a_call_stuck_on_a_row_lock_exits_within_the_grace(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """4. No statement or lock timeout on the store: a thread blocked on a row lock never returns,
    and Running.stop() waits for it (runner.close(wait=True)), so SIGTERM never completes."""
    import signal

    import tests.api.solo as solo_mod

    procs = []
    real = solo_mod.launch

    def launch(*a, **kw):  # type: ignore[no-untyped-def]
        p, info = real(*a, **kw)
        procs.append(p)
        return p, info

    monkeypatch.setattr(solo_mod, "launch", launch)
    outcome: dict[str, object] = {}
    with pg.throwaway_db() as url:
        try:
            with solo_server(tmp_path, url) as s:
                with psycopg.connect(_pg(url), autocommit=True) as c:
                    c.execute("UPDATE keys SET max_uses = 100 WHERE key_id = 'zpk1'")
                cl = s.client(deadline=30.0, retries=0)
                blk = ind.tdes_ecb(s.clear["zpk1"], ind.iso0("1234", PAN))
                cl.translate_pin("zpk1", "zpk2", blk, pan=PAN)
                cl.translate_pin("zpk1", "zpk2", blk, pan=PAN)  # the reserved block is used up
                locker = psycopg.connect(_pg(url))
                locker.execute("SELECT 1 FROM keys WHERE key_id = 'zpk1' FOR UPDATE")
                codes: list[object] = []
                t = threading.Thread(target=lambda: codes.append(_code(cl.translate_pin, "zpk1", "zpk2", blk, pan=PAN)))
                t.start()
                time.sleep(0.5)
                proc = procs[0]
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(12)  # grace is 5 s
                except Exception:  # noqa: BLE001
                    pass
                outcome["exited_after_sigterm"] = proc.poll()
                outcome["waited"] = round(time.monotonic() - started, 1)
                locker.rollback()
                locker.close()
                t.join(30)
                outcome["client_saw"] = codes
                try:
                    proc.wait(10)
                except Exception:  # noqa: BLE001
                    proc.kill()
                outcome["rc_after_unlock"] = proc.poll()
        except AssertionError as e:
            if "server died" not in str(e):
                raise
    print(outcome)
    assert outcome["exited_after_sigterm"] == 0, f"SIGTERM did not drain within grace + 7 s: {outcome}"


def _code(fn, *a, **kw):  # type: ignore[no-untyped-def]
    try:
        fn(*a, **kw)
        return "OK"
    except Exception as e:  # noqa: BLE001
        return getattr(e, "code", type(e).__name__)


def test_the_sdk_retry_budget_is_bounded_by_the_callers_timeout() -> None:
    """5. Client._call: each attempt gets the whole timeout and retries run for retry_budget (8 s)
    whatever the caller asked: GetKey(timeout=1.0) against a down server returns after ~8 s."""
    from hsmsvc_client.v1 import key_service_pb2 as k
    from hsmsvc_client import Client, ClientError

    c = Client.insecure("127.0.0.1:1", deadline=1.0)
    started = time.monotonic()
    with pytest.raises(ClientError):
        c.keys.GetKey(k.GetKeyRequest(), timeout=1.0)
    took = time.monotonic() - started
    c.close()
    assert took < 1.5, f"a call given 1 s took {took:.1f} s"
