"""Issue 33's acceptance: an SM-only deployment (``[crypto] national_only = true``, GB/T 39786), end to end.

Two sites, a core and a branch, each ``hsmsvc serve`` over mTLS on its own PostgreSQL store and
its own SM4 LMK, made by ``hsmsvc ceremony lmk create --algorithm SM4`` from components the test
types. The zone's SM4 ZMK is formed at both by the dual-control ceremony client under an SM2 CTK;
a branch TMK and a core PSK are formed the same way. Then: terminal sign-on, a zone key change,
PIN translation at the branch and verification at the core against a stored PIN, MACs and field
encryption, every key checked to be SM4 or SM2, and every TDES, AES, RSA or ECC request refused.

Every value is checked independently (tests/reference.py: pyca/cryptography's SM4 and SM3):
keys are read out of the SM4 key blocks they travel in, and PIN blocks, MACs, ciphertexts and
stored PINs are computed from them. SM4: GB/T 32907-2016; SM3: GB/T 32905-2016 appendix A.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from grpc import StatusCode
from hsmsvc_client import Client, ClientError, ClientTls

from hsmsvc.ceremony import forming
from hsmsvc.hsm.commands import PublicKey
from hsmsvc.hsm.soft import sharesealed
from hsmsvc.keys.model import AuditEvent, Ceremony, CeremonyState
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import ceremony_service_pb2 as cer_pb
from hsmsvc_client.v1 import data_service_pb2 as data_pb
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_sync_service_pb2 as ks
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import status_service_pb2 as st_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import pg
from tests import reference as ind
from tests.api.conftest import POLICY, code_of, launch, seal_lmk, stop, stop_sites, template
from tests.ceremony import scripted, typed_components
from tools.bench.pki import ThrowawayCA as TestCA

PP = "national-only-passphrase"
ZONE = "smz"
PAN = "6222020000000015"
ACCOUNT = "62220200000000150"
NATIONAL = "[crypto]\nnational_only = true\n"
TIMING = "\n[key_sync]\nactivate_after_seconds = 1\ngrace_seconds = 4\n"


@dataclass
class Site:
    name: str
    port: int
    lmk: bytes
    clients: dict[str, Client]

    def __getitem__(self, who: str) -> Client:
        return self.clients[who]


@dataclass
class Sites:
    core: Site
    branch: Site
    clear: dict[str, bytes]
    """ZMK, TMK and PSK, as their custodians' components combine."""
    old_ctk: bytes
    """The public half of the core's CTK of the ceremony started before the mode."""


