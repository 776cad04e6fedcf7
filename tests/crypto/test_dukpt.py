"""TDES DUKPT (hsmsvc.crypto.dukpt) against the ANSI X9.24-1:2009 annex A.4 test data and against an
independent reference written here with pyca/cryptography and the standard library only."""

import warnings

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import dukpt
from hsmsvc.crypto.dukpt import TdesDukptKey, TdesKsn
from hsmsvc.errors import InvalidInput

H = bytes.fromhex

# ANSI X9.24-1:2009 A.4, as reproduced in openemv/dukpt test/dukpt_tdes_test.c.
BDK = H("0123456789ABCDEFFEDCBA9876543210")
IKSN = H("FFFF9876543210E00000")
IPEK = H("6AC292FAA1315B4D858AB3A3D7D5933A")
# The clear ISO format 0 PIN block of PIN 1234 and PAN 4012345678909 that A.4 enciphers.
PIN_BLOCK = H("041274EDCBA9876F")
# The message A.4 MACs (X9.19 retail MAC, zero padded, leftmost 4 bytes) and enciphers (TDES-CBC,
# zero IV, as 24 bytes: the 17 characters then zeros).
MESSAGE = b"4012345678909D987"

# (KSN, transaction key, enciphered PIN block, request MAC, response MAC, enciphered request)
# A.4.2, the initial sequence: counters 1 to 21.
INITIAL = [
    ("FFFF9876543210E00001", "042666B49184CFA368DE9628D0397BC9", "1B9C1845EB993A7A", "9CCC7817",
     "20364223", "FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F"),
    ("FFFF9876543210E00002", "C46551CEF9FD24B0AA9AD834130D3BC7", "10A01C8D02C69107", "F608A9BC",
     "D1FCA6BE", "A2B4E70F846E63D68775B7215EB4563DFD3037244C61CC13"),
    ("FFFF9876543210E00003", "0DF3D9422ACA56E547676D07AD6BADFA", "18DC07B94797B466", "20B59A4F",
     "BAD4CC9C", "BD751E65F10E75B6C1D5B1D283496A36C2DE21D993C387A7"),
    ("FFFF9876543210E00004", "279C0F6AEED0BE652B2C733E1383AE91", "0BC79509D5645DF7", "C7BFA6CC",
     "1EB08AEE", "1118F50947441BBDA3C8C70220021A12EC31CC473F7215F4"),
    ("FFFF9876543210E00005", "5F8DC6D2C845C125508DDC048093B83F", "5BC0AF22AD87B327", "0202B963",
     "5CBE3E81", "9FD7BD1EC28845ACA93367A9DA9317BD555C6B33AE22D365"),
    ("FFFF9876543210E00006", "5E415CB0BAF9F03CD0C14B63FB62FF43", "A16DF70AE36158D8", "CF6C72E6",
     "C60D38E8", "DC526613AD9095C1CEC60C41B7686ED606AC1AA2F4F54912"),
    ("FFFF9876543210E00007", "0C8F780B7C8B49D0AE84A9EB2A6CE660", "27711C16CB257F8E", "B11EB0D9",
     "053EFD39", "24700BD6F17751531F2A16CE2AF7731101E6F87839C67244"),
    ("FFFF9876543210E00008", "27F66D5244FF62E1AA6F6120EDEB4280", "50E55547A5027551", "3679055B",
     "7FACA91D", "5F6584DEAFC51B48A239B51C2DACA97176C01D9CA8EDC33C"),
    ("FFFF9876543210E00009", "27E31064FDC565698900E2057F658E7E", "536CF7F678ACFC8D", "26AA23DC",
     "37F17B8F", "7CB9080923ED4D7D8D1B8A2849331684CC910522023BE537"),
    ("FFFF9876543210E0000A", "6CF2500A22507C7CC776CEADC1E33014", "EDABBA23221833FE", "1632621C",
     "CE038CC9", "C221F5A8CA5DA909BE04938E0FB8DFCFB30ED0D62B590663"),
    ("FFFF9876543210E0000B", "3E8260BA04B2D620C01482B3819A18B7", "2328981C57B4BDBA", "76D95CB4",
     "27C9FA5E", "98A271C13E4AEE80C6343867F2F0F6C55E8B7E5645866A0B"),
    ("FFFF9876543210E0000C", "B716E1E11CF53D80726CAEE75C3A624F", "038D03CC926CF286", "BAD9D84D",
     "6D2ECC6A", "273CBE2F275B1C29D53F3C01A24DEC73F92C3BE219FFCB91"),
    ("FFFF9876543210E0000D", "E072EDF95340535FB6C581C58FBF2533", "6C8AA97088B62C68", "AAAFB598",
     "7E40B492", "7290CB9D6F6E35A9B8A34C590A93696F8FE0137A8558884C"),
    ("FFFF9876543210E0000E", "A80046087F5B8F245AAD95E18429084F", "F17C9E1D72CD4950", "4EC79532",
     "55233989", "48207931E5F6E5E3E02E7E1D7BED4E3232FCA67E66A31F61"),
    ("FFFF9876543210E0000F", "93DD5B956C4878472E453AAEFD32A5AA", "B170F6E7F7F2F64A", "82500D05",
     "AFE23CBA", "166246602B1255114A4012513B0DD4A9E19E82C945860C55"),
    ("FFFF9876543210E00010", "59598DCBD9BD94C094165CE453585F57", "D5D9638559EF53D6", "D39D3A59",
     "9E933C88", "53EDA44BDBCA037B2D3FEAEBAF73499336767BD1D0D09679"),
    ("FFFF9876543210E00011", "2B5F01F4F0CC05EA639D523231BF1BA2", "D544F8CDD292C863", "F094AF93",
     "631E7B39", "086F3F46238B99AFB35DA42029675EE1FAB1C606307B35FB"),
    ("FFFF9876543210E00012", "9CF640F279C2AEE615F725EEEAC2CBAF", "7A21BD10F36DC41D", "A819AF04",
     "E93F5E27", "270439430E60BFC600FE3DC7E7AD8C72D22D5284EC676EF2"),
    ("FFFF9876543210E00013", "C3DF489FDF1153B4F03DE97C27DC4C2F", "78649BD17D0DFA60", "79285A17",
     "FCE7A5A5", "2FEAE132FA0E46B4ABF55A87477AFA907E598868BCC236DA"),
    ("FFFF9876543210E00014", "658488507721B3F14737FA93F923CBD2", "7E7E16EA0C31AD56", "E2B2637F",
     "A10E94AA", "A16A61328E36A21858B5FBFBE7BAF7985F5C54F5B8C12298"),
    ("FFFF9876543210E00015", "E161D1956A61F6D2F37AFD7F9CC3699A", "72105C22EBC791E6", "B2033EBD",
     "BDA3AEE1", "42A9342FD5C1ACD20E137950A7368D2BBE884275B7906918"),
]
# A.4.3, the rollover sequence: counters around the change from 10 one bits to fewer.
ROLLOVER = [
    ("FFFF9876543210EFF800", "F9CDFEBF4F5B1D9EB3EC12454527E176", "33365F5CC6F23C35", "23E3CB62",
     "5776C376", "5FF8C648565975E746C0CB7B1157DCB6EC3C5F25E82F8A62"),
    ("FFFF9876543210EFF801", "5BEE92627E97825C911BF619DF72CA3B", "3A86BF003F835C9D", "97623632",
     "69D1EF47", "55374FDBB3B2B4ED0751243FC0C54DB1F3F3CF76F0C0B3C4"),
    ("FFFF9876543210EFF802", "64CA2F8AB93F61B01620B00BF77C7301", "3DB977D05C36DF3F", "72608521",
     "BF7036B7", "74A1250E3234DEDEB422FA7F862C484BBA6924DF9BC32CE5"),
    ("FFFF9876543210EFF804", "35A168695B3BA83307E871C42021DD37", "BA83243305712099", "D86687B7",
     "645A0A18", "159E9FA8E979A9C76C118C7BE9E5D436AC0B22CD098BAE1F"),
    ("FFFF9876543210EFF808", "12C380FCB72ED3C26FC6079AF63F4787", "B0DA04AC90A36D85", "5E00713D",
     "E8D8026A", "F87F61877DFF1CD39A635BEA4D15F81D30793B9157805BE4"),
    ("FFFF9876543210EFF810", "D8007C833A1E3C49C6889B97A68C54FF", "2CF02BD9C309EEDA", "1BCCF968",
     "9623FF45", "4DEA2DDA8D079F8040CAD885C29A4037E9490480256D074D"),
    ("FFFF9876543210EFF820", "A9C9FF9B735FDD49591F296B0BF0FD70", "9D1E2F77AEEE81C6", "2F6D2191",
     "FF864D19", "CE625FFBBB339C8305FA86CBFD192F4292B29962649947DD"),
    ("FFFF9876543210EFF840", "0E3E221062CB5E03A384602783A004FA", "40870B0F8BA2011C", "4DA4CBAC",
     "3CE7AD50", "29DDF3F2C3B9BE76A8338E2B22BA668B68B46AAE9C714607"),
    ("FFFF9876543210EFF880", "CA8225C587124DFBB87F279C0BE29727", "22E340D6ABB40981", "95C43BC2",
     "73D03F0B", "9E9AA50594849DEB63BC3EF3BE63C5637F03D03B0DCFA973"),
    ("FFFF9876543210EFF900", "906AAC1751D4971A144D52C76C6E1F97", "1A4C10AFBA03A430", "D6BEAA71",
     "5D461B71", "C653AFCD3245ADB3B113FFC48B46BD0B6C5B3B5FB10044EE"),
    ("FFFF9876543210EFFA00", "2B9E2CE7C2750337E10B54D2989EA6AF", "849763B43E5F9CFF", "93930C9F",
     "531DA5F9", "50EB117D8CB2BE5ADBBE98B6570C557C13622688A61D559D"),
    ("FFFF9876543210EFFC00", "F9430DF975082491C77BE4EF4FDB91EE", "DEFC6F09F8927B71", "2917C6EF",
     "AA8D2DA6", "A2C773BC45B277E3F100C37E30A6A6FB1865134815B05EBC"),
    ("FFFF9876543210F00000", "AA4D58DB653EC74A48C75F2F047DD2B5", "73EC88AD0AC5830E", "7DFA9315",
     "1444BEC3", "1E830E7F53FC171E35380145320233EF9C6F3B08CED984AB"),
]
VECTORS = INITIAL + ROLLOVER


