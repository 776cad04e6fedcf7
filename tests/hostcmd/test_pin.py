"""PIN host commands (CA, CC, DA, EA, DC, EC) through the real listener.

Published examples: nickntg/thalessimulatorlibrary, ThalesCore.Tests/HostCommandTests.vb
(TestTranslatePINFromTPKToZMK, TestVerifyTerminalPINUsingVISAAlgorithm,
TestVerifyInterchangePINUsingVISAAlgorithm), under the Thales variant test LMK, whose keys
testlmk.py decodes. Their PIN is 1234 for account 550000025321. Other replies are checked with
tests/reference.py (pyca/cryptography). The reply's PIN length field is the request's maximum
PIN length: hsmsvc never releases a PIN's length (docs/host-commands.md, "Deviations").
"""

from __future__ import annotations

import secrets

import grpc
import pytest

from hsmsvc_client import ClientError

from tests import reference as ind
from tests.hostcmd.conftest import TABLE, HostEnv, bound_to

ACCOUNT = b"550000025321"
PAN = ind.luhn_pan("5" + ACCOUNT.decode())


def test_ca_translates_the_examples_block_byte_for_byte(host: HostEnv) -> None:
    # TestTranslatePINFromTPKToZMK: U8463435F… U1EF828AA… 12 6428EB94035AF53B 01 01 550000025321
    #   -> 04 91DDDA0A7C12CFAA 01
    with host.host() as c:
        r = c.call(b"CA" + host.tokens["tpk"] + host.tokens["zpk"] + b"12" + b"6428EB94035AF53B0101" + ACCOUNT)
    assert (r.code, r.error, r.fields) == (b"CB", b"00", b"12" + b"91DDDA0A7C12CFAA" + b"01")


def test_cc_translates_to_format_3_and_the_result_deciphers(host: HostEnv) -> None:
    with host.host() as c:
        r = c.call(b"CC" + host.tokens["zpk"] + host.tokens["zpk-b"] + b"12" + b"91DDDA0A7C12CFAA0147" + ACCOUNT)
    assert (r.code, r.error, r.fields[-2:]) == (b"CD", b"00", b"47")
    plain = ind.tdes_ecb(host.clear["zpk-b"], bytes.fromhex(r.fields[2:18].decode()), decrypt=True)
    field = ind.xor(plain, ind.iso0_pan_field(PAN)).hex().upper()
    assert field[:6] == "341234" and all(ch in "ABCDEF" for ch in field[6:])


def test_cc_format_4_under_aes_keys(host: HostEnv) -> None:
    pan = ind.luhn_pan("4" + "".join(secrets.choice("0123456789") for _ in range(17)))
    block = ind.iso4_encipher("AES", host.clear["zpk-aes"], ind.iso4_pin_field("98765", secrets.token_bytes(8)), pan)
    with host.host() as c:
        r = c.call(b"CC" + host.tokens["zpk-aes"] + host.tokens["zpk-aes-b"] + b"12" + block.hex().upper().encode()
                   + b"4848" + pan.encode())
    assert (r.code, r.error, r.fields[-2:]) == (b"CD", b"00", b"48")
    field = ind.iso4_decipher("AES", host.clear["zpk-aes-b"], bytes.fromhex(r.fields[2:34].decode()), pan)
    assert field.hex().upper().startswith("4598765AA")


def test_labels_name_stored_keys(host: HostEnv) -> None:
    with host.host() as c:
        r = c.call(b"CA" + host.label("tpk") + host.label("zpk") + b"126428EB94035AF53B0101" + ACCOUNT)
    assert r.fields == b"1291DDDA0A7C12CFAA01"


def test_dc_and_ec_verify_the_examples_pvv(host: HostEnv) -> None:
    # DC: U8463435F… X367930344805B1FA… 028DCC093FB0471F 03 … is Diebold; its format 01 sibling:
    # the TPK's block 6428EB94035AF53B (format 01, PIN 1234), PVKI 1, PVV 4402 (DG gives 4402).
    with host.host() as c:
        dc = c.call(b"DC" + host.tokens["tpk"] + host.tokens["pvk"] + b"6428EB94035AF53B01" + ACCOUNT + b"14402")
        # EC: U1EF828AA… X36793034… 91DDDA0A7C12CFAA 01 550000025321 1 4402 -> 00; 4401 -> 01.
        ec = c.call(b"EC" + host.tokens["zpk"] + host.tokens["pvk"] + b"91DDDA0A7C12CFAA01" + ACCOUNT + b"14402")
    assert (dc.code, dc.error, ec.code, ec.error) == (b"DD", b"00", b"ED", b"00")
    assert ind.visa_pvv(host.clear["pvk"], PAN, 1, "1234") == "4402"


