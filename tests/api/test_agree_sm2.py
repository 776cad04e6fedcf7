"""SM2 key exchange over the API: KeyService.StartKeyAgreement, then AgreeKey (issue 30).

GB/T 32918.3-2016 clause 6.1 between two real ``hsmsvc serve`` sites
(key_sync_sites.open_sites: each its own LMK and PostgreSQL store, mTLS on
loopback), and between a site and a partner the test plays with its own
arithmetic (tests/reference.py ``sm2_key_exchange``, pinned to the standard's
annex A example by tests/test_reference.py; it imports nothing from hsmsvc). The
partner knows its own scalars, so it computes K, S_B and S_A itself: the site's
KCV and confirmation must equal them, and a key block the partner makes under K
must import at the site.

The curve is sm2p256v1 (GB/T 32918.5-2017); the public keys travel as the
SubjectPublicKeyInfo of GM/T 0006-2012's OID 1.2.156.10197.1.301.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from hsmsvc_client import Client, ClientError, ClientTls
from sqlalchemy import create_engine, select

from hsmsvc.keys.schema import audit
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ind
from tests.sm2tools import CURVE, SPKI_PREFIX, spki
from tests.api.conftest import code_of, template
from tests.api.key_sync_sites import ZONE, Site, Sites, open_sites

ID_CORE, ID_PARTNER = b"core@bank.example", b"partner@switch.example"
INITIATOR, RESPONDER = key_pb.SM2_KEY_EXCHANGE_ROLE_INITIATOR, key_pb.SM2_KEY_EXCHANGE_ROLE_RESPONDER
StatusCode = grpc.StatusCode


_spki = spki


def _point(spki: bytes) -> tuple[int, int]:
    assert spki.startswith(SPKI_PREFIX) and len(spki) == len(SPKI_PREFIX) + 65 and spki[len(SPKI_PREFIX)] == 4
    raw = spki[len(SPKI_PREFIX) + 1:]
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")


def _fingerprint(spki: bytes) -> bytes:
    return ind.sm3(spki)[:8]


def _scalar() -> int:
    return 1 + secrets.randbelow(CURVE[5] - 2)


def _public(d: int) -> tuple[int, int]:
    p = ind.ec_mul(CURVE, d, (CURVE[3], CURVE[4]))
    assert p is not None
    return p


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    with open_sites(tmp_path_factory.mktemp("agree-sm2")) as s:
        yield s


def _keys(site: Site) -> Any:
    return site.clients[f"{site.name}-officer"].keys


def _kak(site: Site, key_id: str) -> bytes:
    _keys(site).GenerateKey(key_pb.GenerateKeyRequest(template=template(
        key_id, pb.KEY_TYPE_KAK, pb.ALGORITHM_SM2, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING, pb.MODE_OF_USE_DERIVE,
        zone=ZONE)))
    r = _keys(site).GetPublicKey(key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id=key_id)))
    assert r.algorithm == pb.ALGORITHM_SM2 and bytes(r.fingerprint) == _fingerprint(r.public_key)
    return bytes(r.public_key)


@pytest.fixture(scope="module")
def kaks(sites: Sites) -> dict[str, bytes]:
    return {"core": _kak(sites.core, "kak-core-sm2"), "branch": _kak(sites.branch, "kak-branch-sm2")}


def _start(site: Site, kak: str) -> key_pb.StartKeyAgreementResponse:
    return _keys(site).StartKeyAgreement(key_pb.StartKeyAgreementRequest(kak=pb.KeyRef(key_id=kak)))


def _request(kak: str, key_id: str, *, peer_static: bytes, peer_ephemeral: bytes, agreement: str, role: int,
             own_id: bytes = ID_CORE, peer_id: bytes = ID_PARTNER, confirmation: bytes = b"",
             alg: int = pb.ALGORITHM_AES_128, usage: int = pb.KEY_USAGE_KBPK,
             key_type: int = pb.KEY_TYPE_ZMK) -> key_pb.AgreeKeyRequest:
    mode = pb.MODE_OF_USE_ENCRYPT_DECRYPT
    return key_pb.AgreeKeyRequest(
        kak=pb.KeyRef(key_id=kak), peer_public_key=peer_static, peer_fingerprint=_fingerprint(peer_static),
        template=template(key_id, key_type, alg, usage, mode, zone=ZONE),
        sm2=key_pb.Sm2KeyExchange(agreement_id=agreement, peer_ephemeral_public_key=peer_ephemeral, role=role,
                                  own_id=own_id, peer_id=peer_id, peer_confirmation=confirmation))


class Partner:
    """The other side, written out from the standard: its static and ephemeral scalars are its own."""

    def __init__(self) -> None:
        self.d, self.r = _scalar(), _scalar()
        self.static, self.ephemeral = _spki(_public(self.d)), _spki(_public(self.r))

    def agree(self, site_static: bytes, site_ephemeral: bytes, *, initiator: bool,
              length: int = 16) -> tuple[bytes, bytes, bytes]:
        """K, S_B, S_A, with the site as the other role (ids as the site states them)."""
        id_a, id_b = (ID_PARTNER, ID_CORE) if initiator else (ID_CORE, ID_PARTNER)
        return ind.sm2_key_exchange(CURVE, self.d, self.r, _point(site_static), _point(site_ephemeral),
                                    id_a, id_b, initiator, length)


def test_a_site_agrees_an_aes_kbpk_with_an_independent_partner(sites: Sites, kaks: dict[str, bytes]) -> None:
    """The site is the initiator (A); the partner answers with R_B and S_B, and checks S_A."""
    started = _start(sites.core, "kak-core-sm2")
    assert len(started.agreement_id) == 32 and started.expires_at.seconds > 0
    partner = Partner()
    k, s_b, s_a = partner.agree(kaks["core"], bytes(started.ephemeral_public_key), initiator=False)
    r = _keys(sites.core).AgreeKey(_request("kak-core-sm2", "zmk-sm2-partner", peer_static=partner.static,
                                            peer_ephemeral=partner.ephemeral, agreement=started.agreement_id,
                                            role=INITIATOR, confirmation=s_b))
    assert bytes(r.key.kcv) == ind.kcv("AES_128", k)
    assert bytes(r.confirmation) == s_a  # what the partner checks in step B10
    # The agreed key protects what the partner sends next: a ZPK in a TR-31 version D block.
    zpk = secrets.token_bytes(16)
    block = ind.tr31_wrap(k, "D0000P0TB00N0000", ind.odd_parity(zpk), secrets.token_bytes(14))
    t = template("zpk-from-sm2-partner", pb.KEY_TYPE_ZPK, pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_PIN_ENCRYPTION,
                 pb.MODE_OF_USE_ENCRYPT_DECRYPT, zone=ZONE)
    took = _keys(sites.core).ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-sm2-partner"), wrapped_key=block.encode("ascii"),
        kcv=ind.kcv("TDES_2KEY", ind.odd_parity(zpk)), template=t)).key
    assert bytes(took.kcv) == ind.kcv("TDES_2KEY", ind.odd_parity(zpk))


def test_a_site_as_responder_agrees_an_sm4_zmk(sites: Sites, kaks: dict[str, bytes]) -> None:
    """The partner initiates; the site answers (B) without a confirmation to check, and gives S_B."""
    started = _start(sites.core, "kak-core-sm2")
    partner = Partner()
    k, s_b, _ = partner.agree(kaks["core"], bytes(started.ephemeral_public_key), initiator=True)
    r = _keys(sites.core).AgreeKey(_request(
        "kak-core-sm2", "zmk-sm4-partner", peer_static=partner.static, peer_ephemeral=partner.ephemeral,
        agreement=started.agreement_id, role=RESPONDER, alg=pb.ALGORITHM_SM4, usage=pb.KEY_USAGE_KEK))
    assert bytes(r.key.kcv) == ind.kcv("SM4", k) and r.key.algorithm == pb.ALGORITHM_SM4
    assert bytes(r.confirmation) == s_b


def test_a_terminal_agrees_an_sm4_session_key(sites: Sites, kaks: dict[str, bytes]) -> None:
    """Seed 000 annex B.2 f: a terminal with its own SM2 pair (the test's arithmetic) initiates; the
    site answers and stores the SM4 session key as a DEK, which then enciphers data the terminal
    deciphers with the K it computed itself."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from hsmsvc_client.v1 import data_service_pb2 as data_pb

    started = _start(sites.core, "kak-core-sm2")
    terminal = Partner()
    k, s_b, s_a = terminal.agree(kaks["core"], bytes(started.ephemeral_public_key), initiator=True)
    r = _keys(sites.core).AgreeKey(_request(
        "kak-core-sm2", "term-0042.dek", peer_static=terminal.static, peer_ephemeral=terminal.ephemeral,
        agreement=started.agreement_id, role=RESPONDER, alg=pb.ALGORITHM_SM4, usage=pb.KEY_USAGE_DATA,
        key_type=pb.KEY_TYPE_DEK, confirmation=s_a))
    assert bytes(r.key.kcv) == ind.kcv("SM4", k) and r.key.key_type == pb.KEY_TYPE_DEK
    assert bytes(r.confirmation) == s_b
    iv = secrets.token_bytes(16)
    out = sites.core.clients["core-app"].data.Encrypt(data_pb.EncryptRequest(
        key=pb.KeyRef(key_id="term-0042.dek"), plaintext=b"account 6222020200112233 balance",
        cipher=data_pb.FieldCipher(mode=pb.CIPHER_MODE_CBC, iv=iv, padding=pb.DATA_PADDING_NONE)))
    dec = Cipher(algorithms.SM4(k), modes.CBC(iv)).decryptor()
    assert dec.update(bytes(out.ciphertext)) + dec.finalize() == b"account 6222020200112233 balance"
    # A P-521-only kind of key stays refused: an SM2 KAK derives no PVK.
    started = _start(sites.core, "kak-core-sm2")
    code, _ = code_of(_keys(sites.core).AgreeKey, _request(
        "kak-core-sm2", "term-0042.pvk", peer_static=terminal.static, peer_ephemeral=terminal.ephemeral,
        agreement=started.agreement_id, role=RESPONDER, alg=pb.ALGORITHM_SM4,
        usage=pb.KEY_USAGE_PIN_VERIFICATION_IBM3624, key_type=pb.KEY_TYPE_PVK))
    assert code is StatusCode.INVALID_ARGUMENT


def test_two_sites_agree_with_confirmation(sites: Sites, kaks: dict[str, bytes]) -> None:
    """Core A and branch B: both start, swap R; B agrees first and sends S_B, which A checks."""
    at_core, at_branch = _start(sites.core, "kak-core-sm2"), _start(sites.branch, "kak-branch-sm2")
    b = _keys(sites.branch).AgreeKey(_request(
        "kak-branch-sm2", "zmk-sm2-sites", peer_static=kaks["core"],
        peer_ephemeral=bytes(at_core.ephemeral_public_key), agreement=at_branch.agreement_id, role=RESPONDER,
        own_id=ID_PARTNER, peer_id=ID_CORE))
    a = _keys(sites.core).AgreeKey(_request(
        "kak-core-sm2", "zmk-sm2-sites", peer_static=kaks["branch"],
        peer_ephemeral=bytes(at_branch.ephemeral_public_key), agreement=at_core.agreement_id, role=INITIATOR,
        confirmation=bytes(b.confirmation)))
    assert bytes(a.key.kcv) == bytes(b.key.kcv) and len(a.key.kcv) == 3
    assert len(a.confirmation) == 32 and a.confirmation != b.confirmation


def test_an_agreement_is_used_once(sites: Sites, kaks: dict[str, bytes]) -> None:
    started, partner = _start(sites.core, "kak-core-sm2"), Partner()
    req = _request("kak-core-sm2", "zmk-once", peer_static=partner.static, peer_ephemeral=partner.ephemeral,
                   agreement=started.agreement_id, role=INITIATOR)

    def once(_: int) -> StatusCode:
        try:
            _keys(sites.core).AgreeKey(req)
        except ClientError as e:
            return e.code
        return StatusCode.OK

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(once, range(4)))
    assert outcomes.count(StatusCode.OK) == 1, outcomes
    assert set(outcomes) - {StatusCode.OK} <= {StatusCode.NOT_FOUND, StatusCode.ALREADY_EXISTS}


