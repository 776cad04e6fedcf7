"""Forming keys from custodians' components over the API, under dual control (issue 6).

The ceremony client (:mod:`hsmsvc.ceremony.forming`) runs against the real
server over mTLS, with its console fed by a pipe; every request it sends is
recorded and searched for the components. KCVs are recomputed with pyca.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text

from hsmsvc.ceremony import forming
from hsmsvc.crypto import kcv, tr31
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm, Exportability, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import ceremony_service_pb2 as cm
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import ClientTls
from hsmsvc.crypto import keytransport
from tests import reference as ind
from tests.api.conftest import Env, code_of, template
from tests.ceremony import Recorder, scripted, typed_components

StatusCode = grpc.StatusCode
AES128 = Algorithm.AES_128


def _tls(server: Env, name: str) -> ClientTls:
    ident = server.ids[name]
    return ClientTls(server.ca.ca_file, ident.cert, ident.key, "localhost")


@pytest.fixture(scope="module")
def ctk(server: Env) -> key_pb.GetPublicKeyResponse:
    km = server.client("key-manager")
    km.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "ctk-ceremony", pb.KEY_TYPE_CTK, pb.ALGORITHM_RSA_3072, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
        pb.MODE_OF_USE_DECRYPT_ONLY)), timeout=30)
    return km.keys.GetPublicKey(key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id="ctk-ceremony")))


def _zmk_template(key_id: str, zone: str = "core") -> key_pb.KeyTemplate:
    return template(key_id, pb.KEY_TYPE_ZMK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_KBPK,
                    pb.MODE_OF_USE_ENCRYPT_DECRYPT, zone=zone)


def _audit(server: Env, ceremony_or_key: str) -> list[tuple[str, str]]:
    engine = create_engine(server.store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT actor, action FROM audit "
                                     "WHERE key_id = :k OR detail LIKE :p ORDER BY seq"),
                                {"k": ceremony_or_key, "p": f"%{ceremony_or_key}%"}).all()
            return [(r.actor, r.action) for r in rows]
    finally:
        engine.dispose()


def _wrapped_rows(server: Env) -> int:
    engine = create_engine(server.store_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM ceremony_components "
                                         "WHERE length(wrapped) > 0")).scalar() or 0)
    finally:
        engine.dispose()


def test_two_officers_and_two_custodians_form_a_zmk(server: Env, ctk: Any) -> None:
    parts = [secrets.token_bytes(16), secrets.token_bytes(16)]
    console = scripted(["y", *typed_components(AES128, parts)])
    recorder = Recorder()
    t0 = time.perf_counter()
    key = forming.form(console, address=f"127.0.0.1:{server.port}",
                       officers=(_tls(server, "key-manager"), _tls(server, "key-manager-2")),
                       custodians=[_tls(server, "custodian-1"), _tls(server, "custodian-2")],
                       template=_zmk_template("zmk-ceremony-1"), ctk="ctk-ceremony", interceptors=[recorder])
    print(f"ceremony: ZMK formed by 2 officers and 2 custodians (RSA-3072 CTK) in "
          f"{(time.perf_counter() - t0) * 1000:.0f} ms over mTLS")
    clear = bytes(a ^ b for a, b in zip(*parts))
    assert key.kcv == kcv.kcv(AES128, clear) and key.key_id == "zmk-ceremony-1"
    screen = console.out.getvalue()  # type: ignore[attr-defined]
    assert key.kcv.hex().upper() in screen

    # No component (or the key) in any request, on the console, in the server log, or left in the store.
    secrets_ = [*parts, clear]
    assert recorder.sent and all(s not in sent for s in secrets_ for sent in recorder.sent)
    log = server.log.read_text()
    for s in secrets_:
        for form in (s.hex(), s.hex().upper()):
            assert form not in screen and form not in log and all(form.encode() not in r for r in recorder.sent)
    assert _wrapped_rows(server) == 0

    # Every step audited with who did it.
    steps = _audit(server, "zmk-ceremony-1")
    assert [a for a in steps if a[1].startswith(("ceremony.", "key.form"))] == [
        ("key-manager", "ceremony.start"), ("key-manager-2", "ceremony.approve"),
        ("custodian-1", "ceremony.component"), ("custodian-2", "ceremony.component"), ("custodian-2", "key.form")]

    # The formed ZMK works: a ZPK sent under it (TR-31, as the peer site would) imports with its KCV.
    zpk = secrets.token_bytes(16)
    header = tr31.Header(tr31.KeyBlockVersion.D, KeyUsage.PIN_ENCRYPTION, tr31.KeyBlockAlgorithm.AES,
                         ModeOfUse.ENCRYPT_DECRYPT, "00", Exportability.NON_EXPORTABLE)
    got = server.client("key-manager").keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-ceremony-1"), wrapped_key=tr31.wrap(clear, header, zpk).encode(),
        kcv=kcv.kcv(AES128, zpk), template=template("zpk-under-ceremony-zmk", pb.KEY_TYPE_ZPK, pb.ALGORITHM_AES_128,
                                                     pb.KEY_USAGE_PIN_ENCRYPTION, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
    assert got.key.kcv == kcv.kcv(AES128, zpk)


def _start(server: Env, key_id: str, n: int = 2, who: str = "key-manager", **kw: Any) -> str:
    r = server.client(who).ceremony.StartKeyFormation(cm.StartKeyFormationRequest(
        template=_zmk_template(key_id, **kw), transport_key=pb.KeyRef(key_id="ctk-ceremony"), component_count=n))
    return str(r.formation.ceremony_id)


def _add(server: Env, who: str, cid: str, ctk: Any, part: bytes, check: bytes | None = None) -> Any:
    wrapped = keytransport.encrypt(Algorithm.RSA_3072, ctk.public_key, part)
    return server.client(who).ceremony.AddKeyComponent(cm.AddKeyComponentRequest(
        ceremony_id=cid, wrapped_component=wrapped, kcv=check or kcv.kcv(AES128, part)))


def test_no_single_officer_or_custodian_completes_a_ceremony(server: Env, ctk: Any) -> None:
    cid = _start(server, "zmk-ceremony-2")
    km, km2 = server.client("key-manager").ceremony, server.client("key-manager-2").ceremony
    approve = cm.ApproveKeyFormationRequest(ceremony_id=cid)
    code, msg = code_of(km.ApproveKeyFormation, approve)
    assert code is StatusCode.PERMISSION_DENIED and "dual control" in msg
    code, _ = code_of(server.client("custodian-1").ceremony.ApproveKeyFormation, approve)
    assert code is StatusCode.PERMISSION_DENIED  # a custodian's role does not approve
    p1, p2 = secrets.token_bytes(16), secrets.token_bytes(16)
    code, _ = code_of(_add, server, "key-manager", cid, ctk, p1)
    assert code is StatusCode.PERMISSION_DENIED  # a manager's role does not give components
    _add(server, "custodian-1", cid, ctk, p1)
    code, msg = code_of(_add, server, "custodian-1", cid, ctk, p2)
    assert code is StatusCode.PERMISSION_DENIED and "one component per custodian" in msg
    r = _add(server, "custodian-2", cid, ctk, p2)
    assert r.formation.state == cm.KEY_FORMATION_STATE_OPEN and not r.HasField("key")  # not approved yet
    code, _ = code_of(server.client("core-banking").keys.GetKey, key_pb.GetKeyRequest(
        key=pb.KeyRef(key_id="zmk-ceremony-2")))
    assert code is not StatusCode.OK
    done = km2.ApproveKeyFormation(approve)
    assert done.formation.state == cm.KEY_FORMATION_STATE_FORMED
    assert done.key.kcv == kcv.kcv(AES128, bytes(a ^ b for a, b in zip(p1, p2)))
    code, msg = code_of(km2.ApproveKeyFormation, approve)
    assert code is StatusCode.FAILED_PRECONDITION and "FORMED" in msg
    # A custodian outside the key's zone does not even see the ceremony.
    code, _ = code_of(server.client("custodian-3").ceremony.GetKeyFormation,
                      cm.GetKeyFormationRequest(ceremony_id=cid))
    assert code is StatusCode.NOT_FOUND


def test_a_manager_custodian_is_never_two_controls_of_one_ceremony(server: Env, ctk: Any) -> None:
    """Issue 27: a principal holding both roles gave a component to a ceremony it started."""
    p1, p2 = secrets.token_bytes(16), secrets.token_bytes(16)
    cid = _start(server, "zmk-ceremony-sep-1", who="officer-custodian-1")
    code, msg = code_of(_add, server, "officer-custodian-1", cid, ctk, p1)
    assert code is StatusCode.PERMISSION_DENIED and "started or approved" in msg
    server.client("officer-custodian-2").ceremony.ApproveKeyFormation(cm.ApproveKeyFormationRequest(ceremony_id=cid))
    code, msg = code_of(_add, server, "officer-custodian-2", cid, ctk, p1)
    assert code is StatusCode.PERMISSION_DENIED and "started or approved" in msg
    _add(server, "custodian-1", cid, ctk, p1)
    done = _add(server, "custodian-2", cid, ctk, p2)
    assert done.formation.state == cm.KEY_FORMATION_STATE_FORMED
    assert done.key.kcv == kcv.kcv(AES128, bytes(a ^ b for a, b in zip(p1, p2)))
    assert {who for who, action in _audit(server, cid) if action == "ceremony.component"} == {
        "custodian-1", "custodian-2"}
    # The other order: a component first, then the same principal's approval.
    cid = _start(server, "zmk-ceremony-sep-2")
    _add(server, "officer-custodian-1", cid, ctk, p1)
    approve = cm.ApproveKeyFormationRequest(ceremony_id=cid)
    code, msg = code_of(server.client("officer-custodian-1").ceremony.ApproveKeyFormation, approve)
    assert code is StatusCode.PERMISSION_DENIED and "started or approved" in msg
    _add(server, "custodian-1", cid, ctk, p2)
    done = server.client("officer-custodian-2").ceremony.ApproveKeyFormation(approve)
    assert done.formation.state == cm.KEY_FORMATION_STATE_FORMED


def test_a_wrong_component_is_refused_by_its_kcv_and_audited(server: Env, ctk: Any) -> None:
    cid = _start(server, "zmk-ceremony-3")
    part = secrets.token_bytes(16)
    code, msg = code_of(_add, server, "custodian-1", cid, ctk, part, kcv.kcv(AES128, secrets.token_bytes(16)))
    assert code is StatusCode.INVALID_ARGUMENT and "KCV" in msg and part.hex() not in msg.lower()
    f = server.client("key-manager").ceremony.GetKeyFormation(cm.GetKeyFormationRequest(ceremony_id=cid)).formation
    assert len(f.components) == 0
    assert ("custodian-1", "ceremony.component_refused") in _audit(server, cid)
    cancelled = server.client("key-manager").ceremony.CancelKeyFormation(
        cm.CancelKeyFormationRequest(ceremony_id=cid, reason="test"))
    assert cancelled.formation.state == cm.KEY_FORMATION_STATE_CANCELLED


def test_the_console_refuses_a_component_that_does_not_match_its_mailer(server: Env, ctk: Any) -> None:
    parts = [secrets.token_bytes(16), secrets.token_bytes(16)]
    typed = typed_components(AES128, parts)
    # Custodian 2 reads custodian 1's KCV, three times: asked again twice, then the ceremony stops.
    typed[2:] = [parts[1].hex(), kcv.kcv(AES128, parts[0]).hex()] * 3
    console = scripted(["y", *typed])
    with pytest.raises(InvalidInput, match="3 tries"):
        forming.form(console, address=f"127.0.0.1:{server.port}",
                     officers=(_tls(server, "key-manager"), _tls(server, "key-manager-2")),
                     custodians=[_tls(server, "custodian-1"), _tls(server, "custodian-2")],
                     template=_zmk_template("zmk-ceremony-4"), ctk="ctk-ceremony")
    assert "cancelled" in console.out.getvalue()  # type: ignore[attr-defined]
    assert console.out.getvalue().count("KCV mismatch") == 3  # type: ignore[attr-defined]
    assert _wrapped_rows(server) == 0
    code, _ = code_of(server.client("key-manager").keys.GetKey, key_pb.GetKeyRequest(
        key=pb.KeyRef(key_id="zmk-ceremony-4")))
    assert code is StatusCode.NOT_FOUND


def test_transport_key_must_be_a_ctk_strong_enough(server: Env, ctk: Any) -> None:
    km = server.client("key-manager")
    km.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "ktk-not-for-ceremonies", pb.KEY_TYPE_KTK, pb.ALGORITHM_SM2, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
        pb.MODE_OF_USE_DECRYPT_ONLY)))
    for transport, t, why in (
        ("ktk-not-for-ceremonies", _zmk_template("zmk-ceremony-5"), "COMPONENT_DECRYPT"),
        ("ctk-ceremony", template("zmk-ceremony-6", pb.KEY_TYPE_ZMK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_KBPK,
                                  pb.MODE_OF_USE_ENCRYPT_DECRYPT), "X9.24-1"),
    ):
        code, msg = code_of(km.ceremony.StartKeyFormation, cm.StartKeyFormationRequest(
            template=t, transport_key=pb.KeyRef(key_id=transport), component_count=2))
        assert code is StatusCode.FAILED_PRECONDITION and why in msg
    for n in (0, 1, 10):
        code, msg = code_of(km.ceremony.StartKeyFormation, cm.StartKeyFormationRequest(
            template=_zmk_template("zmk-ceremony-7"), transport_key=pb.KeyRef(key_id="ctk-ceremony"),
            component_count=n))
        assert code is StatusCode.INVALID_ARGUMENT and "component_count" in msg
    code, _ = code_of(km.ceremony.GetKeyFormation, cm.GetKeyFormationRequest(ceremony_id="c-" + "0" * 16))
    assert code is StatusCode.NOT_FOUND
    code, _ = code_of(km.ceremony.GetKeyFormation, cm.GetKeyFormationRequest(ceremony_id="c-\x00"))
    assert code is StatusCode.INVALID_ARGUMENT


def test_zmk_form_command_end_to_end(server: Env, ctk: Any) -> None:
    """`hsmsvc ceremony zmk form` as a key officer runs it (answers on standard input)."""
    parts = [secrets.token_bytes(16), secrets.token_bytes(16)]
    ids = server.ids
    cmd = [sys.executable, "-m", "hsmsvc", "ceremony", "zmk", "form", "--server", f"127.0.0.1:{server.port}",
           "--ca", str(server.ca.ca_file), "--server-name", "localhost",
           "--officer", f"{ids['key-manager'].cert},{ids['key-manager'].key}",
           "--officer", f"{ids['key-manager-2'].cert},{ids['key-manager-2'].key}",
           "--custodian", f"{ids['custodian-1'].cert},{ids['custodian-1'].key}",
           "--custodian", f"{ids['custodian-2'].cert},{ids['custodian-2'].key}",
           "--transport-key", "ctk-ceremony", "--ctk-fingerprint", ctk.fingerprint.hex(),
           "--key-id", "zmk-ceremony-cli", "--algorithm", "AES_128", "--zone", "core"]
    answers = "\n".join(typed_components(AES128, parts)) + "\n"
    r = subprocess.run(cmd, input=answers.encode(), capture_output=True, timeout=60, env=os.environ.copy())
    assert r.returncode == 0, r.stderr.decode()
    expect = kcv.kcv(AES128, bytes(a ^ b for a, b in zip(*parts))).hex().upper()
    assert f"KCV {expect}" in r.stdout.decode()
    assert all(p.hex().upper() not in r.stdout.decode() + r.stderr.decode() for p in parts)
    wrong = cmd[:-2] + ["--ctk-fingerprint", "00" * 8]
    r = subprocess.run(wrong, input=answers.encode(), capture_output=True, timeout=60)
    assert r.returncode == 2 and b"fingerprint" in r.stderr


def test_each_person_runs_their_own_step_with_only_their_own_credential(server: Env, ctk: Any) -> None:
    """Issue 29 item 6: `zmk form` loaded both officers' and every custodian's private keys into one
    process. `zmk start|approve|component` are separate processes, each given one certificate."""
    parts = [secrets.token_bytes(16), secrets.token_bytes(16)]
    ids = server.ids
    base = [sys.executable, "-m", "hsmsvc", "ceremony", "zmk"]
    where = ["--server", f"127.0.0.1:{server.port}", "--ca", str(server.ca.ca_file), "--server-name", "localhost"]

    def step(name: str, who: str, *args: str, answers: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, name, *where, "--cert", str(ids[who].cert), "--key", str(ids[who].key), *args],
                              input="\n".join(answers) + "\n", text=True, capture_output=True, timeout=60)

    r = step("start", "key-manager", "--transport-key", "ctk-ceremony", "--ctk-fingerprint", ctk.fingerprint.hex(),
             "--key-id", "zmk-ceremony-steps", "--algorithm", "AES_128", "--zone", "core", "--components", "2")
    assert r.returncode == 0, r.stderr
    ceremony = r.stdout.split("ceremony ", 1)[1].split(":", 1)[0]
    # A custodian may not approve, and the officer who started may not approve their own.
    for who in ("custodian-1", "key-manager"):
        denied = step("approve", who, "--ceremony-id", ceremony, "--yes")
        assert denied.returncode == 2 and "PERMISSION_DENIED" in denied.stderr and "Traceback" not in denied.stderr
    r = step("approve", "key-manager-2", "--ceremony-id", ceremony, answers=["y"])
    assert r.returncode == 0 and "zmk-ceremony-steps" in r.stdout and "Approved by key-manager-2" in r.stdout
    for i, part in enumerate(parts):
        mine = _cmac_kcv(part)
        # The first custodian mistypes their component once and is asked again.
        typed = ([part.hex()[:-2]] if i == 0 else []) + [part.hex(), mine]
        r = step("component", f"custodian-{i + 1}", "--ceremony-id", ceremony, "--ctk-fingerprint",
                 ctk.fingerprint.hex(), answers=typed)
        assert r.returncode == 0, r.stdout + r.stderr
        assert part.hex() not in (r.stdout + r.stderr).lower()
        assert ("try again" in r.stdout) == (i == 0)
    want = _cmac_kcv(bytes(a ^ b for a, b in zip(*parts)))
    assert f"formed and stored under the LMK; KCV {want}" in r.stdout
    status = step("status", "key-manager", "--ceremony-id", ceremony)
    assert "KEY_FORMATION_STATE_FORMED" in status.stdout and "2 of 2" in status.stdout


def _cmac_kcv(key: bytes) -> str:
    """AES KCV: leftmost 3 bytes of CMAC over a zero block (ANSI X9.24-1:2017), with pyca."""
    from cryptography.hazmat.primitives.ciphers import algorithms
    from cryptography.hazmat.primitives.cmac import CMAC

    c = CMAC(algorithms.AES(key))
    c.update(bytes(16))
    return c.finalize()[:3].hex().upper()


# -- a P-521 CTK: components of 256-bit strength (ECIES, crypto/ecies.py) -----------------------

AES256 = Algorithm.AES_256


@pytest.fixture(scope="module")
def ctk_p521(server: Env) -> key_pb.GetPublicKeyResponse:
    km = server.client("key-manager")
    km.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "ctk-p521", pb.KEY_TYPE_CTK, pb.ALGORITHM_ECC_P521, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
        pb.MODE_OF_USE_DECRYPT_ONLY)), timeout=30)
    pub = km.keys.GetPublicKey(key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id="ctk-p521")))
    assert pub.algorithm == pb.ALGORITHM_ECC_P521 and pub.fingerprint == ind.sha256(pub.public_key)[:8]
    return pub


def _zmk256_template(key_id: str) -> key_pb.KeyTemplate:
    return template(key_id, pb.KEY_TYPE_ZMK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_KBPK, pb.MODE_OF_USE_ENCRYPT_DECRYPT)


def test_an_aes256_zmk_is_formed_under_a_p521_ctk(server: Env, ctk_p521: Any) -> None:
    parts = [secrets.token_bytes(32), secrets.token_bytes(32)]
    console = scripted(["y", *typed_components(AES256, parts)])
    key = forming.form(console, address=f"127.0.0.1:{server.port}",
                       officers=(_tls(server, "key-manager"), _tls(server, "key-manager-2")),
                       custodians=[_tls(server, "custodian-1"), _tls(server, "custodian-2")],
                       template=_zmk256_template("zmk256-p521"), ctk="ctk-p521")
    # The AES KCV: CMAC over a zero block (X9.24-1), by pyca, of the XOR of the components.
    assert key.kcv == ind.aes_cmac(ind.xor(*parts), bytes(16))[:3]
    assert key.algorithm == pb.ALGORITHM_AES_256
    assert ("custodian-2", "key.form") in _audit(server, "zmk256-p521")


def test_a_tampered_component_under_a_p521_ctk_is_refused(server: Env, ctk_p521: Any) -> None:
    km = server.client("key-manager")
    cid = km.ceremony.StartKeyFormation(cm.StartKeyFormationRequest(
        template=_zmk256_template("zmk256-tampered"), transport_key=pb.KeyRef(key_id="ctk-p521"),
        component_count=2)).formation.ceremony_id
    server.client("key-manager-2").ceremony.ApproveKeyFormation(cm.ApproveKeyFormationRequest(ceremony_id=cid))
    part = secrets.token_bytes(32)
    wrapped = keytransport.encrypt(Algorithm.ECC_P521, ctk_p521.public_key, part)
    for i in (5, 140, len(wrapped) - 1):  # the ephemeral point, the wrapped component
        bad = bytearray(wrapped)
        bad[i] ^= 0x01
        code, msg = code_of(server.client("custodian-1").ceremony.AddKeyComponent, cm.AddKeyComponentRequest(
            ceremony_id=cid, wrapped_component=bytes(bad), kcv=kcv.kcv(AES256, part)))
        assert code is StatusCode.INVALID_ARGUMENT and "KCV" in msg and part.hex() not in msg.lower()
    ok = server.client("custodian-1").ceremony.AddKeyComponent(cm.AddKeyComponentRequest(
        ceremony_id=cid, wrapped_component=wrapped, kcv=kcv.kcv(AES256, part)))
    assert len(ok.formation.components) == 1
    km.ceremony.CancelKeyFormation(cm.CancelKeyFormationRequest(ceremony_id=cid, reason="test"))
