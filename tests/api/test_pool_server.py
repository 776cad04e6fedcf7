"""A pool member stalled under load, through a real server (issue 26 item 1).

``hsmsvc serve`` with a two-member pool (soft members on one sealed LMK, a 1 s
call timeout), TranslatePin and VerifyPin (IBM 3624 offsets) from two clients
with random PINs and PANs, and one member's worker SIGSTOPped for three times
its timeout, then SIGCONTed. Every answer is checked with pyca/cryptography
(tests/reference.py): none may be wrong, none may fail, and the stopped
worker is replaced by a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hsmsvc.hsm.model import KeySpec
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client import Client, ClientError, ClientTls
from tests import pg
from tests import reference as ind
from tests.api.conftest import POLICY, TABLE, _form, forming, launch, seal_lmk, stop
from tools.bench.pki import ThrowawayCA

TIMEOUT = 1.0


@dataclass
class PoolServer:
    proc: subprocess.Popen[bytes]
    tpk: bytes
    zpk: bytes
    pvk: bytes
    clients: list[Client] = field(default_factory=list)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolServer]:
    d = tmp_path_factory.mktemp("pool-server")
    ca = ThrowawayCA(d)
    cert = ca.issue("hsmsvc-server", server=True)
    sealed_file = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    member = f'[[backend.members]]\nsealed_lmk = "{sealed_file}"\npassphrase_env = "HSMSVC_TEST_LMK_PASSPHRASE"\n'
    backend_toml = (f'\n[backend]\nkind = "pool"\ncall_timeout = {TIMEOUT}\nhealth_interval = 0.2\n'
                    + member + member)
    attempts = "\n[attempts]\nper_pan = 3\nper_principal = 1000000\nwindow_seconds = 3600\n"
    with pg.throwaway_db() as url:
        with forming(url, sealed_file) as km:
            E, C = ModeOfUse.ENCRYPT_DECRYPT, ModeOfUse.MAC_GENERATE_VERIFY
            tpk = _form(km, KeySpec("pool.tpk", 1, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, E))
            zpk = _form(km, KeySpec("pool.zpk", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, E))
            pvk = _form(km, KeySpec("pool.pvk", 1, KeyType.PVK, Algorithm.TDES_2KEY,
                                    KeyUsage.PIN_VERIFICATION_IBM3624, C, decimalization_table=TABLE))
        proc, info = launch(d, url, sealed_file, cert, ca, attempts, backend=backend_toml)
        s = PoolServer(proc, tpk, zpk, pvk)
        ident = ca.issue("core-banking")
        for _ in range(3):
            s.clients.append(Client(f"127.0.0.1:{info['port']}",
                                    ClientTls(ca.ca_file, ident.cert, ident.key, "localhost"), deadline=10.0))
        try:
            yield s
        finally:
            for c in s.clients:
                c.close()
            stop(proc, d / "server.log")


def _workers(server_pid: int) -> set[int]:
    """The pool's member workers: the server's spawned children (not the resource tracker), from /proc."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == server_pid and b"spawn_main" in cmdline:
            found.add(int(proc.name))
    return found


def _luhn_pan() -> str:
    return ind.luhn_pan("4" + "".join(str(secrets.randbelow(10)) for _ in range(14)))


@dataclass
class Tally:
    calls: int = 0
    wrong: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def _translate(s: PoolServer, c: Client, t: Tally) -> None:
    pin, pan = f"{secrets.randbelow(10**6):06d}", _luhn_pan()
    started = time.perf_counter()
    out = c.translate_pin("pool.tpk", "pool.zpk", ind.tdes_ecb(s.tpk, ind.iso0(pin, pan)), pan=pan)
    t.latencies.append(time.perf_counter() - started)
    if ind.decode_iso0(ind.tdes_ecb(s.zpk, out, decrypt=True), pan) != pin:
        t.wrong.append("translate")


def _verify(s: PoolServer, c: Client, t: Tally) -> None:
    pin, pan = f"{secrets.randbelow(10**4):04d}", _luhn_pan()
    vdata = pan  # 16 digits
    offset = ind.ibm3624_offset(s.pvk, vdata, TABLE, pin)
    right = secrets.randbelow(2) == 0
    tried = pin if right else f"{(int(pin) + 1) % 10**4:04d}"
    ok = c.verify_pin_offset("pool.tpk", ind.tdes_ecb(s.tpk, ind.iso0(tried, pan)), pan, "pool.pvk", vdata, offset)
    if ok != right:
        t.wrong.append(f"verify right={right} got={ok}")


def test_a_stalled_member_gives_no_wrong_answer_and_is_replaced(srv: PoolServer) -> None:
    before = _workers(srv.proc.pid)
    assert len(before) == 2
    tallies = [Tally(), Tally(), Tally()]
    done = threading.Event()

    def load(i: int) -> None:
        c, t = srv.clients[i], tallies[i]
        while not done.is_set():
            try:
                (_translate if i != 1 else _verify)(srv, c, t)
            except ClientError as e:
                t.failed.append(f"{e.code.name}: {e.details}")
            t.calls += 1

    threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    try:
        time.sleep(0.5)
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGSTOP)
        time.sleep(3 * TIMEOUT)
        with contextlib.suppress(ProcessLookupError):  # the pool killed and reaped it already
            os.kill(victim, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while len(_workers(srv.proc.pid) - before) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # and load on the replaced pool
    finally:
        done.set()
        for th in threads:
            th.join()
    after = _workers(srv.proc.pid)
    print(f"calls {[t.calls for t in tallies]}, "
          f"met the stall {sum(x >= TIMEOUT for t in tallies for x in t.latencies)}")
    assert victim not in after and len(after) == 2, (before, after)
    for t in tallies:
        assert t.calls > 50 and t.wrong == [] and t.failed == [], (t.calls, t.wrong[:5], t.failed[:5])
    # A call that met the stalled member waited out its timeout, then was answered by the other;
    # the rest went on: one client's translations stay under 100 ms at the 99th percentile
    # of all but the few that met the stall.
    slow = [x for x in tallies[2].latencies if x >= TIMEOUT]
    assert len(slow) <= 2
    fast = sorted(x for x in tallies[2].latencies if x < TIMEOUT)
    assert fast[int(len(fast) * 0.99) - 1] < 0.1