def test_a_wrong_confirmation_is_one_refusal_and_spends_the_agreement(sites: Sites,
                                                                       kaks: dict[str, bytes]) -> None:
    started, partner = _start(sites.core, "kak-core-sm2"), Partner()
    _, s_b, _ = partner.agree(kaks["core"], bytes(started.ephemeral_public_key), initiator=False)
    bad = bytes([s_b[0] ^ 1]) + s_b[1:]
    req = _request("kak-core-sm2", "zmk-bad-confirmation", peer_static=partner.static,
                   peer_ephemeral=partner.ephemeral, agreement=started.agreement_id, role=INITIATOR,
                   confirmation=bad)
    assert code_of(_keys(sites.core).AgreeKey, req) == (StatusCode.INVALID_ARGUMENT, "sm2: key agreement failed")
    req.sm2.peer_confirmation = s_b  # the right one now finds the ephemeral key gone
    assert code_of(_keys(sites.core).AgreeKey, req)[0] is StatusCode.NOT_FOUND
    got = code_of(_keys(sites.core).GetKey, key_pb.GetKeyRequest(key=pb.KeyRef(key_id="zmk-bad-confirmation")))
    assert got[0] is StatusCode.NOT_FOUND
    engine = create_engine(sites.core.store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit.c.detail).where(audit.c.action == "key.agree.failed")).all()
    finally:
        engine.dispose()
    failed = [str(r.detail) for r in rows if started.agreement_id in str(r.detail)]
    assert len(failed) == 1 and "sm2: key agreement failed" in failed[0]


