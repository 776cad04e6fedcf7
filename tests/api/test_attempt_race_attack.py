"""Issue 27, attacked: a right PIN is answered only once settled, as a wrong one is.

A real ``hsmsvc serve`` over mTLS with two workers on PostgreSQL, as tests/api/test_card_counters.py.

A match whose card counter read zero was released without being settled, so it was never
ordered after the wrong guesses in flight beside it: of N distinct guesses sent at once at a
fresh card, every one that passed the first read was decided, the right one answered ``true``
however many wrong ones took the card to its limit first, and a guess refused at settlement
was known to be wrong. An attacker tried as many PINs per window as the service had checks in
flight (transaction threads times workers), not the limit's 3 (+1).

The tests hold what another worker's settlement of the same principal holds (its advisory
lock and its counter row, hsmsvc/keys/store/counters.py) and see whether any outcome is
answered before that settlement ends.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from hsmsvc.hsm.model import KeySpec
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc.v1 import pin_service_pb2 as pin_pb
from hsmsvc.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientError, ClientTls
from tests import pg
from tests import reference as ind
from tests.api.conftest import POLICY, _form, forming, launch, seal_lmk, stop
from tools.bench.pki import ThrowawayCA

PER_PAN = 3
ATTEMPTS = f"\n[attempts]\nper_pan = {PER_PAN}\nper_principal = 100000\nwindow_seconds = 3600\n"
PIN, WRONG = "2468", "1357"
HELD = 1.5
"""Seconds the principal's row is held (below the store's 5 s lock timeout)."""


@dataclass
class Server:
    keys: dict[str, bytes]
    clients: list[Client]
    url: str


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("race")
    ca = ThrowawayCA(d)
    ident = ca.issue("core-banking")
    cert = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            T2 = Algorithm.TDES_2KEY
            keys = {
                "zpk": _form(km, KeySpec("race.zpk", 1, KeyType.ZPK, T2, KeyUsage.PIN_ENCRYPTION,
                                         ModeOfUse.ENCRYPT_DECRYPT)),
                "pvk": _form(km, KeySpec("race.pvk", 1, KeyType.PVK, T2, KeyUsage.PIN_VERIFICATION_VISA_PVV,
                                         ModeOfUse.MAC_GENERATE_VERIFY)),
                "psk": _form(km, KeySpec("race.psk", 1, KeyType.PSK, Algorithm.AES_256, KeyUsage.MAC_HMAC,
                                         ModeOfUse.MAC_GENERATE_VERIFY)),
            }
        proc, info = launch(d, url, sealed_file, cert, ca, ATTEMPTS, top="workers = 2\n")
        tls = ClientTls(ca.ca_file, ident.cert, ident.key, "localhost")
        clients = [Client(f"127.0.0.1:{info['port']}", tls, deadline=30.0, retries=0) for _ in range(4)]
        try:
            yield Server(keys, clients, url)
        finally:
            for c in clients:
                c.close()
            stop(proc, d / "server.log")


def _card() -> str:
    return ind.luhn_pan("4" + "".join(str(secrets.randbelow(10)) for _ in range(14)))


def _pvv_guess(srv: Server, pan: str, pin: str, client: int) -> Callable[[], bool]:
    pvv = ind.visa_pvv(srv.keys["pvk"], pan, 1, PIN)
    block = ind.tdes_ecb(srv.keys["zpk"], ind.iso0(pin, pan))
    c = srv.clients[client]
    return lambda: c.verify_pin_pvv("race.zpk", block, pan, "race.pvk", 1, pvv)


def _batch_guess(srv: Server, account: str, pin: str, client: int) -> Callable[[], bool]:
    pan = _card()
    req = pin_pb.VerifyPinBatchRequest(
        key=pb.KeyRef(key_id="race.zpk"), format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_blocks=ind.tdes_ecb(srv.keys["zpk"], ind.iso0(pin, pan)), pans=[pan],
        psk=pb.KeyRef(key_id="race.psk"), method=pb.STORED_PIN_METHOD_DIGEST, accounts=[account],
        stored_pins=ind.pin_digest(srv.keys["psk"], account, PIN))
    c = srv.clients[client]

    def call() -> bool:
        r = c.pins.VerifyPinBatch(req)
        if r.errors:
            raise AssertionError(f"{r.errors[0].code}:{r.errors[0].message}")
        return bool(r.verified[0])

    return call


def _with_principal_held(srv: Server, guesses: list[Callable[[], bool]]) -> tuple[list[str], list[float], float]:
    """Send ``guesses`` while the principal's counter row is held; its answers, when each came
    (seconds from sending), and when the row was let go."""
    # The principal's row exists: one failure on a throwaway card.
    assert _pvv_guess(srv, _card(), WRONG, 0)() is False
    answers, when = [""] * len(guesses), [0.0] * len(guesses)
    with psycopg.connect(srv.url.replace("postgresql+psycopg://", "postgresql://")) as held:
        # The store's advisory lock key for a subject: the first 8 bytes of SHA-256 over its name.
        key = int.from_bytes(hashlib.sha256(b"hsmsvc.pin_attempts:principal:core-banking").digest()[:8], "big",
                             signed=True)
        held.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        row = held.execute("SELECT failures FROM pin_attempts WHERE subject = 'principal:core-banking' "
                           "FOR UPDATE").fetchone()
        assert row is not None
        t0 = time.monotonic()

        def one(i: int) -> None:
            try:
                answers[i] = str(guesses[i]()).lower()
            except ClientError as e:
                answers[i] = f"{e.code.name}:{e.details}"
            except AssertionError as e:
                answers[i] = str(e)
            when[i] = time.monotonic() - t0

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(guesses))]
        for t in threads:
            t.start()
        time.sleep(HELD)
        released = time.monotonic() - t0
        held.rollback()
    for t in threads:
        t.join(30)
    return answers, when, released


def test_a_right_pin_at_a_fresh_card_waits_for_the_principal_settlement_as_a_wrong_one_does(srv: Server) -> None:
    pan = _card()
    guesses = [_pvv_guess(srv, pan, PIN, 1), _pvv_guess(srv, pan, WRONG, 2)]
    answers, when, released = _with_principal_held(srv, guesses)
    assert answers == ["true", "false"], answers
    # Answered at once, the right one was decided before it was ordered among the guesses in
    # flight, and told apart from a wrong one (which waits) by when it came back.
    assert min(when) >= released, f"answered at {when} s, before the principal's row was let go at {released:.2f} s"


def test_a_batch_of_one_right_pin_waits_for_the_principal_settlement(srv: Server) -> None:
    account = f"62{secrets.randbelow(10 ** 15):015d}"
    answers, when, released = _with_principal_held(srv, [_batch_guess(srv, account, PIN, 1)])
    assert answers == ["true"], answers
    assert when[0] >= released, (f"answered at {when[0]:.2f} s, "
                                 f"before the principal's row was let go at {released:.2f} s")