def _fresh_pan() -> str:
    return ind.luhn_pan("9" + "".join(secrets.choice("0123456789") for _ in range(14)))


def _zpk_block(h: HostEnv, pin: str, pan: str) -> bytes:
    return ind.tdes_ecb(h.clear["zpk"], ind.iso0(pin, pan)).hex().upper().encode()


def test_ea_verifies_an_ibm_offset(host: HostEnv) -> None:
    pan = _fresh_pan()
    account = pan[-13:-1].encode()
    validation = pan[-13:-1][:11] + "N"  # N: the account's last five digits, as payShield inserts them
    data = (pan[-13:-1][:11] + pan[-6:-1])[:16].ljust(16, "F")
    offset = ind.ibm3624_offset(host.clear["pvk-ibm"], data, TABLE, "4321")
    with host.host() as c:
        ok = c.call(b"EA" + host.tokens["zpk"] + host.tokens["pvk-ibm"] + b"12" + _zpk_block(host, "4321", pan)
                    + b"0104" + account + TABLE.encode() + validation.encode() + offset.encode().ljust(12, b"F"))
        bad_table = c.call(b"EA" + host.tokens["zpk"] + host.tokens["pvk-ibm"] + b"12" + _zpk_block(host, "4321", pan)
                           + b"0104" + account + b"9876543210123456" + validation.encode()
                           + offset.encode().ljust(12, b"F"))
    assert (ok.code, ok.error) == (b"EB", b"00")
    assert bad_table.error == b"25", "the table is the PVK's own: another is refused before any PIN is touched"


def test_wrong_pins_count_with_the_grpc_door(host: HostEnv) -> None:
    """One card's failed attempts are one count, whichever door they come through."""
    pan = _fresh_pan()
    pvv = ind.visa_pvv(host.clear["pvk"], pan, 1, "1234").encode()
    account = pan[-13:-1].encode()

    def ec(pin: str) -> bytes:
        with host.host() as c:
            return c.call(b"EC" + host.tokens["zpk"] + host.tokens["pvk"] + _zpk_block(host, pin, pan) + b"01"
                          + account + b"1" + pvv).error

    assert ec("1111") == b"01"
    assert ec("2222") == b"01"
    client = host.grpc()

    def grpc_verify() -> bool:
        return client.verify_pin_pvv("alias:hc.zpk", bytes.fromhex(_zpk_block(host, "3333", pan).decode()), pan,
                                     "alias:hc.pvk", 1, pvv.decode())

    assert grpc_verify() is False
    assert ec("1234") == b"39", "the limit reached through gRPC holds on the host door"
    with pytest.raises(ClientError) as e:
        grpc_verify()
    assert e.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("tail, code", [
    (b"126428EB94035AF53B9901" + ACCOUNT, b"23"),  # unknown source format
    (b"126428EB94035AF53B0199" + ACCOUNT, b"23"),  # unknown destination format
    (b"126428EB94035AF53B0101" + b"55000002532X", b"22"),  # account not digits
    (b"126428EB94035AF53B0101" + ACCOUNT[:-1], b"22"),  # short
    (b"126428EB94035AF53B0101" + ACCOUNT + b"0", b"15"),  # over-long
    (b"126428EB94035AF5ZZ0101" + ACCOUNT, b"15"),  # not hex
    (b"1X6428EB94035AF53B0101" + ACCOUNT, b"15"),  # length not digits
])
def test_ca_bad_fields_get_their_codes(host: HostEnv, tail: bytes, code: bytes) -> None:
    with host.host() as c:
        r = c.call(b"CA" + host.tokens["tpk"] + host.tokens["zpk"] + tail)
        assert (r.code, r.error, r.fields) == (b"CB", code, b"")
        assert c.call(b"NC").error == b"00", "the connection survives"


