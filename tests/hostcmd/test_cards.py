"""Card commands over the host-command port: CW, CY (Visa CVV), KQ (ARQC and ARPC), CI and G0
(DUKPT PIN blocks to a ZPK), against the session's real server.

Every expected value is a published one, named with its source, or is computed here with
tests/reference.py (the standard library and pyca/cryptography; nothing from hsmsvc). Tests that
fail card values do so on fresh PANs: failures count for the whole session.
"""

from __future__ import annotations

import secrets

import pytest

from tests import reference as ref
from tests.hostcmd.client import HostClient, Reply
from tests.hostcmd.conftest import HostEnv

H = bytes.fromhex


def _code(r: Reply) -> tuple[bytes, bytes]:
    return r.code, r.error


def _fresh_pan(n: int = 16) -> str:
    return "4" + "".join(secrets.choice("0123456789") for _ in range(n - 1))


@pytest.fixture(scope="module")
def core(host: HostEnv) -> HostClient:
    return host.host("core")


@pytest.fixture(scope="module")
def issuer(host: HostEnv) -> HostClient:
    return host.host("issuer")


# -- CW, CY -------------------------------------------------------------------------------------


def test_cvv_by_the_published_examples(host: HostEnv, core: HostClient, issuer: HostClient) -> None:
    # nickntg/thalessimulatorlibrary ThalesCore.Tests/HostCommandTests.vb, TestGenerateCVV and
    # TestVerifyCVV: `U9B4934384B19946B040CD702B4D581454123456789012345;8701101` -> `00561`; the same
    # CVK as two 16H halves with `4999988887777;9105111` -> `00649`; CY with 561 -> 00, 111 -> 01.
    # The CVK here is that example's, decoded from the Thales test LMK (conftest "cvk"), named by its
    # hsmsvc cryptogram in place of the variant-LMK one.
    cvk = host.tokens["cvk"]
    assert ref.cvv_value(host.clear["cvk"], "4123456789012345", "8701", "101") == "561"
    r = issuer.call(b"CW" + cvk + b"4123456789012345;8701101")
    assert (r.code, r.error, r.fields) == (b"CX", b"00", b"561")
    r = issuer.call(b"CW" + host.label("cvk") + b"4999988887777;9105111")
    assert (r.code, r.error, r.fields) == (b"CX", b"00", b"649")
    r = core.call(b"CY" + cvk + b"561" + b"4123456789012345;8701101")
    assert (r.code, r.error, r.fields) == (b"CZ", b"00", b"")
    assert _code(core.call(b"CY" + cvk + b"111" + b"4123456789012345;8701101")) == (b"CZ", b"01")
    assert _code(core.call(b"CY" + cvk + b"649" + b"4999988887777;9105111")) == (b"CZ", b"00")


def test_cvv_of_a_fresh_card_against_the_reference(host: HostEnv, core: HostClient, issuer: HostClient) -> None:
    for n in (12, 16, 19):
        pan = _fresh_pan(n)
        want = ref.cvv_value(host.clear["cvk"], pan, "2812", "201")
        r = issuer.call(b"CW" + host.tokens["cvk"] + pan.encode() + b";2812201")
        assert (r.error, r.fields) == (b"00", want.encode())
        assert _code(core.call(b"CY" + host.tokens["cvk"] + want.encode() + pan.encode() + b";2812201")) == \
            (b"CZ", b"00")


def test_cvv_duties_keys_and_principals(host: HostEnv, core: HostClient, issuer: HostClient) -> None:
    data = b"4123456789012345;8701101"
    cvk = host.tokens["cvk"]
    # Generation is issuance: an operator may only check (the gRPC rule, service/authz.py).
    assert _code(core.call(b"CW" + cvk + data)) == (b"CX", b"17")
    assert _code(issuer.call(b"CY" + cvk + b"561" + data)) == (b"CZ", b"17")
    # A key outside "branch"'s patterns answers as one that does not exist.
    with host.host("branch") as branch:
        assert _code(branch.call(b"CY" + cvk + b"561" + data)) == (b"CZ", b"10")
    with host.host("stranger") as stranger:
        assert _code(stranger.call(b"CY" + cvk + b"561" + data)) == (b"CZ", b"17")
    # Another key type's key is not a CVK.
    assert _code(issuer.call(b"CW" + host.tokens["imk-ac"] + data)) == (b"CX", b"29")
    # A variant-LMK cryptogram is another HSM's (a key scheme error).
    assert _code(issuer.call(b"CWU9B4934384B19946B040CD702B4D58145" + data)) == (b"CX", b"26")


