"""Key management host commands (A0, A6, A8, FA, BU, HC) through the real listener.

Published examples: nickntg/thalessimulatorlibrary, ThalesCore.Tests/HostCommandTests.vb
(TestImportKey, TestExportKey, TestGenerateCheckValueBU), made under the Thales variant test LMK;
their keys are decoded by testlmk.py and formed in hsmsvc before the server starts, so each
example's wire fields other than the key under the LMK (which is hsmsvc's own) are compared
byte for byte. Other replies are checked against tests/reference.py (pyca/cryptography).
"""

from __future__ import annotations

import pytest

from tests import reference as ind
from tests.hostcmd.conftest import HostEnv


def _kcv(h: HostEnv, token: bytes, name: str = "core") -> bytes:
    with h.host(name) as c:
        r = c.call(b"BUFF1" + token + b";001;001")
    assert (r.code, r.error) == (b"BV", b"00"), r
    return r.fields


def test_a6_imports_the_examples_key_under_a_variant_zmk(host: HostEnv) -> None:
    # TestImportKey: A6 001 U71979DEB… U482C4E722BB0CF1845E1E5BD16310119 U -> KCV ABDEBC.
    with host.host("manager") as c:
        r = c.call(b"A6001" + host.tokens["zmk-a6"] + b"U482C4E722BB0CF1845E1E5BD16310119U$ABDEBC")
        # An ECB form binds no key type: hsmsvc imports it only with the sender's check value.
        bare = c.call(b"A6001" + host.tokens["zmk-a6"] + b"U482C4E722BB0CF1845E1E5BD16310119U")
        wrong = c.call(b"A6001" + host.tokens["zmk-a6"] + b"U482C4E722BB0CF1845E1E5BD16310119U$ABDEBD")
    # No check value is a malformed request (15); a wrong one is a fault found after decipherment,
    # which has one code whatever the fault (A4, as a key block that fails).
    assert (bare.code, bare.error, wrong.error) == (b"A7", b"15", b"A4")
    assert (r.code, r.error) == (b"A7", b"00")
    token, kcv = r.fields[:-6], r.fields[-6:]
    assert kcv == b"ABDEBC"
    assert token.startswith(b"S")
    assert _kcv(host, token) == b"ABDEBC"


def test_a6_imports_the_examples_x917_key(host: HostEnv) -> None:
    # TestImportKey: … XC8E3118AFA853807EB7E92294663A5BA U -> KCV 6F1E3F.
    with host.host("manager") as c:
        r = c.call(b"A6001" + host.tokens["zmk-a6-x917"] + b"XC8E3118AFA853807EB7E92294663A5BAU$6F1E3F")
    assert (r.error, r.fields[-6:]) == (b"00", b"6F1E3F")


def test_a6_refuses_a_scheme_that_is_not_the_zmks_form(host: HostEnv) -> None:
    with host.host("manager") as c:
        r = c.call(b"A6001" + host.tokens["zmk-a6"] + b"XC8E3118AFA853807EB7E92294663A5BAU")
    assert (r.code, r.error, r.fields) == (b"A7", b"26", b"")


def test_a8_exports_the_examples_tpk_byte_for_byte(host: HostEnv) -> None:
    # TestExportKey: A8 002 U1457FF6A… U8463435F… U -> U2C62A23D001B97412950CD8BE66C7639 070753.
    with host.host("manager") as c:
        r = c.call(b"A8002" + host.tokens["tmk-a8"] + host.tokens["tpk"] + b"U")
    assert (r.code, r.error, r.fields) == (b"A9", b"00", b"U2C62A23D001B97412950CD8BE66C7639070753")


def test_a8_refuses_a_key_of_another_type_code(host: HostEnv) -> None:
    with host.host("manager") as c:
        r = c.call(b"A8001" + host.tokens["tmk-a8"] + host.tokens["tpk"] + b"U")
    assert (r.code, r.error) == (b"A9", b"04")