@pytest.mark.parametrize(("change", "code", "text"), [
    ("no-sm2", StatusCode.INVALID_ARGUMENT, "sm2: required with an SM2 KAK"),
    ("p521-kak", StatusCode.INVALID_ARGUMENT, "sm2: only with an SM2 KAK"),
    ("own-key", StatusCode.INVALID_ARGUMENT, "peer_public_key: this KAK's own public key"),
    ("taken-id", StatusCode.ALREADY_EXISTS, "template.key_id"),
    ("shared-info", StatusCode.INVALID_ARGUMENT, "shared_info: not used by the SM2 key exchange"),
    ("aes256", StatusCode.INVALID_ARGUMENT, "template.algorithm: an SM2 KAK derives AES_128, SM4"),
    ("off-curve", StatusCode.INVALID_ARGUMENT, "sm2.peer_ephemeral_public_key"),
    ("fingerprint", StatusCode.INVALID_ARGUMENT, "peer_fingerprint"),
    ("no-role", StatusCode.INVALID_ARGUMENT, "sm2.role: required"),
    ("unknown-id", StatusCode.NOT_FOUND, "sm2.agreement_id"),
    ("other-kak", StatusCode.NOT_FOUND, "sm2.agreement_id"),
])
def test_bad_exchanges_get_a_precise_status(sites: Sites, kaks: dict[str, bytes], change: str,
                                            code: StatusCode, text: str) -> None:
    keys = _keys(sites.core)
    kak = "kak-core-sm2"
    if change == "other-kak":
        _kak(sites.core, "kak-core-sm2-b")
        kak = "kak-core-sm2-b"
    elif change == "p521-kak":
        _keys(sites.core).GenerateKey(key_pb.GenerateKeyRequest(template=template(
            "kak-core-p521-x", pb.KEY_TYPE_KAK, pb.ALGORITHM_ECC_P521, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
            pb.MODE_OF_USE_DERIVE, zone=ZONE)))
        kak = "kak-core-p521-x"
    started, partner = _start(sites.core, "kak-core-sm2"), Partner()
    req = _request(kak, f"zmk-bad-{change}", peer_static=partner.static, peer_ephemeral=partner.ephemeral,
                   agreement=started.agreement_id, role=INITIATOR)
    if change == "no-sm2":
        req.ClearField("sm2")
    elif change == "shared-info":
        req.shared_info = secrets.token_bytes(16)
    elif change == "aes256":
        req.template.algorithm = pb.ALGORITHM_AES_256
    elif change == "off-curve":
        req.sm2.peer_ephemeral_public_key = SPKI_PREFIX + b"\x04" + bytes(63) + b"\x01"
    elif change == "fingerprint":
        req.peer_fingerprint = _fingerprint(kaks["branch"])
    elif change == "no-role":
        req.sm2.role = key_pb.SM2_KEY_EXCHANGE_ROLE_UNSPECIFIED
    elif change == "unknown-id":
        req.sm2.agreement_id = secrets.token_hex(16)
    elif change == "own-key":
        req.peer_public_key, req.peer_fingerprint = kaks["core"], _fingerprint(kaks["core"])
    elif change == "taken-id":
        req.template.key_id = "kak-core-sm2"
    got, details = code_of(keys.AgreeKey, req)
    assert got is code and details.startswith(text), details
    assert code_of(keys.GetKey, key_pb.GetKeyRequest(key=pb.KeyRef(key_id=f"zmk-bad-{change}")))[0] \
        is StatusCode.NOT_FOUND
    if change != "unknown-id":
        # Nothing of the refusal depended on the secret, so the agreement was not spent: the
        # corrected request goes through.
        right = _request("kak-core-sm2", f"zmk-after-{change}", peer_static=partner.static,
                         peer_ephemeral=partner.ephemeral, agreement=started.agreement_id, role=INITIATOR)
        assert len(keys.AgreeKey(right).key.kcv) == 3