@pytest.mark.parametrize("tail", [
    b"4123456789012345;870110",       # service code short
    b"4123456789012345;8701101X",     # trailing data
    b"4123456789012345870110100",     # no delimiter
    b"41234567890123456789;8701101",  # PAN of 20 digits
    b"412345678X012345;8701101",      # PAN not digits
    b"41234567890;8701101",           # PAN of 11 digits (hsmsvc's card PAN is 12 to 19)
    b";8701101",                      # no PAN
    b"4123456789012345;87A1101",      # expiry not digits
])
def test_cvv_malformed_fields(host: HostEnv, issuer: HostClient, tail: bytes) -> None:
    assert _code(issuer.call(b"CW" + host.tokens["cvk"] + tail)) == (b"CX", b"15")


def test_cvv_checks_past_the_card_limit_are_fraud(host: HostEnv, core: HostClient) -> None:
    cvk, pan = host.tokens["cvk"], _fresh_pan()
    right = ref.cvv_value(host.clear["cvk"], pan, "2901", "101")
    wrong = [v for v in ("000", "111", "222", "333", "444") if v != right][:3]
    for v in wrong:  # [attempts] per_pan = 3 (conftest)
        assert _code(core.call(b"CY" + cvk + v.encode() + pan.encode() + b";2901101")) == (b"CZ", b"01")
    # Past the limit every outcome is refused, the right value too.
    assert _code(core.call(b"CY" + cvk + right.encode() + pan.encode() + b";2901101")) == (b"CZ", b"39")


# -- KQ -----------------------------------------------------------------------------------------

# pyemv tests/test_cvn_hsm.py (HSM-checked), as tests/api/test_cards.py and tests/crypto/test_emv.py
# use them: IMK K0 (conftest "imk-ac"), PAN 1234567890123456, PSN 00, ATC 001C.
PAN_PSN = H("3456789012345600")  # the rightmost 16 digits of PAN || PSN, BCD
ATC, UN = H("001C"), H("ABCDEF12")
VISA_TX = H("000000004000" "000000000000" "0124" "8000048000" "0124" "191105" "01" "52BF4585" "1800" "001C")
MC_TX = H("000000009999" "000000000000" "0124" "8000000000" "0124" "209906" "00") + UN + H("1800") + ATC


def _kq(host: HostEnv, mode: bytes, scheme: bytes, data: bytes, arqc: bytes, arc: bytes = b"",
        y: bytes = PAN_PSN, atc: bytes = ATC, un: bytes = UN) -> bytes:
    return (b"KQ" + mode + scheme + host.tokens["imk-ac"] + y + atc + un + b"%02X" % len(data) + data + b";"
            + arqc + arc)


def test_kq_mastercard_by_pyemv(host: HostEnv, core: HostClient) -> None:
    # test_mastercard_cvn16: the Mastercard SKD (R = ATC || 00 00 || UN), ARQC 24CCF3DEE3158C70; ARPC
    # method 1 under the card key with ARC 0010: 73F6BBF389A6586C.
    data, arqc = MC_TX + H("A00003220000"), H("24CCF3DEE3158C70")
    r = core.call(_kq(host, b"1", b"1", data, arqc, H("0010")))
    assert (r.code, r.error, r.fields) == (b"KR", b"00", H("73F6BBF389A6586C"))
    # KQ's own convention: the host appends the scheme's 80 and the HSM zero-fills; the same answer.
    r = core.call(_kq(host, b"1", b"1", data + b"\x80", arqc, H("0010")))
    assert (r.error, r.fields) == (b"00", H("73F6BBF389A6586C"))
    r = core.call(_kq(host, b"0", b"1", data + H("8000"), arqc))
    assert (r.code, r.error, r.fields) == (b"KR", b"00", b"")
    # A wrong cryptogram: 01 and no ARPC.
    r = core.call(_kq(host, b"1", b"1", data, H("24CCF3DEE3158C71"), H("0010")))
    assert (r.code, r.error, r.fields) == (b"KR", b"01", b"")
    # The Visa scheme on a Mastercard cryptogram does not verify.
    assert core.call(_kq(host, b"0", b"0", data, arqc)).error == b"01"


def test_kq_visa_by_pyemv(host: HostEnv, core: HostClient) -> None:
    # test_visa_cvn10: the card's key makes the cryptogram (padding method 1, KQ's zero fill),
    # ARQC 29CCA15AE665FA2E; ARPC method 1 with ARC 3030: 28993816AFAE4AEB.
    r = core.call(_kq(host, b"1", b"0", VISA_TX + H("03A06010"), H("29CCA15AE665FA2E"), H("3030"),
                      un=bytes(4)))
    assert (r.code, r.error, r.fields) == (b"KR", b"00", H("28993816AFAE4AEB"))