def _hmac_sm3(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


def _stored_pin(psk: bytes, account: str, pin: str) -> bytes:
    """hsmsvc's documented stored-PIN digest (bank design 004 clause 6.2.4), HMAC-SM3 under an SM4-sized PSK."""
    msg = b"".join(len(x).to_bytes(1, "big") + x for x in (b"hsmsvc/pin-digest/v1", account.encode(), pin.encode()))
    return _hmac_sm3(psk, msg)


def _lmk_by_ceremony(d: Path, url: str) -> bytes:
    """``hsmsvc ceremony lmk create --algorithm SM4``, two custodians typing their components."""
    parts = [secrets.token_bytes(16) for _ in range(2)]
    answers = [x for name, p in zip(("cai", "du"), parts) for x in (name, p.hex())]
    r = subprocess.run([sys.executable, "-m", "hsmsvc", "ceremony", "lmk", "create", "--algorithm", "SM4",
                        "--custodians", "2", "--sealed", str(d / "lmk.sealed"), "--passphrase-env", "PP",
                        "--scrypt-log2-n", "14", "--store", url, "--officer", "olga"],
                       input="\n".join(answers) + "\n", text=True, capture_output=True, timeout=120,
                       env={**os.environ, "PP": PP})
    assert r.returncode == 0, r.stdout + r.stderr
    lmk = ind.xor(*parts)
    assert f"LMK KCV {ind.kcv('SM4', lmk).hex().upper()}" in r.stdout
    return lmk


def _form(ca: TestCA, port: int, key_id: str, kt: int, usage: int, mode: int, clear: bytes) -> bytes:
    """Two officers and two custodians form an SM4 key under the site's SM2 CTK; returns its KCV."""
    def tls(who: str) -> ClientTls:
        ident = ca.issue(who)
        return ClientTls(ca.ca_file, ident.cert, ident.key, "localhost")

    c1 = secrets.token_bytes(16)
    parts = [c1, ind.xor(clear, c1)]
    key = forming.form(scripted(["y", *typed_components(Algorithm.SM4, parts)]), address=f"127.0.0.1:{port}",
                       officers=(tls("key-manager"), tls("key-manager-2")),
                       custodians=[tls("custodian-1"), tls("custodian-2")],
                       template=template(key_id, kt, pb.ALGORITHM_SM4, usage, mode, zone=ZONE), ctk="ctk")
    return bytes(key.kcv)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    root = tmp_path_factory.mktemp("national")
    ca = TestCA(root)
    clear = {"zmk": secrets.token_bytes(16), "tmk": secrets.token_bytes(16), "psk": secrets.token_bytes(16)}
    procs, started = [], {}
    with pg.throwaway_db() as core_url, pg.throwaway_db() as branch_url:
        try:
            for name, url in (("core", core_url), ("branch", branch_url)):
                d = root / name
                d.mkdir()
                (d / "policy.toml").write_text(POLICY)
                lmk = _lmk_by_ceremony(d, url)
                if name == "core":
                    # A TDES key left from before the mode was set: counted, and never used under it.
                    backend = SoftBackend.from_sealed(d / "lmk.sealed", PP.encode())
                    store = KeyStore(url, backend)
                    store.migrate()
                    km = KeyManager(store, backend, "before")
                    km.generate(KeySpec("old.dek", 1, KeyType.DEK, Algorithm.TDES_2KEY, KeyUsage.DATA,
                                        ModeOfUse.ENCRYPT_DECRYPT))
                    # And a TDES key's ceremony, started and approved before the mode, under an SM2 CTK.
                    ctk = km.generate(KeySpec("old.ctk", 1, KeyType.CTK, Algorithm.SM2,
                                              KeyUsage.ASYMMETRIC_KEY_WRAPPING, ModeOfUse.DECRYPT_ONLY))
                    now = datetime.now(timezone.utc)
                    store.open_ceremony(Ceremony(
                        PRE_MODE, KeySpec("old.zpk", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION,
                                          ModeOfUse.ENCRYPT_DECRYPT), None, frozenset(), "old.ctk", 1, 2,
                        CeremonyState.OPEN, "key-manager", "key-manager-2", now, now + timedelta(hours=1)),
                        AuditEvent("key-manager", "ceremony.start", "old.zpk", 1, ()))
                    public = backend.execute(PublicKey(key=ctk.cryptogram))
                    store.close()
                    backend.close()
                proc, info = launch(d, url, d / "lmk.sealed", ca.issue(f"{name}-hsmsvc", server=True), ca,
                                    NATIONAL + TIMING, passphrase=PP)
                procs.append((proc, d / "server.log"))
                clients = {}
                for who in ("key-manager", "core-banking", "auditor", "custodian-1"):
                    ident = ca.issue(who)
                    clients[who] = Client(f"127.0.0.1:{info['port']}",
                                          ClientTls(ca.ca_file, ident.cert, ident.key, "localhost"))
                site = started[name] = Site(name, info["port"], lmk, clients)
                site["key-manager"].keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
                    "ctk", pb.KEY_TYPE_CTK, pb.ALGORITHM_SM2, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
                    pb.MODE_OF_USE_DECRYPT_ONLY, zone=ZONE)))
                got = _form(ca, info["port"], f"zmk-{ZONE}", pb.KEY_TYPE_ZMK, pb.KEY_USAGE_KBPK,
                            pb.MODE_OF_USE_ENCRYPT_DECRYPT, clear["zmk"])
                assert got[:3] == ind.kcv("SM4", clear["zmk"])  # the same ZMK at both sites
            _form(ca, started["branch"].port, f"{ZONE}.tmk", pb.KEY_TYPE_TMK, pb.KEY_USAGE_KBPK,
                  pb.MODE_OF_USE_ENCRYPT_DECRYPT, clear["tmk"])
            _form(ca, started["core"].port, "psk", pb.KEY_TYPE_PSK, pb.KEY_USAGE_MAC_HMAC,
                  pb.MODE_OF_USE_MAC_GENERATE_VERIFY, clear["psk"])
            yield Sites(started["core"], started["branch"], clear, public)
        finally:
            stop_sites([c for site in started.values() for c in site.clients.values()], procs)


