"""PIN blocks from DUKPT terminals, end to end: translated to a ZPK and verified, over gRPC.

The BDKs are formed from components when the session's server is set up, as a ceremony forms them. Every
expected value is a published one (ANSI X9.24-1:2009 annex A.4 and the X9.24-3:2017
supplement, as openemv/dukpt's tests reproduce them) or is checked with tests/reference.py.
"""

from __future__ import annotations

import grpc
import pytest

from hsmsvc_client import Client
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import terminal_service_pb2 as term_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests import reference as ind
from tests.api.conftest import Env, code_of, template

H = bytes.fromhex
# ANSI X9.24-1:2009 annex A.4 (openemv/dukpt test/dukpt_tdes_test.c): the BDK, and for three of
# its KSNs the PIN block of PIN 1234, PAN 4012345678909 enciphered under the transaction's PIN key.
TDES_BDK = H("0123456789ABCDEFFEDCBA9876543210")
TDES_PAN = "4012345678909"
TDES_BLOCKS = [
    ("FFFF9876543210E00001", "1B9C1845EB993A7A"),
    ("FFFF9876543210E00002", "10A01C8D02C69107"),
    ("FFFF9876543210E00003", "18DC07B94797B466"),
]
# The transaction keys A.4 gives for the first two KSNs, and the PIN key variant of table A-1.
TDES_TXN_KEYS = [H("042666B49184CFA368DE9628D0397BC9"), H("C46551CEF9FD24B0AA9AD834130D3BC7")]
PIN_VARIANT = H("00000000000000FF00000000000000FF")
# ANSI X9.24-3:2017 supplement (openemv/dukpt test/dukpt_aes128_test.c): the AES-128 BDK, and the
# ISO format 4 PIN block of PIN 1234, PAN 4111111111111111 under the first transaction's AES-128 PIN key.
AES_BDK = H("FEDCBA9876543210F1F1F1F1F1F1F1F1")
AES_PAN = "4111111111111111"
AES_KSN, AES_BLOCK = "123456789012345600000001", "A912150391AB65A67E52883D81CE2D15"


@pytest.fixture(scope="session")
def bdks(server: Env) -> None:
    """The BDKs the session's server formed from components (tests/api/conftest.py, DUKPT_BDKS)."""
    assert server.clear["dukpt.bdk-tdes"] == TDES_BDK and server.clear["dukpt.bdk-aes"] == AES_BDK


def _dukpt(ksn: str, bdk: str = "dukpt.bdk-tdes", alg: int = 0) -> pin_pb.DukptKey:
    return pin_pb.DukptKey(bdk=pb.KeyRef(key_id=bdk), ksn=H(ksn), pin_key_algorithm=alg)