# --- The reference: X9.24-1:2009 annex A from its text, on pyca/cryptography only ---------------

_MASK21 = (1 << 21) - 1
_C0 = H("C0C0C0C000000000C0C0C0C000000000")


def _cipher(key: bytes, mode: modes.ECB | modes.CBC) -> Cipher[modes.ECB | modes.CBC]:
    # DES is TDES with K1=K2=K3; a two-key key is K1||K2||K1. pyca warns on both short forms.
    key = key * 3 if len(key) == 8 else key + key[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Cipher(TripleDES(key), mode)


def _enc(key: bytes, data: bytes, mode: modes.ECB | modes.CBC | None = None) -> bytes:
    ctx = _cipher(key, mode or modes.ECB()).encryptor()
    return ctx.update(data) + ctx.finalize()


def _dec(key: bytes, data: bytes) -> bytes:
    ctx = _cipher(key, modes.ECB()).decryptor()
    return ctx.update(data) + ctx.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def ref_ipek(bdk: bytes, ksn: bytes) -> bytes:
    block = ksn[:7] + bytes([ksn[7] & 0xE0])
    return _enc(bdk, block) + _enc(_xor(bdk, _C0), block)


def ref_generate(key: bytes, register: bytes) -> bytes:
    # A.2, "Non-reversible Key Generation Process", its seven register steps in order.
    cr2 = _xor(_enc(key[:8], _xor(register, key[8:])), key[8:])
    key = _xor(key, _C0)
    cr1 = _xor(_enc(key[:8], _xor(register, key[8:])), key[8:])
    return cr1 + cr2


def ref_key(ipek: bytes, ksn: int) -> bytes:
    """The key of an 80-bit KSN: the key of its longest proper prefix of counter one bits (the KSN
    without its lowest one bit), taken one step on with the KSN's rightmost 64 bits."""
    if not ksn & _MASK21:
        return ipek
    return ref_generate(ref_key(ipek, ksn & (ksn - 1)), (ksn & (1 << 64) - 1).to_bytes(8, "big"))


def ref_working(txn_key: bytes, variant_byte: int, one_way: bool) -> bytes:
    """Table A-1: FF into byte ``variant_byte`` of each half; for data keys, figure A-2 after it."""
    key = bytearray(txn_key)
    key[variant_byte] ^= 0xFF
    key[8 + variant_byte] ^= 0xFF
    if one_way:
        return _enc(bytes(key), bytes(key))  # each half under the variant key, TDES-ECB
    return bytes(key)


def ref_retail_mac(key: bytes, data: bytes) -> bytes:
    # ANSI X9.19: DES-CBC under the left half, zero padding, then D(right) and E(left) on the last block.
    data += bytes(-len(data) % 8)
    h = bytes(8)
    for i in range(0, len(data), 8):
        h = _enc(key[:8], _xor(h, data[i : i + 8]))
    return _enc(key[:8], _dec(key[8:], h))


# Table A-1 by hsmsvc's names: the byte of each half the variant inverts, and whether the
# one-way function of figure A-2 follows.
VARIANTS = {
    TdesDukptKey.PIN: (7, False),
    TdesDukptKey.MAC_REQUEST: (6, False),
    TdesDukptKey.MAC_RESPONSE: (4, False),
    TdesDukptKey.DATA_REQUEST: (5, True),
    TdesDukptKey.DATA_RESPONSE: (3, True),
}


# --- Published vectors ---------------------------------------------------------------------------


def test_reference_reproduces_the_annex() -> None:
    # The oracle of the property tests below is itself checked against A.4 first.
    assert ref_ipek(BDK, IKSN) == IPEK
    for ksn, txn, *_ in VECTORS:
        assert ref_key(IPEK, int(ksn, 16)) == H(txn)


def test_initial_key() -> None:
    # A.4: the IPEK of BDK 0123...3210 and KSN FFFF9876543210E00000; any KSN of the device gives it.
    assert dukpt.initial_key(bdk=BDK, ksn=IKSN) == IPEK
    assert dukpt.initial_key(bdk=BDK, ksn=H("FFFF9876543210E00001")) == IPEK
    assert dukpt.initial_key(bdk=BDK, ksn=H("FFFF9876543210FFF800")) == IPEK


@pytest.mark.parametrize(("ksn", "txn", "pin_block", "mac_request", "mac_response", "enciphered"), VECTORS,
                         ids=[v[0][-6:] for v in VECTORS])
def test_annex_a4(ksn: str, txn: str, pin_block: str, mac_request: str, mac_response: str, enciphered: str) -> None:
    # A.4.2 and A.4.3: every KSN's transaction key, and through each working key the published
    # enciphered PIN block, request and response MACs and enciphered request.
    k = TdesKsn.parse(H(ksn))
    assert bytes(k) == H(ksn)
    key = dukpt.transaction_key(IPEK, k)
    assert key == H(txn)

    pin_key = dukpt.derive(bdk=BDK, ksn=k, kind=TdesDukptKey.PIN)
    assert pin_key == dukpt.working_key(key, TdesDukptKey.PIN)
    assert _enc(pin_key, PIN_BLOCK) == H(pin_block)
    assert _dec(pin_key, H(pin_block)) == PIN_BLOCK

    mac_key = dukpt.working_key(key, TdesDukptKey.MAC_REQUEST)
    assert ref_retail_mac(mac_key, MESSAGE)[:4] == H(mac_request)
    mac_key = dukpt.working_key(key, TdesDukptKey.MAC_RESPONSE)
    assert ref_retail_mac(mac_key, MESSAGE)[:4] == H(mac_response)

    data_key = dukpt.working_key(key, TdesDukptKey.DATA_REQUEST)
    assert _enc(data_key, MESSAGE.ljust(24, b"\0"), modes.CBC(bytes(8))) == H(enciphered)


def test_working_keys_differ() -> None:
    # A.4 gives no response data key; it must at least be none of the others.
    key = H(VECTORS[0][1])
    keys = {dukpt.working_key(key, kind) for kind in TdesDukptKey}
    assert len(keys) == len(TdesDukptKey) and key not in keys


# --- The KSN ----------------------------------------------------------------------------------------


def test_ksn_fields() -> None:
    k = TdesKsn.parse(H("FFFF9876543210EFF801"))
    assert (k.initial, k.counter) == (IKSN, 0x0FF801)
    assert TdesKsn(IKSN, 1) == TdesKsn.parse(H("FFFF9876543210E00001"))
    top = TdesKsn.parse(H("FFFF9876543210FFF800"))  # the last counter: ten one bits at the top
    assert top.counter == dukpt.MAX_COUNTER == 0x1FF800


@pytest.mark.parametrize("ksn", [
    "FFFF9876543210E00000",  # counter 0: the initial KSN
    "FFFF9876543210E007FF",  # 11 one bits
    "FFFF9876543210EFFE00",  # 11 one bits: 0FFE00, which the device skips after A.4.3's 0FFC00
    "FFFF9876543210FFF801",  # past 1FF800, the maximum
    "FFFF9876543210FFFFFF",  # 21 one bits
    "FFFF9876543210E000",  # 9 bytes
    "FFFF9876543210E0000100",  # 11 bytes
    "",
])
def test_ksn_refused(ksn: str) -> None:
    with pytest.raises(InvalidInput) as e:
        TdesKsn.parse(H(ksn))
    assert e.value.field == "ksn"


@pytest.mark.parametrize(("initial", "counter"), [
    (IKSN, 0),
    (IKSN, 1 << 21),
    (IKSN, -1),
    (IKSN, True),
    (H("FFFF9876543210E00001"), 1),  # counter bits set in the initial KSN
    (IKSN[:9], 1),
])
def test_ksn_constructor_refused(initial: bytes, counter: int) -> None:
    with pytest.raises(InvalidInput) as e:
        TdesKsn(initial, counter)
    assert e.value.field == "ksn"


def test_key_lengths_refused() -> None:
    ksn = TdesKsn(IKSN, 1)
    with pytest.raises(InvalidInput, match="bdk"):
        dukpt.initial_key(bdk=BDK[:8], ksn=IKSN)
    with pytest.raises(InvalidInput, match="ksn"):
        dukpt.initial_key(bdk=BDK, ksn=IKSN[:8])
    with pytest.raises(InvalidInput, match="ipek"):
        dukpt.transaction_key(IPEK + IPEK[:8], ksn)
    with pytest.raises(InvalidInput, match="transaction_key"):
        dukpt.working_key(IPEK[:8], TdesDukptKey.PIN)


# --- Against the reference ------------------------------------------------------------------------

counters = st.sets(st.integers(0, 20), min_size=1, max_size=10).map(lambda bits: sum(1 << b for b in bits))
initial_ksns = st.binary(min_size=10, max_size=10).map(
    lambda b: (int.from_bytes(b, "big") & ~_MASK21).to_bytes(10, "big"))


@given(st.binary(min_size=16, max_size=16), initial_ksns, counters)
def test_transaction_key_is_the_prefix_chain(bdk: bytes, initial: bytes, counter: int) -> None:
    # The key for a KSN is the one reached from the IPEK through each prefix of its counter's bits.
    ksn = TdesKsn(initial, counter)
    ipek = dukpt.initial_key(bdk=bdk, ksn=bytes(ksn))
    assert ipek == ref_ipek(bdk, initial)
    key = dukpt.transaction_key(ipek, ksn)
    assert key == ref_key(ipek, int.from_bytes(bytes(ksn), "big"))
    for kind in TdesDukptKey:
        assert dukpt.derive(bdk=bdk, ksn=ksn, kind=kind) == ref_working(key, *VARIANTS[kind])


@given(st.binary(min_size=16, max_size=16), st.sampled_from(TdesDukptKey))
def test_working_key_matches_reference(key: bytes, kind: TdesDukptKey) -> None:
    assert dukpt.working_key(key, kind) == ref_working(key, *VARIANTS[kind])