def test_an_agreement_belongs_to_the_officer_who_started_it(sites: Sites, kaks: dict[str, bytes]) -> None:
    started, partner = _start(sites.core, "kak-core-sm2"), Partner()
    ident = sites.ca.issue("core-officer-2")
    req = _request("kak-core-sm2", "zmk-second-officer", peer_static=partner.static,
                   peer_ephemeral=partner.ephemeral, agreement=started.agreement_id, role=INITIATOR)
    with Client(f"127.0.0.1:{sites.core.port}", ClientTls(sites.ca.ca_file, ident.cert, ident.key, "localhost"),
                retries=0) as other:
        got = code_of(other.keys.AgreeKey, req)
    assert got[0] is StatusCode.NOT_FOUND and got[1].startswith("sm2.agreement_id"), got
    assert len(_keys(sites.core).AgreeKey(req).key.kcv) == 3  # still there for its own officer


def test_pending_agreements_are_limited_per_kak_and_officer(sites: Sites, kaks: dict[str, bytes]) -> None:
    _kak(sites.core, "kak-core-sm2-limit")
    for _ in range(16):
        _start(sites.core, "kak-core-sm2-limit")
    req = key_pb.StartKeyAgreementRequest(kak=pb.KeyRef(key_id="kak-core-sm2-limit"))
    got = code_of(_keys(sites.core).StartKeyAgreement, req)
    assert got[0] is StatusCode.RESOURCE_EXHAUSTED and got[1].startswith("kak: 16 agreements"), got