def _translate(core: Client, ksn: str, block: str, pan: str = TDES_PAN, **kw: object) -> pin_pb.TranslatePinResponse:
    return core.pins.TranslatePin(pin_pb.TranslatePinRequest(
        source_dukpt=_dukpt(ksn, **kw), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,  # type: ignore[arg-type]
        destination_key=pb.KeyRef(key_id="zpk2"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=H(block), pan=pan))


@pytest.mark.parametrize(("ksn", "block"), TDES_BLOCKS)
def test_a_tdes_dukpt_pin_block_translates_to_a_zpk(
    bdks: None, core: Client, keys: dict[str, bytes], ksn: str, block: str
) -> None:
    r = _translate(core, ksn, block)
    assert ind.decode_iso0(ind.tdes_ecb(keys["zpk2"], r.pin_block, decrypt=True), TDES_PAN) == "1234"


def test_an_aes_dukpt_format_4_block_verifies_against_a_pvv(bdks: None, core: Client, keys: dict[str, bytes]) -> None:
    pvv = ind.visa_pvv(keys["pvk-visa"], AES_PAN, 1, "1234")
    check = pin_pb.PvvCheck(pvk=pb.KeyRef(key_id="pvk-visa"), pvki=1, pvv=pvv)
    r = core.pins.VerifyPin(pin_pb.VerifyPinRequest(
        dukpt=_dukpt(AES_KSN, "dukpt.bdk-aes", pb.ALGORITHM_AES_128), format=pb.PIN_BLOCK_FORMAT_ISO_4,
        pin_block=H(AES_BLOCK), pan=AES_PAN, pvv=check))
    # A wrong PIN is not tried here: it would count against the vector's card, 4111111111111111,
    # which other tests use too (the wrong-PIN path is test_a_wrong_block_is_the_one_generic_error's).
    assert r.verified


@pytest.mark.parametrize(("ksn", "why"), [
    ("FFFF9876543210E00000", "counter 0: the initial KSN names no transaction key"),
    ("FFFF9876543210E007FF", "11 one bits (X9.24-1:2009 A.3)"),
    ("FFFF9876543210FFFFFF", "past the last counter, 1FF800"),
    ("123456789012345600000001", "an AES KSN under a TDES BDK"),
])
def test_a_ksn_the_standard_forbids_is_refused_before_anything_is_deciphered(
    bdks: None, core: Client, ksn: str, why: str
) -> None:
    code, details = code_of(_translate, core, ksn, TDES_BLOCKS[0][1])
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "ksn" in details, why


def test_a_wrong_block_is_the_one_generic_error(bdks: None, core: Client, keys: dict[str, bytes]) -> None:
    # Failures count against the card: a PAN of this test's own, so no other test's card is locked.
    pan = ind.luhn_pan("622202990000000001")
    ksn, _ = TDES_BLOCKS[0]
    pin_keys = [ind.xor(k, PIN_VARIANT) for k in TDES_TXN_KEYS]
    good = ind.tdes_ecb(pin_keys[0], ind.iso0("1234", pan))
    assert ind.decode_iso0(ind.tdes_ecb(keys["zpk2"], _translate(core, ksn, good.hex(), pan).pin_block,
                                        decrypt=True), pan) == "1234"
    code, details = code_of(lambda: _translate(core, ksn, bytes([good[0] ^ 1]).hex() + good[1:].hex(), pan))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details.endswith("PIN block invalid")
    # Another KSN's block under this KSN is the same error: the key is the transaction's.
    other = ind.tdes_ecb(pin_keys[1], ind.iso0("1234", pan))
    assert code_of(lambda: _translate(core, ksn, other.hex(), pan)) == (code, details)


def test_the_pin_key_algorithm_is_for_an_aes_bdk_only(bdks: None, core: Client) -> None:
    ksn, block = TDES_BLOCKS[0]
    code, details = code_of(lambda: _translate(core, ksn, block, alg=pb.ALGORITHM_AES_128))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "pin_key_algorithm" in details
    code, details = code_of(lambda: _translate(core, AES_KSN, block, bdk="dukpt.bdk-aes"))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "pin_key_algorithm" in details


def test_a_bdk_is_used_only_for_derivation(bdks: None, core: Client) -> None:
    # A ZPK named as a BDK, and the BDK named as a ZPK: each refused by its usage.
    ksn, block = TDES_BLOCKS[0]
    code, _ = code_of(lambda: _translate(core, ksn, block, bdk="zpk1"))
    assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)
    code, _ = code_of(core.pins.TranslatePin, pin_pb.TranslatePinRequest(
        source_key=pb.KeyRef(key_id="dukpt.bdk-tdes"), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=pb.KeyRef(key_id="zpk2"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=H(block), pan=TDES_PAN))
    assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)


def test_a_bdk_is_never_rotated_exported_or_taken_in_an_ecb_form(bdks: None, server: Env) -> None:
    # An adversarial review's findings: a new random version would fail every terminal and lock
    # their cards; a BDK in an ECB form (no key type bound) could be taken in again as a DEK.
    mgr = server.client("key-manager")
    code, details = code_of(mgr.keys.RotateKey, key_pb.RotateKeyRequest(key=pb.KeyRef(key_id="dukpt.bdk-tdes")))
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "not rotated" in details
    code, _ = code_of(mgr.keys.ExportKey, key_pb.ExportKeyRequest(kek=pb.KeyRef(key_id="zmk-core"),
                                                                 key=pb.KeyRef(key_id="dukpt.bdk-tdes")))
    assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)
    code, _ = code_of(mgr.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-core"), wrapped_key=ind.aes_ecb(server.clear["zmk"], TDES_BDK),
        kcv=ind.tdes_kcv(TDES_BDK), template=template("dukpt.bdk-ecb", pb.KEY_TYPE_BDK, pb.ALGORITHM_TDES_2KEY,
                                                      pb.KEY_USAGE_BDK, pb.MODE_OF_USE_DERIVE)))
    assert code is grpc.StatusCode.FAILED_PRECONDITION


# --- TerminalService: the host's MACs and data, and initial keys (X9.24-1:2009 A.4) ---------------
# For KSN FFFF9876543210E00001 (openemv/dukpt test/dukpt_tdes_test.c): the message, its request and
# response MACs (X9.19 retail MAC, zero padded, leftmost 4 bytes) and the request enciphered under the
# request data key (TDES-CBC, zero IV, zero padded to 24 bytes). The IPEK of the initial KSN.
A4_MESSAGE = b"4012345678909D987"
A4_ENCIPHERED = H("FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F")
A4_IPEK = H("6AC292FAA1315B4D858AB3A3D7D5933A")


