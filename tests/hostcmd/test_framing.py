"""The host-command door's framing, pipelining, discovery log and robustness, over real sockets.

Frames are built by tests/hostcmd/client.py, never by hsmsvc's own parser. The fuzz run sends
10,000 frames: mutations of valid commands, random bytes and cut frames. Each must get exactly
one reply, in order, carrying its header and a two-character error code that is not "41"
(internal error), and the server must go on answering.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from tests.api.conftest import PASSPHRASE, seal_lmk
from tests.hostcmd.client import HostClient
from tests.hostcmd.conftest import HostEnv

ACCOUNT = b"550000025321"


def _ca(host: HostEnv) -> bytes:
    return b"CA" + host.tokens["tpk"] + host.tokens["zpk"] + b"126428EB94035AF53B0101" + ACCOUNT


def test_pipelined_requests_are_answered_in_order_with_their_headers(host: HostEnv) -> None:
    bodies = [_ca(host), b"NC", b"NO00", b"QQ", _ca(host)[:-3], b"CA", _ca(host) + b"\x19trl"] * 12
    with host.host() as c:
        c.send(b"".join(c.frame(b, b"%04d" % i) for i, b in enumerate(bodies)))
        replies = [c.read() for _ in bodies]
    for i, (b, r) in enumerate(zip(bodies, replies)):
        assert r.header == b"%04d" % i
        want = {b"CA": b"CB", b"NC": b"ND", b"NO": b"NP", b"QQ": b"QR"}[b[:2]]
        assert r.code == want
    assert [r.error for r in replies[:7]] == [b"00", b"00", b"00", b"68", b"22", b"15", b"00"]
    assert replies[6].trailer == b"trl" and replies[6].fields == b"1291DDDA0A7C12CFAA01"


def test_frames_shorter_than_a_header_or_a_command(host: HostEnv) -> None:
    with host.host() as c:
        for body in (b"", b"00", b"0001", b"0001C"):
            c.send(struct.pack(">H", len(body)) + body)
            r = c.read()
            assert (r.code, r.error) == (b"ZZ", b"15"), body
            assert r.header == body[:4].ljust(4, b" ")
        assert c.call(b"NC").error == b"00", "the connection survives"


def test_a_stalled_client_holds_up_no_one_else(host: HostEnv) -> None:
    stalled = socket.create_connection(("127.0.0.1", host.host_port))
    try:
        stalled.sendall(b"\x00")  # half a length, then nothing (and no TLS handshake at all)
        with host.host() as c:
            started = time.monotonic()
            assert c.call(_ca(host)).error == b"00"
            assert time.monotonic() - started < 2
    finally:
        stalled.close()


def test_a_frame_cut_by_its_client_closes_only_that_connection(host: HostEnv) -> None:
    c = host.host()
    c.send(c.frame(_ca(host))[:-10])
    c.close()
    with host.host() as d:
        assert d.call(b"NC").error == b"00"


def _mutations(rng: random.Random, valid: list[bytes]) -> bytes:
    base = bytearray(rng.choice(valid))
    kind = rng.randrange(7)
    if kind == 0 and base:  # flip bytes
        for _ in range(rng.randint(1, 4)):
            base[rng.randrange(len(base))] = rng.randrange(256)
    elif kind == 1:  # cut
        del base[rng.randrange(len(base) + 1):]
    elif kind == 2:  # extend
        base += secrets.token_bytes(rng.randint(1, 40))
    elif kind == 3:  # random body under a known command
        base = bytearray(base[:2] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 120))))
    elif kind == 4:  # random command code and hex-ish payload
        base = bytearray(bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(2))
                         + bytes(rng.choice(b"0123456789ABCDEFSU;#%$") for _ in range(rng.randint(0, 80))))
    elif kind == 5:  # a delimiter or trailer marker somewhere
        pos = rng.randrange(len(base) + 1)
        base[pos:pos] = rng.choice([b";", b"\x19", b"#", b"%", b"$", b"&", b"*", b"~"])
    else:  # pure noise
        base = bytearray(secrets.token_bytes(rng.randint(0, 200)))
    return bytes(base)


def test_ten_thousand_fuzzed_frames(host: HostEnv) -> None:
    seed = int(os.environ.get("HOSTCMD_FUZZ_SEED", secrets.randbelow(2 ** 32)))
    rng = random.Random(seed)
    t = host.tokens
    valid = [
        _ca(host), b"CC" + t["zpk"] + t["zpk-b"] + b"1291DDDA0A7C12CFAA0147" + ACCOUNT,
        b"EC" + t["zpk"] + t["pvk"] + b"91DDDA0A7C12CFAA01" + ACCOUNT + b"14402",
        b"BU011" + t["zpk"] + b";001", b"NC", b"NO00", b"A00001U", b"A6001" + t["zmk-a6"] + b"U" + b"0" * 32 + b"U",
        b"DA" + t["tpk"] + t["pvk"] + b"12" + b"0" * 16 + b"0104" + ACCOUNT + b"0123456789012345" + b"N" * 12
        + b"1234FFFFFFFF", b"M6" + b"0" * 30, b"M0" + b"0" * 30, b"CW" + b"0" * 30, b"KQ" + b"0" * 30,
    ]
    frames = [_mutations(rng, valid) for _ in range(10_000)]
    started = time.monotonic()
    # A principal of its own: mutated PIN blocks count as failed attempts, and would use up the
    # allowance of the principal the other tests run as.
    with host.host("fuzzer") as c:
        for lo in range(0, len(frames), 250):
            chunk = frames[lo:lo + 250]
            c.send(b"".join(c.frame(f, b"%04d" % (i % 10_000)) for i, f in enumerate(chunk, lo)))
            for i, f in enumerate(chunk, lo):
                r = c.read()
                assert r.header == b"%04d" % (i % 10_000), f"seed {seed}: reply out of order at {i}"
                assert len(r.error) == 2 and r.error.isalnum() and r.error != b"41", (seed, i, f, r)
        assert c.call(b"NC").error == b"00"
    assert time.monotonic() - started < 120, "no frame may hang the door"
    log = host.log.read_text()
    assert "Traceback" not in log and "unhandled error" not in log, f"seed {seed}"


def test_discovery_logs_codes_and_lengths_never_values(host: HostEnv) -> None:
    with host.host() as c:
        assert c.call(_ca(host)).error == b"00"
    time.sleep(0.3)
    lines = [json.loads(x) for x in host.log.read_text().splitlines() if '"hsmsvc.hostcmd.discovery"' in x]
    ca = [x for x in lines if x.get("command") == "CA" and x.get("code") == "00"]
    assert ca, "discovery mode logs each command"
    assert "PIN block:16" in ca[-1]["fields"] and "account number:12" in ca[-1]["fields"]
    text = host.log.read_text()
    for secret in (b"6428EB94035AF53B", b"91DDDA0A7C12CFAA", ACCOUNT, host.tokens["tpk"][1:40]):
        assert secret.decode() not in text


def _dev_server(d: Path, host_table: str) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    sealed = seal_lmk(d)
    (d / "hsmsvc.toml").write_text(f"""