def test_fa_translates_a_zpk_with_either_check_value(host: HostEnv) -> None:
    wrapped = b"U482C4E722BB0CF1845E1E5BD16310119"
    with host.host("manager") as c:
        full = c.call(b"FA" + host.tokens["zmk-a6"] + wrapped + b"$ABDEBC")
        short = c.call(b"FA" + host.tokens["zmk-a6"] + wrapped + b";XU1$ABDEBC")
    assert (full.code, full.error, full.fields[-16:]) == (b"FB", b"00", b"ABDEBC0000000000")
    assert (short.error, short.fields[-6:]) == (b"00", b"ABDEBC")


def test_bu_gives_the_examples_check_value(host: HostEnv) -> None:
    # TestGenerateCheckValueBU: 01 1 U1EF828AA… -> 6F1E3F74F826B7EB; hsmsvc releases six digits.
    with host.host("core") as c:
        full = c.call(b"BU011" + host.tokens["zpk"])
        short = c.call(b"BU011" + host.tokens["zpk"] + b";001")
        labelled = c.call(b"BU011" + host.label("zpk") + b";001")
    assert (full.code, full.error, full.fields) == (b"BV", b"00", b"6F1E3F0000000000")
    assert short.fields == labelled.fields == b"6F1E3F"


def test_a0_generates_and_exports_under_a_zmk(host: HostEnv) -> None:
    with host.host("manager") as c:
        r = c.call(b"A01001U" + host.tokens["zmk-a8"] + b"U")
    assert (r.code, r.error) == (b"A1", b"00")
    token, under_zmk, kcv = r.fields[:-39], r.fields[-39:-6], r.fields[-6:]
    assert under_zmk[:1] == b"U"
    clear = ind.payshield_variant_unwrap(host.clear["zmk-a8"], bytes.fromhex(under_zmk[1:].decode()))
    assert ind.tdes_kcv(clear)[:3].hex().upper().encode() == kcv
    assert _kcv(host, token) == kcv


def test_a0_generates_a_key_block_key(host: HostEnv) -> None:
    with host.host("manager") as c:
        r = c.call(b"A00FFFS%00#P0T2B00E00")
    assert (r.code, r.error) == (b"A1", b"00")
    assert _kcv(host, r.fields[:-6]) == r.fields[-6:]


def test_hc_gives_a_tpk_under_the_terminals_tmk(host: HostEnv) -> None:
    with host.host("manager") as c:
        r = c.call(b"HC" + host.tokens["tmk"] + b";XU1")
    assert (r.code, r.error) == (b"HD", b"00")
    under_tmk, token = r.fields[:33], r.fields[33:]
    clear = ind.payshield_variant_unwrap(host.clear["tmk"], bytes.fromhex(under_tmk[1:].decode()))
    assert _kcv(host, token) == ind.tdes_kcv(clear)[:3].hex().upper().encode()


@pytest.mark.parametrize("body, code", [
    (b"A00ZZZU", b"04"),  # unknown key type
    (b"A00001Q", b"26"),  # unknown key scheme
    (b"A02001U", b"15"),  # unknown mode
    (b"A00001", b"26"),  # short
    (b"A00001U;", b"15"),  # a cut option
])
def test_a0_bad_fields_get_their_codes(host: HostEnv, body: bytes, code: bytes) -> None:
    with host.host("manager") as c:
        r = c.call(body)
        assert (r.code, r.error, r.fields) == (b"A1", code, b"")
        assert c.call(b"NC").error == b"00", "the connection survives"


def test_key_management_is_the_managers(host: HostEnv) -> None:
    with host.host("core") as c:
        assert c.call(b"A00001U").error == b"17"
        assert c.call(b"A6001" + host.tokens["zmk-a6"] + b"U482C4E722BB0CF1845E1E5BD16310119U").error == b"17"