def _txn(ksn: str = "FFFF9876543210E00001", bdk: str = "dukpt.bdk-tdes", alg: int = 0) -> term_pb.DukptTransaction:
    return term_pb.DukptTransaction(bdk=pb.KeyRef(key_id=bdk), ksn=H(ksn), key_algorithm=alg)  # type: ignore


def test_terminal_macs_and_data_by_a4(bdks: None, core: Client) -> None:
    req, resp = term_pb.DUKPT_DIRECTION_REQUEST, term_pb.DUKPT_DIRECTION_RESPONSE
    m1 = pb.MAC_PADDING_METHOD_1
    t = core.terminals
    assert t.VerifyDukptMac(term_pb.VerifyDukptMacRequest(transaction=_txn(), direction=req, padding=m1,
                                                          data=A4_MESSAGE, mac=H("9CCC7817"))).verified
    assert not t.VerifyDukptMac(term_pb.VerifyDukptMacRequest(transaction=_txn(), direction=req, padding=m1,
                                                              data=A4_MESSAGE, mac=H("9CCC7818"))).verified
    r = t.GenerateDukptMac(term_pb.GenerateDukptMacRequest(transaction=_txn(), direction=resp, padding=m1,
                                                           data=A4_MESSAGE))
    assert r.mac[:4] == H("20364223")
    r = t.DecryptDukptData(term_pb.DecryptDukptDataRequest(transaction=_txn(), direction=req, iv=bytes(8),
                                                           ciphertext=A4_ENCIPHERED))
    assert r.plaintext == A4_MESSAGE.ljust(24, b"\0")
    # Never the terminal's side: no request MAC made, no response read; the field named.
    code, details = code_of(t.GenerateDukptMac, term_pb.GenerateDukptMacRequest(
        transaction=_txn(), direction=req, padding=m1, data=A4_MESSAGE))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and details.startswith("direction")
    code, details = code_of(t.VerifyDukptMac, term_pb.VerifyDukptMacRequest(
        transaction=_txn("FFFF9876543210E00000"), direction=req, padding=m1, data=A4_MESSAGE, mac=bytes(4)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("ksn")
    assert code_of(t.VerifyDukptMac, term_pb.VerifyDukptMacRequest(
        transaction=_txn(), direction=req, data=A4_MESSAGE, mac=bytes(4)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    # An operator never gives out an initial key.
    assert code_of(t.ExportInitialKey, term_pb.ExportInitialKeyRequest(
        bdk=pb.KeyRef(key_id="dukpt.bdk-tdes"), kek=pb.KeyRef(key_id="dukpt.kif"),
        initial_key_id=H("FFFF9876543210E00000")))[0] == grpc.StatusCode.PERMISSION_DENIED


def test_an_initial_key_leaves_as_a_tr31_block_and_is_audited(bdks: None, server: Env) -> None:
    mgr = server.client("key-manager")
    r = mgr.terminals.ExportInitialKey(term_pb.ExportInitialKeyRequest(
        bdk=pb.KeyRef(key_id="dukpt.bdk-tdes"), kek=pb.KeyRef(key_id="dukpt.kif"),
        initial_key_id=H("FFFF9876543210E00000")))
    assert r.key_block[5:9] == "B1TX" and r.bdk_version == 1
    # With odd parity, as every TDES key hsmsvc gives out (A.4 prints it without; DES ignores the bit).
    assert ind.tr31_unwrap(server.clear["dukpt.kif"], r.key_block)[0] == ind.odd_parity(A4_IPEK)
    assert r.kcv == ind.tdes_kcv(A4_IPEK)
    # Only under a K1 KEK: a K0's ECB form binds no usage.
    code, details = code_of(mgr.terminals.ExportInitialKey, term_pb.ExportInitialKeyRequest(
        bdk=pb.KeyRef(key_id="dukpt.bdk-tdes"), kek=pb.KeyRef(key_id="zmk-core"),
        initial_key_id=H("FFFF9876543210E00000")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "TR-31" in details
    # Audited as an export of the BDK, naming the terminal's initial KSN and the key's KCV.
    from hsmsvc.hsm.soft.backend import SoftBackend
    from hsmsvc.keys.store import KeyStore
    from tests.api.conftest import PASSPHRASE

    b = SoftBackend.from_sealed(next(server.log.parent.glob("lmk.sealed")), PASSPHRASE.encode())
    st = KeyStore(server.store_url, b)
    try:
        rows = [x for x in st.audit_rows() if x.action == "key.export_initial_key"]
        assert any(x.actor == "key-manager" and x.key_id == "dukpt.bdk-tdes" and "FFFF9876543210E00000" in x.detail
                   and ind.tdes_kcv(A4_IPEK).hex().upper() in x.detail for x in rows)
    finally:
        st.close()
        b.close()