listen = "127.0.0.1:0"
metrics_listen = ""
store = "sqlite:///{d / 'keys.db'}"
insecure_dev = true
[backend]
kind = "soft"
sealed_lmk = "{sealed}"
passphrase_env = "HSMSVC_TEST_LMK_PASSPHRASE"
{host_table}
""")
    ready = d / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "hsmsvc", "serve", "--config", str(d / "hsmsvc.toml"),
                             "--ready-file", str(ready)], stdout=open(d / "server.log", "wb"),
                            stderr=subprocess.STDOUT, env={**os.environ, "HSMSVC_TEST_LMK_PASSPHRASE": PASSPHRASE})
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, (d / "server.log").read_text()
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())


def test_older_firmwares_framing_length_without_the_header(tmp_path: Path) -> None:
    proc, info = _dev_server(tmp_path, """
[hostcommands]
listen = "127.0.0.1:0"
header_length = 2
length_counts_header = false
""")
    try:
        with HostClient(info["host_port"], header_length=2, counts_header=False) as c:
            r = c.call(b"NC", b"ab")
            assert (r.header, r.code, r.error) == (b"ab", b"ND", b"00")
            c.send(c.frame(b"NO00", b"xy") + c.frame(b"NC", b"zz"))
            assert [c.read().header, c.read().header] == [b"xy", b"zz"]
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_a_refused_client_is_answered_once_and_closed(host: HostEnv) -> None:
    """Issue 36's review held all 1,024 slots with connections outside the policy: such a client now
    gets one 17, for its operators to see why, and no slot to keep."""
    with host.host("stranger") as c:
        assert c.call(b"NO00").error == b"17"
        c.sock.settimeout(5)
        assert c.sock.recv(1) == b"", "closed after the one answer"
    silent = host.host("stranger")
    silent.sock.settimeout(10)
    started = time.monotonic()
    assert silent.sock.recv(1) == b"", "a silent refused client is closed too"
    assert time.monotonic() - started < 8
    silent.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_does_not_read_stalls_only_itself(host: HostEnv) -> None:
    """Issue 36's review sent 3,000 large requests without reading and the server buffered 98 MB of
    replies. Now the sender waits for the client past a bound, and reading stops at in_flight."""
    pid = int(json.loads((host.log.parent / "ready.json").read_text())["pid"])
    message = b"\x00" * 8000
    body = b"M0" + b"00" + b"0" + b"1" + b"00B" + host.tokens["dek"] + b"%04X" % len(message) + message
    before = _rss_kib(pid)
    c = host.host()
    c.sock.settimeout(0.5)
    sent = 0
    try:
        for _ in range(3000):
            c.send(c.frame(body))
            sent += 1
    except (TimeoutError, socket.timeout):
        pass  # the server stopped reading: its buffers and ours are full
    grown = _rss_kib(pid) - before
    c.sock.settimeout(30)
    c._buf = b""
    with host.host() as other:
        assert other.call(b"NO00").error == b"00", "another connection is served meanwhile"
    # What was sent before the stall is answered, in order, and the connection works on.
    replies = [c.read() for _ in range(sent)]
    assert {(r.code, r.error) for r in replies} == {(b"M1", b"00")}
    assert c.call(b"NO00").error == b"00"
    c.close()
    assert sent < 3000 and grown < 40_000, (sent, grown)


def test_a_reply_too_long_for_its_length_is_a_data_length_error(host: HostEnv) -> None:
    n = 32760  # binary in, hex out: a 65,550-byte reply
    body = b"M0" + b"01" + b"0" + b"1" + b"00B" + host.tokens["dek"] + b"00" * 8 + b"%04X" % n + b"\x00" * n
    with host.host() as c:
        r = c.call(body)
        assert (r.code, r.error, r.fields) == (b"M1", b"80", b"")
        assert c.call(b"NO00").error == b"00", "the connection survives"


def test_connections_that_never_start_tls_are_bounded_and_dropped(host: HostEnv) -> None:
    """Issue 36's second review held 2,000 sockets (305 KB each) by never starting TLS; the fourth
    and fifth filled every slot from a few networks. A connection without a principal counts against
    a pending budget of its own (half of max_connections), a network (/24) against an eighth of it,
    and has 5 s for its handshake; clients of other networks, and connected ones, are served."""
    pid = int(json.loads((host.log.parent / "ready.json").read_text())["pid"])
    before = _rss_kib(pid)
    with host.host() as connected:
        silent = []
        for _ in range(100):
            s = socket.socket()
            s.bind(("127.0.1.3", 0))  # another /24 than the test's own clients
            s.connect(("127.0.0.1", host.host_port))
            silent.append(s)
        try:
            time.sleep(0.5)
            closed_at_once = 0
            for s in silent[64:]:  # past the network's share (512 // 8): closed as they come
                s.settimeout(2)
                try:
                    closed_at_once += s.recv(1) == b""
                except OSError:
                    closed_at_once += 1
            assert closed_at_once == len(silent) - 64
            assert connected.call(b"NO00").error == b"00", "a connected client is served meanwhile"
            with host.host() as c:  # and a new one from another network
                assert c.call(b"NO00").error == b"00"
            assert _rss_kib(pid) - before < 60_000
            time.sleep(5.5)
            for s in silent[:64]:  # the handshake's 5 s are over
                s.settimeout(2)
                try:
                    assert s.recv(1) == b""
                except ConnectionResetError:
                    pass
        finally:
            for s in silent:
                s.close()


def test_one_principal_holds_at_most_its_share_of_connections(tmp_path: Path) -> None:
    """Issue 36's fifth review: one certificate could hold every connection with a principal."""
    proc, info = _dev_server(tmp_path, """
[hostcommands]
listen = "127.0.0.1:0"
max_connections = 40
max_connections_per_principal = 8
""")
    try:
        held = [HostClient(info["host_port"]) for _ in range(8)]
        assert all(c.call(b"NO00").error == b"00" for c in held)
        extra = HostClient(info["host_port"])
        extra.sock.settimeout(5)
        assert extra.sock.recv(1) == b"", "the ninth connection of one principal is closed"
        extra.close()
        held.pop().close()
        time.sleep(0.3)
        with HostClient(info["host_port"]) as again:
            assert again.call(b"NO00").error == b"00", "a slot given back is taken again"
        for c in held:
            c.close()
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