def test_key_refusals_name_source_or_destination(host: HostEnv) -> None:
    tail = b"126428EB94035AF53B0101" + ACCOUNT
    with host.host() as c:
        assert c.call(b"CA" + host.tokens["zpk"] + host.tokens["zpk"] + tail).error == b"29", "a ZPK is no TPK"
        assert c.call(b"CA" + host.tokens["tpk"] + host.tokens["tpk"] + tail).error == b"29", "a TPK enciphers no PIN"
        assert c.call(b"CA" + host.tokens["tpk"] + b"L05hc.no" + tail).error == b"11"
        assert c.call(b"CA" + b"L05hc.no" + host.tokens["zpk"] + tail).error == b"10"
    with host.host("branch") as c:
        assert c.call(b"CA" + host.tokens["tpk"] + host.tokens["zpk"] + tail).error == b"10"
    with host.host("stranger") as c:
        assert c.call(b"CA" + host.tokens["tpk"] + host.tokens["zpk"] + tail).error == b"17"


def test_a_connection_without_a_certificate_is_its_sources(host: HostEnv) -> None:
    tail = b"126428EB94035AF53B0101" + ACCOUNT
    body = b"CA" + host.tokens["tpk"] + host.tokens["zpk"] + tail
    with host.host(None) as c:  # from 127.0.0.1: no principal
        assert c.call(body).error == b"17"
    c = bound_to("127.0.0.2", host.host_port, host.tls(None))  # the configured source: "core"
    try:
        assert c.call(body).fields == b"1291DDDA0A7C12CFAA01"
    finally:
        c.close()


def test_be_and_bc_compare_with_the_host_databases_pin(host: HostEnv) -> None:
    pan = _fresh_pan()
    account = pan[-13:-1]
    client = host.grpc()
    from hsmsvc_client.v1 import pin_service_pb2 as m
    from hsmsvc_client.v1 import types_pb2 as pb
    stored = client.pins.EncryptPinForStorage(m.EncryptPinForStorageRequest(
        key=pb.KeyRef(alias="hc.zpk"), format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=bytes.fromhex(_zpk_block(host, "2580", pan).decode()), pan=pan, psk=pb.KeyRef(alias="hc.psk"),
        account=account))
    assert stored.method == pb.STORED_PIN_METHOD_ENCRYPTED
    field = host.label("psk") + b"E%02d" % (2 * len(stored.stored_pin)) + stored.stored_pin.hex().upper().encode()
    tpk_block = ind.tdes_ecb(host.clear["tpk"], ind.iso0("2580", pan)).hex().upper().encode()
    with host.host() as c:
        be = c.call(b"BE" + host.tokens["zpk"] + _zpk_block(host, "2580", pan) + b"01" + account.encode() + field)
        bc = c.call(b"BC" + host.tokens["tpk"] + tpk_block + b"01" + account.encode() + field)
        wrong = c.call(b"BE" + host.tokens["zpk"] + _zpk_block(host, "2581", pan) + b"01" + account.encode() + field)
        bad = c.call(b"BE" + host.tokens["zpk"] + _zpk_block(host, "2580", pan) + b"01" + account.encode()
                     + host.label("psk") + b"X02AB")
    assert (be.code, be.error, bc.code, bc.error, wrong.error, bad.error) == (b"BF", b"00", b"BD", b"00", b"01", b"15")


# The SM4 "ANSI X9.8 with the PAN" block, 32 hex digits, as published with its plain block
# (blog.csdn.net/M_Kerry/article/details/104625499): PIN 123654, PAN 6230606601007726888.
SM4_PIN, SM4_PAN, SM4_PLAIN = "123654", "6230606601007726888", "06123654FFFFFFFFFFFF99FEFF88D977"