def _block_key(kbpk: bytes, block: bytes) -> bytes:
    """The key in an SM4 key block (no optional blocks), read with the reference's SM4."""
    text = block.decode("ascii")
    assert text[0] == "D" and text[7] == "4", text[:16]
    return ind.tr31_unwrap(kbpk, text, sm4=True)[0]


def _cbc_sm4(key: bytes, iv: bytes, data: bytes) -> bytes:
    d = Cipher(algorithms.SM4(key), modes.CBC(iv)).decryptor()
    return d.update(data) + d.finalize()


def test_an_sm_only_deployment_end_to_end(sites: Sites) -> None:
    core, branch, clear = sites.core, sites.branch, sites.clear
    for site in (core, branch):
        s = site["auditor"].status.GetServerStatus(st_pb.GetServerStatusRequest())
        assert s.crypto.national_only and s.backend.lmk_algorithm == "SM4"
        assert s.backend.lmk_kcv == ind.kcv("SM4", site.lmk).hex().upper()
    assert core["auditor"].status.GetServerStatus(st_pb.GetServerStatusRequest()).crypto.non_national_keys == 1
    assert branch["auditor"].status.GetServerStatus(st_pb.GetServerStatusRequest()).crypto.non_national_keys == 0

    # A terminal signs on at the branch: SM4 TPK and TAK, in SM4 key blocks under its TMK.
    r = branch["core-banking"].sync.SignOn(ks.SignOnRequest(tmk=pb.KeyRef(key_id=f"{ZONE}.tmk"),
                                                            terminal_id=f"{ZONE}.term-01"))
    terminal = {}
    for k in r.keys:
        assert k.algorithm == pb.ALGORITHM_SM4
        terminal[k.key_type] = _block_key(clear["tmk"], bytes(k.wrapped_key))
        assert ind.kcv("SM4", terminal[k.key_type]) == bytes(k.kcv)[:3]
    assert sorted(terminal) == sorted([pb.KEY_TYPE_TPK, pb.KEY_TYPE_TAK])

    # The zone's key change, core to branch, under the SM4 ZMK.
    officer = {s.name: s["key-manager"].sync for s in (core, branch)}
    notice = officer["core"].StartKeyChange(ks.StartKeyChangeRequest(zone=ZONE)).notice
    zone = {}
    for k in notice.keys:
        assert k.algorithm == pb.ALGORITHM_SM4
        zone[k.key_type] = _block_key(clear["zmk"], bytes(k.wrapped_key))
        assert ind.kcv("SM4", zone[k.key_type]) == bytes(k.kcv)[:3]
    assert sorted(zone) == sorted([pb.KEY_TYPE_ZPK, pb.KEY_TYPE_MAK, pb.KEY_TYPE_DEK])
    conf = officer["branch"].ApplyKeyChange(ks.ApplyKeyChangeRequest(notice=notice)).confirmation
    ack = officer["core"].ConfirmKeyChange(ks.ConfirmKeyChangeRequest(confirmation=conf)).acknowledgement
    officer["branch"].AcknowledgeKeyChange(ks.AcknowledgeKeyChangeRequest(acknowledgement=ack))

    # PIN: format 4 (ISO 9564-1 clause 9.3.6, SM4 for AES) from the terminal, translated at the
    # branch to the zone's ZPK, verified at the core against the stored PIN (HMAC-SM3 under the PSK).
    field = ind.iso4_pin_field("482913", secrets.token_bytes(8))
    block = ind.iso4_encipher("SM4", terminal[pb.KEY_TYPE_TPK], field, PAN)
    out = None
    for _ in range(50):  # the new keys activate a second after the notice
        try:
            out = branch["core-banking"].pins.TranslatePin(pin_pb.TranslatePinRequest(
                source_key=pb.KeyRef(key_id=f"{ZONE}.term-01.tpk"), source_format=pb.PIN_BLOCK_FORMAT_ISO_4,
                destination_key=pb.KeyRef(key_id=f"{ZONE}.zpk"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_4,
                pin_block=block, pan=PAN))
            break
        except ClientError as e:  # the ZPK's new version is PENDING until it activates
            assert e.code is StatusCode.FAILED_PRECONDITION, e
            time.sleep(0.1)
    assert out is not None
    assert ind.iso4_decipher("SM4", zone[pb.KEY_TYPE_ZPK], bytes(out.pin_block), PAN)[:8] == field[:8]

    def verify(pin_block: bytes) -> bool:
        return bool(core["core-banking"].pins.VerifyPin(pin_pb.VerifyPinRequest(
            key=pb.KeyRef(key_id=f"{ZONE}.zpk", version=out.destination_key_version),
            format=pb.PIN_BLOCK_FORMAT_ISO_4, pin_block=pin_block, pan=PAN,
            stored=pin_pb.StoredPinCheck(psk=pb.KeyRef(key_id="psk"), account=ACCOUNT,
                                         method=pb.STORED_PIN_METHOD_DIGEST,
                                         stored_pin=_stored_pin(clear["psk"], ACCOUNT, "482913")))).verified)

    assert verify(bytes(out.pin_block))
    wrong = ind.iso4_encipher("SM4", zone[pb.KEY_TYPE_ZPK], ind.iso4_pin_field("482914", bytes(8)), PAN)
    assert not verify(wrong)

    # MACs: ISO 9797-1 algorithm 1 with SM4, the zone MAK's usage (M1), branch to core; and under
    # the terminal's TAK.
    msg = b"0200 transfer 0000001234.56 CNY " + secrets.token_bytes(8)
    tag = branch["core-banking"].macs.GenerateMac(mac_pb.GenerateMacRequest(
        key=pb.KeyRef(key_id=f"{ZONE}.mak"), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG1,
        padding=pb.MAC_PADDING_METHOD_1, data=msg))
    assert bytes(tag.mac) == ind.cbc_mac("SM4", zone[pb.KEY_TYPE_MAK], msg)[:len(tag.mac)]
    assert core["core-banking"].macs.VerifyMac(mac_pb.VerifyMacRequest(
        key=pb.KeyRef(key_id=f"{ZONE}.mak", version=tag.key_version), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG1,
        padding=pb.MAC_PADDING_METHOD_1, data=msg, mac=tag.mac)).verified
    tak = branch["core-banking"].macs.GenerateMac(mac_pb.GenerateMacRequest(
        key=pb.KeyRef(key_id=f"{ZONE}.term-01.tak"), algorithm=pb.MAC_ALGORITHM_ISO9797_ALG1,
        padding=pb.MAC_PADDING_METHOD_2, data=msg))
    padded = msg + b"\x80" + bytes(-(len(msg) + 1) % 16)
    assert bytes(tak.mac) == ind.cbc_mac("SM4", terminal[pb.KEY_TYPE_TAK], padded)[:len(tak.mac)]

    # Field encryption: SM4-CBC under the zone DEK at the branch, read at the core and by the reference.
    field_data = b"account=6222027000000000;amount=1234.56;".ljust(48, b" ")  # whole SM4 blocks
    enc = branch["core-banking"].data.Encrypt(data_pb.EncryptRequest(
        key=pb.KeyRef(key_id=f"{ZONE}.dek"), plaintext=field_data,
        cipher=data_pb.FieldCipher(mode=pb.CIPHER_MODE_CBC, padding=pb.DATA_PADDING_NONE)))
    assert _cbc_sm4(zone[pb.KEY_TYPE_DEK], bytes(enc.iv), bytes(enc.ciphertext)) == field_data
    assert core["core-banking"].decrypt(f"{ZONE}.dek", enc.ciphertext, enc.iv, mode=pb.CIPHER_MODE_CBC,
                                        version=enc.key_version) == field_data

    # SM3 in the data service: GB/T 32905-2016 appendix A example 1.
    d = core["core-banking"].data.Digest(data_pb.DigestRequest(algorithm=pb.HASH_ALGORITHM_SM3, data=b"abc"))
    assert bytes(d.digest).hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"

    # Every key at both sites is SM4 or SM2, but the one left from before the mode.
    for site in (core, branch):
        listed = site["key-manager"].keys.ListKeys(key_pb.ListKeysRequest(page_size=1000)).keys
        others = {k.key_id for k in listed if k.algorithm not in (pb.ALGORITHM_SM4, pb.ALGORITHM_SM2)}
        assert others == ({"old.dek"} if site is core else set()), others


REFUSED = "national-only mode"
PRE_MODE = "c-0123456789abcdef"


@pytest.mark.parametrize("algorithm", [pb.ALGORITHM_TDES_2KEY, pb.ALGORITHM_TDES_3KEY, pb.ALGORITHM_AES_128,
                                       pb.ALGORITHM_AES_256])
def test_other_symmetric_keys_are_refused(sites: Sites, algorithm: int) -> None:
    code, msg = code_of(sites.core["key-manager"].keys.GenerateKey, key_pb.GenerateKeyRequest(template=template(
        f"dek-{algorithm}", pb.KEY_TYPE_DEK, algorithm, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
    assert code is StatusCode.FAILED_PRECONDITION and REFUSED in msg, msg


@pytest.mark.parametrize(("kt", "algorithm", "usage", "mode"), [
    (pb.KEY_TYPE_KTK, pb.ALGORITHM_RSA_2048, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING, pb.MODE_OF_USE_DECRYPT_ONLY),
    (pb.KEY_TYPE_SIG, pb.ALGORITHM_ECC_P256, pb.KEY_USAGE_DIGITAL_SIGNATURE, pb.MODE_OF_USE_SIGN_ONLY),
])
def test_other_key_pairs_are_refused(sites: Sites, kt: int, algorithm: int, usage: int, mode: int) -> None:
    code, msg = code_of(sites.core["key-manager"].keys.GenerateKey, key_pb.GenerateKeyRequest(
        template=template(f"pair-{algorithm}", kt, algorithm, usage, mode)))
    assert code is StatusCode.FAILED_PRECONDITION and REFUSED in msg, msg


def test_other_macs_digests_and_keys_are_refused(sites: Sites) -> None:
    app = sites.core["core-banking"]
    for algorithm, padding in ((pb.MAC_ALGORITHM_ISO9797_ALG3, pb.MAC_PADDING_METHOD_1),
                               (pb.MAC_ALGORITHM_HMAC_SHA256, pb.MAC_PADDING_UNSPECIFIED)):
        code, msg = code_of(app.macs.GenerateMac, mac_pb.GenerateMacRequest(
            key=pb.KeyRef(key_id="psk"), algorithm=algorithm, padding=padding, data=b"x" * 16))
        assert code is StatusCode.FAILED_PRECONDITION and REFUSED in msg, msg
    code, msg = code_of(app.data.Digest, data_pb.DigestRequest(algorithm=pb.HASH_ALGORITHM_SHA256, data=b"abc"))
    assert code is StatusCode.FAILED_PRECONDITION and REFUSED in msg, msg
    # The TDES key stored before the mode was set is not used under it, not even for a KCV.
    code, msg = code_of(app.encrypt, "old.dek", b"0123456789abcdef", pb.CIPHER_MODE_CBC)
    assert code is StatusCode.FAILED_PRECONDITION and REFUSED in msg, msg
    code, msg = code_of(sites.core["key-manager"].keys.GetKeyCheckValue, key_pb.GetKeyCheckValueRequest(
        key=pb.KeyRef(key_id="old.dek"), kcv_method=pb.KCV_METHOD_ECB))
    assert code is StatusCode.FAILED_PRECONDITION and REFUSED in msg, msg


def test_a_one_time_key_of_another_algorithm_is_refused(sites: Sites) -> None:
    """A review found TDES and AES one-time keys used under an SM2 KTK: never stored, so only the
    request names their algorithm. Each is refused before anything is deciphered."""
    mgr, app = sites.core["key-manager"], sites.core["core-banking"]
    mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
        "ktk-sm2", pb.KEY_TYPE_KTK, pb.ALGORITHM_SM2, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING,
        pb.MODE_OF_USE_DECRYPT_ONLY)))
    spki = bytes(mgr.keys.GetPublicKey(key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id="ktk-sm2"))).public_key)
    for algorithm, key, fmt, block in (
            (pb.ALGORITHM_TDES_2KEY, k2 := ind.odd_parity(secrets.token_bytes(16)), pb.PIN_BLOCK_FORMAT_ISO_0,
             ind.tdes_ecb(k2, ind.iso0("1234", PAN))),
            (pb.ALGORITHM_AES_128, k3 := secrets.token_bytes(16), pb.PIN_BLOCK_FORMAT_ISO_4,
             ind.iso4_encipher("AES", k3, ind.iso4_pin_field("1234", bytes(8)), PAN))):
        code, msg = code_of(app.pins.TranslatePin, pin_pb.TranslatePinRequest(
            source_one_time_key=pin_pb.OneTimeKey(transport_key=pb.KeyRef(key_id="ktk-sm2"), algorithm=algorithm,
                                                  wrapped_key=ind.sm2_wrap(spki, key)),
            source_format=fmt, destination_key=pb.KeyRef(key_id=f"{ZONE}.zpk"),
            destination_format=pb.PIN_BLOCK_FORMAT_ISO_4, pin_block=block, pan=PAN))
        assert code is StatusCode.FAILED_PRECONDITION and REFUSED in msg, msg