def test_another_hsms_lmk_cryptogram_is_a_key_scheme_error(host: HostEnv) -> None:
    with host.host("core") as c:
        r = c.call(b"BU011U1EF828AA8F6B80EB83E19FBC373F3A85")
    assert r.error == b"26"


def test_a_tampered_or_foreign_cryptogram_is_no_key(host: HostEnv) -> None:
    token = bytearray(host.tokens["zpk"])
    token[-20] = ord("0") if token[-20] != ord("0") else ord("1")
    with host.host("core") as c:
        assert c.call(b"BU011" + bytes(token)).error == b"10"
    with host.host("branch") as c:  # outside its patterns: answered as no such key
        assert c.call(b"BU011" + host.tokens["zpk"]).error == b"10"
        assert c.call(b"BU011" + host.tokens["branch.zpk"] + b";001").error == b"00"


def test_generating_and_exporting_needs_both_grants(host: HostEnv) -> None:
    with host.host("generator") as c:  # a manager narrowed to KeyService.GenerateKey
        assert c.call(b"A00001U").error == b"00"
        assert c.call(b"A01001U" + host.tokens["zmk-a8"] + b"U").error == b"17"
        assert c.call(b"HC" + host.tokens["tmk"]).error == b"17"


def test_key_management_by_host_command_is_in_the_audit(host: HostEnv) -> None:
    import psycopg

    with host.host("manager") as c:
        made = c.call(b"A00001U")
        exported = c.call(b"A8001" + host.tokens["zmk-a8"] + host.tokens["zpk"] + b"U")
    assert made.error == exported.error == b"00"
    url = host.store_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT actor, action, key_id, detail FROM audit ORDER BY seq DESC LIMIT 20").fetchall()
    assert ("manager", "key.export", "hc.zpk") in {(a, b, k) for a, b, k, _ in rows}
    generated = [r for r in rows if r[1] == "key.generate" and r[0] == "manager"]
    assert generated, rows
    assert made.fields[-6:].decode() in generated[0][3], "the audit row names the new key's check value"


def test_a_zpk_given_out_may_not_come_back_as_a_mak_or_dek(host: HostEnv) -> None:
    """Issue 36's review: A8 gave a ZPK under a variant ZMK that also carries MAKs and DEKs; A6 took
    the same ciphertext back as a MAK, whose one-block X9.19 MAC enciphers chosen PIN blocks."""
    with host.host("manager") as c:
        out = c.call(b"A8001" + host.tokens["zmk-a6"] + host.tokens["zpk"] + b"U")
        assert out.error == b"00"
        wrapped, kcv = out.fields[:-6], out.fields[-6:]
        for code in (b"008", b"00B", b"00A"):
            r = c.call(b"A6" + code + host.tokens["zmk-a6"] + wrapped + b"U$" + kcv)
            assert (r.code, r.error) == (b"A7", b"29"), code
        again = c.call(b"A6001" + host.tokens["zmk-a6"] + wrapped + b"U$" + kcv)
    assert again.error == b"00", "the same type again is a re-import"


def test_a_key_made_whose_export_is_refused_is_left_revoked(host: HostEnv) -> None:
    """Issue 36's review: A0 mode 1 of a BDK (no legacy form may carry one) answered 29 and left an
    active, exportable BDK behind. The key made is now revoked, and audited so."""
    import psycopg

    with host.host("manager") as c:
        r = c.call(b"A01009U" + host.tokens["zmk-a8"] + b"U")
    assert (r.code, r.error) == (b"A1", b"29")
    url = host.store_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as db:
        made = db.execute("SELECT key_id FROM audit WHERE action = 'key.generate' AND actor = 'manager' "
                          "ORDER BY seq DESC LIMIT 1").fetchone()
        assert made is not None
        state = db.execute("SELECT state, key_type FROM keys WHERE key_id = %s", (made[0],)).fetchone()
    assert state == ("REVOKED", "BDK")