def test_format_01_under_sm4_keys_is_the_widened_32h_block(host: HostEnv) -> None:
    pin_field = bytes.fromhex(f"0{len(SM4_PIN)}{SM4_PIN}".ljust(32, "F"))
    pan_field = bytes.fromhex(SM4_PAN[-13:-1].rjust(32, "0"))
    assert ind.xor(pin_field, pan_field).hex().upper() == SM4_PLAIN  # the reference builds the example's block
    block = ind.ecb("SM4", host.clear["zpk-sm4"], bytes.fromhex(SM4_PLAIN))
    account = SM4_PAN[-13:-1].encode()
    with host.host() as c:
        sm4 = c.call(b"CC" + host.tokens["zpk-sm4"] + host.tokens["zpk-sm4-b"] + b"12" + block.hex().upper().encode()
                     + b"0101" + account)
        tdes = c.call(b"CC" + host.tokens["zpk-sm4"] + host.tokens["zpk-b"] + b"12" + block.hex().upper().encode()
                      + b"0101" + account)
    assert (sm4.code, sm4.error, sm4.fields[:2], sm4.fields[-2:]) == (b"CD", b"00", b"12", b"01")
    out = ind.ecb("SM4", host.clear["zpk-sm4-b"], bytes.fromhex(sm4.fields[2:34].decode()), decrypt=True)
    assert out.hex().upper() == SM4_PLAIN
    assert tdes.error == b"00" and len(tdes.fields) == 2 + 16 + 2, "to a TDES ZPK: ISO 0, 16H"
    plain = ind.tdes_ecb(host.clear["zpk-b"], bytes.fromhex(tdes.fields[2:18].decode()), decrypt=True)
    assert ind.decode_iso0(plain, SM4_PAN) == SM4_PIN


def _ea(host: HostEnv, block: bytes, fmt: bytes, pan: str, check_length: int, offset: str) -> bytes:
    account = pan[-13:-1]
    validation = account[:11] + "N"
    with host.host() as c:
        return c.call(b"EA" + host.tokens["zpk"] + host.tokens["pvk-ibm"] + b"12" + block.hex().upper().encode() + fmt
                      + b"%02d" % check_length + account.encode() + TABLE.encode() + validation.encode()
                      + offset.encode().ljust(12, b"F")).error


def test_an_offset_longer_than_the_pin_is_a_counted_mismatch(host: HostEnv) -> None:
    """Issue 36's third review: a check length past the PIN's was refused (15) after decipherment,
    uncounted, even on a locked card: the PIN's length for free. Now it is a mismatch like any other."""
    pan = _fresh_pan()
    block = ind.tdes_ecb(host.clear["zpk"], ind.iso0("4321", pan))
    assert _ea(host, block, b"01", pan, 6, "123456") == b"01"
    assert _ea(host, block, b"01", pan, 5, "12345") == b"01"
    assert _ea(host, block, b"01", pan, 4, "1234") == b"01"
    assert {_ea(host, block, b"01", pan, n, "1234567890AB"[:n].replace("A", "0").replace("B", "1"))
            for n in (4, 5, 6, 7, 12)} == {b"39"}, "a locked card answers alike at every length"


def test_one_captured_block_is_counted_whatever_account_it_is_sent_with(host: HostEnv) -> None:
    """Issue 36's third review: the account picked the counter, and a format 3 block's fill bits
    gave 2^10 accounts that decode it alike (a format 1 block binds none at all). The block itself
    is now counted too, under its key's value."""
    block = ind.tdes_ecb(host.clear["zpk"], ind.iso1("4321"))
    answers = [_ea(host, block, b"05", _fresh_pan(), 4, f"{g:04d}") for g in (1, 2, 3, 4)]
    assert answers[:3] == [b"01"] * 3 and answers[3] == b"39", answers


def test_customers_sharing_validation_data_do_not_lock_each_other(host: HostEnv) -> None:
    """Issue 36's fifth review: a counter under the validation data (0e1d854, withdrawn) locked every
    card of an issuer whose validation data is a constant after any three typos."""
    constant = "9512666294FF"

    def ea(pan: str, pin: str, offset: str) -> bytes:
        with host.host("fuzzer") as c:
            return c.call(b"EA" + host.tokens["zpk"] + host.tokens["pvk-ibm"] + b"12" + _zpk_block(host, pin, pan)
                          + b"01" + b"04" + pan[-13:-1].encode() + TABLE.encode() + constant.encode()
                          + offset.encode().ljust(12, b"F")).error

    offset = ind.ibm3624_offset(host.clear["pvk-ibm"], constant.ljust(16, "F"), TABLE, "7777")
    customers = [_fresh_pan() for _ in range(4)]
    assert [ea(p, "1111", offset) for p in customers[:3]] == [b"01"] * 3
    assert ea(customers[3], "7777", offset) == b"00"