def test_no_stored_key_may_take_an_ephemeral_keys_name(sites: Sites) -> None:
    t = template("agreement:" + secrets.token_hex(16), pb.KEY_TYPE_KAK, pb.ALGORITHM_SM2,
                 pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING, pb.MODE_OF_USE_DERIVE, zone=ZONE)
    got = code_of(_keys(sites.core).GenerateKey, key_pb.GenerateKeyRequest(template=t))
    assert got == (StatusCode.INVALID_ARGUMENT, "template.key_id: the prefix agreement: is reserved")


def test_start_needs_an_sm2_kak_and_a_manager(sites: Sites, kaks: dict[str, bytes]) -> None:
    keys = _keys(sites.core)
    keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "kak-core-p521", pb.KEY_TYPE_KAK, pb.ALGORITHM_ECC_P521, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
        pb.MODE_OF_USE_DERIVE, zone=ZONE)))
    req = key_pb.StartKeyAgreementRequest(kak=pb.KeyRef(key_id="kak-core-p521"))
    assert code_of(keys.StartKeyAgreement, req)[0] is StatusCode.INVALID_ARGUMENT
    app = sites.core.clients["core-app"].keys
    req = key_pb.StartKeyAgreementRequest(kak=pb.KeyRef(key_id="kak-core-sm2"))
    assert code_of(app.StartKeyAgreement, req)[0] is StatusCode.PERMISSION_DENIED
    req = key_pb.StartKeyAgreementRequest(kak=pb.KeyRef(key_id="zmk-sm2-missing"))
    assert code_of(keys.StartKeyAgreement, req)[0] is StatusCode.NOT_FOUND


def test_start_and_agreement_are_audited(sites: Sites, kaks: dict[str, bytes]) -> None:
    started, partner = _start(sites.core, "kak-core-sm2"), Partner()
    _keys(sites.core).AgreeKey(_request("kak-core-sm2", "zmk-audited", peer_static=partner.static,
                                        peer_ephemeral=partner.ephemeral, agreement=started.agreement_id,
                                        role=INITIATOR))
    engine = create_engine(sites.core.store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit.c.action, audit.c.actor, audit.c.key_id, audit.c.detail).where(
                audit.c.action.in_(("key.agree.start", "key.agree")))).all()
    finally:
        engine.dispose()
    mine = [r for r in rows if started.agreement_id in str(r.detail)]
    assert sorted((r.action, r.key_id) for r in mine) == [("key.agree", "zmk-audited"),
                                                         ("key.agree.start", "kak-core-sm2")]
    assert all(r.actor == "core-officer" for r in mine)
    assert _fingerprint(partner.static).hex().upper() in str(next(r for r in mine if r.action == "key.agree").detail)