def _fresh(host: HostEnv, scheme: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes]:
    """A fresh card and transaction, its ARQC, ARC and ARPC by the reference; none holding 0x19 (the
    trailer delimiter) so the frame and the tests' client read them whole."""
    while True:
        pan = _fresh_pan()
        y = H((pan + "01")[-16:])
        atc, un, arc = secrets.token_bytes(2), secrets.token_bytes(4), secrets.token_bytes(2)
        data = secrets.token_bytes(21 + secrets.randbelow(40))
        mk = ref.emv_card_key(host.clear["imk-ac"], pan, "01")
        if scheme == b"1":
            sk = ref.emv_session_key(mk, atc, atc + bytes(2) + un)
            arqc, arpc = ref.emv_ac(sk, data), ref.emv_arpc_method1(mk, ref.emv_ac(sk, data), arc)
        else:
            arqc = ref.retail_mac(mk, data)  # padding method 1: KQ's zero fill
            arpc = ref.emv_arpc_method1(mk, arqc, arc)
        if b"\x19" not in y + atc + un + data + arqc + arc + arpc and data.rstrip(b"\x00")[-1:] != b"\x80":
            return y, atc, un, data, arqc, arc, arpc


@pytest.mark.parametrize("scheme", [b"0", b"1"])
def test_kq_fresh_cards_against_the_reference(host: HostEnv, core: HostClient, scheme: bytes) -> None:
    y, atc, un, data, arqc, arc, arpc = _fresh(host, scheme)
    r = core.call(_kq(host, b"1", scheme, data, arqc, arc, y=y, atc=atc, un=un))
    assert (r.code, r.error, r.fields) == (b"KR", b"00", arpc)
    r = core.call(_kq(host, b"0", scheme, data, arqc, y=y, atc=atc, un=un))
    assert (r.error, r.fields) == (b"00", b"")


def test_kq_refusals(host: HostEnv, core: HostClient) -> None:
    data, arqc = MC_TX + H("A00003220000"), H("24CCF3DEE3158C70")

    def code(body: bytes) -> bytes:
        r = core.call(body)
        assert r.code == b"KR"
        return r.error

    # Mode 2 (an ARPC alone) is refused: hsmsvc makes no ARPC for a cryptogram it has not verified.
    assert code(b"KQ21" + host.tokens["imk-ac"] + PAN_PSN + ATC + UN + arqc + H("0010")) == b"04"
    assert code(_kq(host, b"3", b"0", data, arqc)) == b"04"
    assert code(_kq(host, b"X", b"1", data, arqc)) == b"04"
    assert code(_kq(host, b"0", b"2", data, arqc)) == b"05"
    # Zero-length data (81); data shorter than EMV Book 2 8.1.1's elements (80); a length that is not the data's.
    assert code(_kq(host, b"0", b"1", b"", arqc)) == b"81"
    assert code(_kq(host, b"0", b"1", bytes(8), arqc)) == b"80"
    assert code(_kq(host, b"0", b"1", data, arqc).replace(b"%02X" % len(data), b"%02X" % (len(data) + 1))) == b"80"
    assert code(_kq(host, b"0", b"1", data, arqc).replace(b"%02X" % len(data), b"%02X" % (len(data) - 1))) == b"80"
    assert code(_kq(host, b"0", b"1", data, arqc).replace(b"%02X" % len(data), b"2G")) == b"80"
    # The PAN/PSN field is BCD; mode 1 needs its ARC; nothing may follow.
    assert code(_kq(host, b"0", b"1", data, arqc, y=H("3456789012345A00"))) == b"15"
    assert code(_kq(host, b"1", b"1", data, arqc)) == b"15"
    assert code(_kq(host, b"0", b"1", data, arqc, H("0010"))) == b"15"
    # Another key type's key is not an MK-AC; a key outside the principal's patterns does not exist.
    assert code(_kq(host, b"0", b"1", data, arqc).replace(host.tokens["imk-ac"], host.tokens["cvk"])) == b"29"
    with host.host("branch") as branch:
        assert branch.call(_kq(host, b"0", b"1", data, arqc)).error == b"10"


# -- CI, G0 -------------------------------------------------------------------------------------

# ANSI X9.24-1:2009 annex A.4 (as tests/api/test_dukpt.py, from openemv/dukpt): the BDK (conftest
# "bdk"), and for three KSNs the ISO 0 block of PIN 1234, PAN 4012345678909 under the transaction's
# PIN key. nickntg's TestTranslatePINFromDukptoZPK sends the first with descriptor 605; its ZPK
# (1C..1C, two equal halves) is one hsmsvc refuses to hold, so the result is deciphered instead.
A4_BLOCKS = [(b"FFFF9876543210E00001", b"1B9C1845EB993A7A"), (b"FFFF9876543210E00002", b"10A01C8D02C69107"),
             (b"FFFF9876543210E00003", b"18DC07B94797B466")]