def test_a_ceremony_started_before_the_mode_takes_no_component(sites: Sites) -> None:
    """A review found components of a TDES ceremony started before the mode taken, each checked by
    its TDES KCV (a yes/no answer), and only the last refused."""
    part = ind.odd_parity(secrets.token_bytes(16))
    code, msg = code_of(sites.core["custodian-1"].ceremony.AddKeyComponent, cer_pb.AddKeyComponentRequest(
        ceremony_id=PRE_MODE, wrapped_component=ind.sm2_wrap(sites.old_ctk, part), kcv=ind.tdes_kcv(part)))
    assert code is StatusCode.FAILED_PRECONDITION and REFUSED in msg, msg


def test_a_share_sealed_lmk_of_another_algorithm_is_refused_before_any_share(tmp_path: Path) -> None:
    """A review found a share-sealed AES-256 LMK taking custodians' shares and refused only when it
    opened: the file's header names the algorithm, so the server does not start."""
    ca = TestCA(tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    blob, _, made = sharesealed.seal(Algorithm.AES_256, secrets.token_bytes(32), threshold=2,
                                     holders=["custodian-1", "custodian-2"])
    for share in made:
        share.wipe()
    (tmp_path / "lmk.sealed").write_bytes(blob)
    backend = f"""
[backend]
kind = "soft"
sealed_lmk = "{tmp_path / 'lmk.sealed'}"
"""
    with pg.throwaway_db() as url:
        _refused_at_start(lambda: launch(tmp_path, url, tmp_path / "lmk.sealed",
                                         ca.issue("hsmsvc-server", server=True), ca, NATIONAL, backend=backend),
                          tmp_path)


def test_a_tdes_key_in_an_sm4_key_block_is_refused_before_it_is_stored(sites: Sites) -> None:
    """The block names its algorithm only inside: the backstop refuses it before anything is kept."""
    block = ind.tr31_wrap(sites.clear["zmk"], "D0000D0TB00N0000", ind.odd_parity(secrets.token_bytes(16)),
                          secrets.token_bytes(14), sm4=True)
    mgr = sites.core["key-manager"]
    code, msg = code_of(mgr.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id=f"zmk-{ZONE}"), wrapped_key=block.encode(),
        template=template("imported.dek", pb.KEY_TYPE_DEK, 0, pb.KEY_USAGE_DATA, pb.MODE_OF_USE_ENCRYPT_DECRYPT,
                          zone=ZONE)))
    assert code is StatusCode.FAILED_PRECONDITION and REFUSED in msg, msg
    code, _ = code_of(mgr.keys.GetKey, key_pb.GetKeyRequest(key=pb.KeyRef(key_id="imported.dek")))
    assert code is StatusCode.NOT_FOUND


