"""The host-command door under faults: the store's connections dropped (pg_terminate_backend),
the server stalled (SIGSTOP) mid-pipeline. Every answer is checked against tests/reference.py;
a fault may cost a refusal, never a wrong answer, a reply to another request or a traceback.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections import Counter

import psycopg

from tests import pg
from tests import reference as ind
from tests.hostcmd.conftest import HostEnv

ACCOUNT = b"550000025321"
LOAD_SECONDS, EVERY = 6.0, 0.25


def _fresh_pan() -> str:
    return ind.luhn_pan("8" + "".join(secrets.choice("0123456789") for _ in range(14)))


def test_dropped_store_connections_cost_refusals_never_wrong_answers(host: HostEnv) -> None:
    name = host.store_url.rsplit("/", 1)[1]
    ca = b"CA" + host.tokens["tpk"] + host.tokens["zpk"] + b"126428EB94035AF53B0101" + ACCOUNT
    outcomes: Counter[tuple[str, bytes]] = Counter()
    wrong: list[str] = []
    done = threading.Event()

    def load() -> None:
        with host.host() as c:
            i = 0
            while not done.is_set():
                i += 1
                pan = _fresh_pan()
                pvv = ind.visa_pvv(host.clear["pvk"], pan, 1, "1234").encode()
                # The right PIN: wrong ones would use up the principal's allowance for the session.
                block = ind.tdes_ecb(host.clear["zpk"], ind.iso0("1234", pan)).hex().upper().encode()
                ec = b"EC" + host.tokens["zpk"] + host.tokens["pvk"] + block + b"01" + pan[-13:-1].encode() + b"1" + pvv
                # Pipelined: three requests in flight, each reply checked against its own.
                c.send(c.frame(ca, b"%04d" % (3 * i % 10000)) + c.frame(ec, b"%04d" % ((3 * i + 1) % 10000))
                       + c.frame(b"BU011" + host.tokens["zpk"] + b";001", b"%04d" % ((3 * i + 2) % 10000)))
                r1, r2, r3 = c.read(), c.read(), c.read()
                if [r1.header, r2.header, r3.header] != [b"%04d" % ((3 * i + k) % 10000) for k in range(3)]:
                    wrong.append("order")
                outcomes[("CA", r1.error)] += 1
                outcomes[("EC", r2.error)] += 1
                outcomes[("BU", r3.error)] += 1
                if r1.error == b"00" and r1.fields != b"1291DDDA0A7C12CFAA01":
                    wrong.append("CA")
                if r2.error == b"01":
                    wrong.append("EC: the right PIN refused")
                if r3.error == b"00" and r3.fields != b"6F1E3F":
                    wrong.append("BU")

    def terminate() -> int:
        with psycopg.connect(pg.PG_ADMIN, autocommit=True) as a:
            return len(a.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall())

    workers = [threading.Thread(target=load) for _ in range(3)]
    for t in workers:
        t.start()
    terminated, end = 0, time.monotonic() + LOAD_SECONDS
    try:
        while time.monotonic() < end:
            time.sleep(EVERY)
            terminated += terminate()
    finally:
        done.set()
        for t in workers:
            t.join(30)
    print(f"terminated {terminated}; outcomes {dict(outcomes)}")
    assert terminated > 0 and not wrong, wrong
    # A dropped connection is a refusal the application may retry elsewhere (41); nothing else.
    assert {e for (_, e) in outcomes} <= {b"00", b"41"}, outcomes
    for cmd in ("CA", "EC", "BU"):
        assert outcomes[(cmd, b"00")] > 10, outcomes
    assert "unhandled error" not in host.log.read_text()
    with host.host() as c:
        assert c.call(ca).fields == b"1291DDDA0A7C12CFAA01", "the door recovers"


def test_a_stalled_server_answers_every_pipelined_request_after_it_resumes(host: HostEnv) -> None:
    pid = _server_pid(host)
    ca = b"CA" + host.tokens["tpk"] + host.tokens["zpk"] + b"126428EB94035AF53B0101" + ACCOUNT
    with host.host() as c:
        assert c.call(b"NC").error == b"00"
        os.kill(pid, signal.SIGSTOP)
        try:
            c.send(b"".join(c.frame(ca if i % 2 else b"NC", b"%04d" % i) for i in range(40)))
            time.sleep(1.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        replies = [c.read() for _ in range(40)]
    assert [r.header for r in replies] == [b"%04d" % i for i in range(40)]
    assert all(r.error == b"00" for r in replies)
    assert {r.fields for r in replies[1::2]} == {b"1291DDDA0A7C12CFAA01"}


def _server_pid(host: HostEnv) -> int:
    import json
    ready = host.log.parent / "ready.json"
    return int(json.loads(ready.read_text())["pid"])