A4_PAN, A4_ACCOUNT = "4012345678909", b"401234567890"


def _pin_of(host: HostEnv, r: Reply, fmt: bytes = b"01") -> str:
    assert (r.error, len(r.fields), r.fields[:2], r.fields[-2:]) == (b"00", 20, b"12", fmt)
    plain = ref.tdes_ecb(host.clear["zpk"], H(r.fields[2:18].decode()), decrypt=True)
    assert plain == ref.iso0("1234", A4_PAN)
    return ref.decode_iso0(plain, A4_PAN)


@pytest.mark.parametrize(("ksn", "block"), A4_BLOCKS)
def test_ci_a4_blocks_to_a_zpk(host: HostEnv, core: HostClient, ksn: bytes, block: bytes) -> None:
    r = core.call(b"CI" + host.tokens["bdk"] + host.tokens["zpk"] + b"605" + ksn + block + b"01" + A4_ACCOUNT)
    assert r.code == b"CJ"
    assert _pin_of(host, r) == "1234"


def test_g0_a4_block_to_a_zpk(host: HostEnv, core: HostClient) -> None:
    ksn, block = A4_BLOCKS[1]
    tail = b"605" + ksn + block + b"01"
    r = core.call(b"G0" + host.tokens["bdk"] + host.label("zpk") + tail + b"01" + A4_ACCOUNT)
    assert r.code == b"G1"
    assert _pin_of(host, r) == "1234"
    r = core.call(b"G0*" + host.label("bdk") + host.tokens["zpk"] + tail + b"47" + A4_ACCOUNT)
    assert (r.error, r.fields[-2:]) == (b"00", b"47")
    # A BDK destination (DUKPT to DUKPT) is not taken: hsmsvc translates to ZPKs.
    r = core.call(b"G0" + host.tokens["bdk"] + b"*" + host.tokens["bdk"] + tail + b"01" + A4_ACCOUNT)
    assert _code(r) == (b"G1", b"68")
    assert core.call(b"G0" + host.tokens["bdk"] + host.tokens["zpk"] + tail[:-2] + b"05" + b"01" + A4_ACCOUNT
                     ).error == b"23"


def test_ci_refusals(host: HostEnv, core: HostClient) -> None:
    ksn, block = A4_BLOCKS[0]
    bdk, zpk = host.tokens["bdk"], host.tokens["zpk"]

    def code(body: bytes, who: HostClient = core) -> bytes:
        r = who.call(body)
        assert r.code == b"CJ"
        return r.error

    assert code(b"CI" + bdk + zpk + b"605" + ksn + block + b"04" + A4_ACCOUNT) == b"23"  # PLUS: not taken
    assert code(b"CI" + bdk + zpk + b"605" + ksn + block + b"47" + A4_ACCOUNT) == b"23"
    assert code(b"CI" + bdk + zpk + b"6G5" + ksn + block + b"01" + A4_ACCOUNT) == b"15"
    assert code(b"CI" + bdk + zpk + b"FF5" + ksn + block + b"01" + A4_ACCOUNT) == b"15"
    assert code(b"CI" + bdk + zpk + b"605" + ksn[:-1] + b"G" + block + b"01" + A4_ACCOUNT) == b"15"
    assert code(b"CI" + bdk + zpk + b"605" + b"FFFF9876543210E00000" + block + b"01" + A4_ACCOUNT) == b"15"
    assert code(b"CI" + bdk + zpk + b"605" + ksn + block + b"01" + b"40123456789X") == b"22"
    # Keys of the wrong kind: a ZPK as the BDK, a BDK as the ZPK (the destination's code).
    assert code(b"CI" + zpk + zpk + b"605" + ksn + block + b"01" + A4_ACCOUNT) == b"29"
    assert code(b"CI" + bdk + bdk + b"605" + ksn + block + b"01" + A4_ACCOUNT) == b"29"
    assert code(b"CI" + bdk + b"L06hc.nop" + b"605" + ksn + block + b"01" + A4_ACCOUNT) == b"11"
    with host.host("branch") as branch:
        assert code(b"CI" + bdk + zpk + b"605" + ksn + block + b"01" + A4_ACCOUNT, branch) == b"10"
    with host.host("stranger") as stranger:
        assert code(b"CI" + bdk + zpk + b"605" + ksn + block + b"01" + A4_ACCOUNT, stranger) == b"17"