def test_an_sm4_key_block_made_elsewhere_imports_under_the_sm4_zmk(sites: Sites) -> None:
    """Issue 33 seen 5: an SM4 K1 ZMK could be formed but import nothing. A partner's SM4 DEK in an
    SM4 key block (the reference's, algorithm byte 4) loads, with the KCV the reference computes."""
    dek = secrets.token_bytes(16)
    block = ind.tr31_wrap(sites.clear["zmk"], "D0000D04B00E0000", dek, secrets.token_bytes(14), sm4=True)
    r = sites.core["key-manager"].keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id=f"zmk-{ZONE}"), wrapped_key=block.encode(),
        template=key_pb.KeyTemplate(key_id="partner.dek", key_type=pb.KEY_TYPE_DEK, usage=pb.KEY_USAGE_DATA,
                                    mode_of_use=pb.MODE_OF_USE_ENCRYPT_DECRYPT,
                                    exportability=pb.EXPORTABILITY_EXPORTABLE, zone=ZONE)))
    assert r.key.algorithm == pb.ALGORITHM_SM4 and bytes(r.key.kcv)[:3] == ind.kcv("SM4", dek)
    back = sites.core["key-manager"].keys.ExportKey(key_pb.ExportKeyRequest(
        kek=pb.KeyRef(key_id=f"zmk-{ZONE}"), key=pb.KeyRef(key_id="partner.dek")))
    assert _block_key(sites.clear["zmk"], bytes(back.wrapped_key)) == dek


def test_the_mode_needs_an_sm4_lmk(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    with pg.throwaway_db() as url:
        _refused_at_start(lambda: launch(tmp_path, url, seal_lmk(tmp_path), ca.issue("hsmsvc-server", server=True),
                                         ca, NATIONAL), tmp_path)


def _refused_at_start(start: Callable[[], tuple[subprocess.Popen[bytes], Any]], d: Path) -> None:
    """The server exits saying why; one that starts is stopped, never left running, and fails the test."""
    try:
        proc, _ = start()
    except AssertionError as e:
        assert "national-only mode needs an SM4 LMK" in str(e), e
        return
    stop(proc, d / "server.log")
    pytest.fail("a national-only server started on an LMK that is not SM4")
