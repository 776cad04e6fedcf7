"""TR-31 key blocks: the TR-31:2018 annex A.7 examples, round trips and tampering."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import kcv, tr31
from hsmsvc.crypto.tr31 import Header, KeyBlockAlgorithm, KeyBlockVersion
from hsmsvc.errors import InvalidInput, InvalidKeyBlock
from hsmsvc.types import Algorithm, Exportability, KeyUsage, ModeOfUse

H = bytes.fromhex

# (KBPK, key block, clear key, KCV of the key as TDES or AES); sources per row.
ANNEX = [
    # TR-31:2018 A.7.2.2, version B, TDES KBPK.
    ("DD7515F2BFC17F85CE48F3CA25CB21F6",
     "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E",
     "3F419E1CB7079442AA37474C2EFBF8B8", Algorithm.TDES_2KEY, "57C409"),
    # TR-31:2018 A.7.3.2, version B with a KS optional block, key version 12.
    ("1D22BF32387C600AD97F9B97A51311AC",
     "B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E248719E24B433627",
     "E8BC63E5479455E26577F715D587FE68", Algorithm.TDES_2KEY, "9A4212"),
    # TR-31:2018 A.7.4, version D, AES-256 KBPK, AES-128 key.
    ("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
     "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34",
     "3F419E1CB7079442AA37474C2EFBF8B8", Algorithm.AES_128, "08793E"),
    # payShield 10K, version B, K0 (openemv/tr31 test data).
    ("EFE0853B256B583D868F251CE99EA1D9",
     "B0080K0TN00N00001C414014375212C24995E405B5EE052CB92B67F455EA2680F6751088F9F1C228",
     "5DB50B454F8389ADCE573BE50861F2BF", Algorithm.TDES_2KEY, "5C9405"),
    # payShield 10K, version D holding a TDES key.
    ("41" * 32,
     "D0112B0TN00N000037DB9B046B7B0048785690759580ABC3B9842AB4BB7717B49E92528E575785D8123559376A2553B27BE94F054F4E971C",
     "1FA1F7CEC798D91545DA8AE0C7796BD9", Algorithm.TDES_2KEY, "FF5087"),
    # payShield 10K, version D holding an AES-256 key.
    ("41" * 32,
     "D0144D0AN00N0000127862F945C2DED04530FAF7CDBC8B0BA10C7AA79BD5E0C2C5D6AC173BF588E4B19ACF1357178D50EA0AB193228E13958304FC6149632DFDCADF3A5B3D57E814",
     "BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC", Algorithm.AES_256, "0A00E3"),
]


@pytest.mark.parametrize(("kbpk", "block", "key", "alg", "check"), ANNEX)
def test_annex_blocks_unwrap(kbpk: str, block: str, key: str, alg: Algorithm, check: str) -> None:
    _header, clear = tr31.unwrap(H(kbpk), block)
    assert clear == H(key)
    assert kcv.kcv(alg, clear) == H(check)


def test_annex_a732_header_fields() -> None:
    header, _ = tr31.unwrap(H(ANNEX[1][0]), ANNEX[1][1])
    assert header == Header(
        KeyBlockVersion.B, KeyUsage.BDK, KeyBlockAlgorithm.TDES, ModeOfUse.DERIVE,
        "12", Exportability.SENSITIVE, (("KS", "00604B120F9292800000"),),
    )


KBPKS = {
    KeyBlockVersion.B: st.sampled_from([16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    KeyBlockVersion.D: st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
}
opt_blocks = st.lists(
    st.tuples(
        st.text("ABCDEFGHIJKLMNOQRSTUVWXYZ0123456789", min_size=2, max_size=2).filter(lambda s: s != "PB"),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    ),
    max_size=3,
)


@pytest.mark.parametrize("version", list(KeyBlockVersion))
@given(data=st.data(), key=st.binary(min_size=8, max_size=32), opts=opt_blocks,
       usage=st.sampled_from(list(KeyUsage)), mode=st.sampled_from(list(ModeOfUse)))
def test_wrap_unwrap_round_trip(version: KeyBlockVersion, data: st.DataObject, key: bytes,
                                opts: list[tuple[str, str]], usage: KeyUsage, mode: ModeOfUse) -> None:
    kbpk = data.draw(KBPKS[version])
    header = Header(version, usage, KeyBlockAlgorithm.AES, mode, "07", Exportability.EXPORTABLE, tuple(opts))
    block = tr31.wrap(kbpk, header, key)
    assert int(block[1:5]) == len(block)
    got_header, got_key = tr31.unwrap(kbpk, block)
    assert (got_header, got_key) == (header, key)


def test_key_length_obfuscation() -> None:
    kbpk = H("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6")
    h = Header(KeyBlockVersion.D, KeyUsage.DATA, KeyBlockAlgorithm.AES, ModeOfUse.ENCRYPT_DECRYPT)
    short = tr31.wrap(kbpk, h, bytes(16), pad_to=32)
    long = tr31.wrap(kbpk, h, bytes(32))
    assert len(short) == len(long)
    assert tr31.unwrap(kbpk, short)[1] == bytes(16)


@given(st.data())
def test_any_tampered_character_is_rejected(data: st.DataObject) -> None:
    kbpk, block = H(ANNEX[0][0]), ANNEX[0][1]
    pos = data.draw(st.integers(16, len(block) - 1))
    new = data.draw(st.sampled_from("0123456789ABCDEF").filter(lambda c: c != block[pos]))
    with pytest.raises(InvalidKeyBlock) as e:
        tr31.unwrap(kbpk, block[:pos] + new + block[pos + 1:])
    # One message for every fault after the header: no oracle.
    assert str(e.value) == "key_block: key block invalid"


@pytest.mark.parametrize("pos", range(5, 16))
def test_tampered_header_fails_mac_or_parse(pos: int) -> None:
    kbpk, block = H(ANNEX[0][0]), ANNEX[0][1]
    swap = {"P": "M", "0": "1", "T": "A", "E": "D"}
    ch = swap.get(block[pos], "0")
    if ch == block[pos]:
        ch = "1"
    with pytest.raises(InvalidKeyBlock):
        tr31.unwrap(kbpk, block[:pos] + ch + block[pos + 1:])


def test_wrong_kbpk_rejected() -> None:
    with pytest.raises(InvalidKeyBlock):
        # F6 to F7 would flip only a DES parity bit, which the cipher ignores.
        tr31.unwrap(H("DD7515F2BFC17F85CE48F3CA25CB21E6"), ANNEX[0][1])


@pytest.mark.parametrize(
    "block",
    ["", "B0080", "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701",
     "C0072K0TN00N0000C9B875FF7A5316BF221C09ED52080DE0B45632A4EA9CE87699CB565E",
     ANNEX[0][1][:-2], ANNEX[0][1] + "00", "B0080P0TE00E0000" + "zz" * 32],
)
def test_malformed_blocks_rejected(block: str) -> None:
    with pytest.raises(InvalidKeyBlock):
        tr31.unwrap(H(ANNEX[0][0]), block)


def test_kbpk_must_match_version() -> None:
    with pytest.raises(InvalidInput) as e:
        tr31.unwrap(bytes(32), ANNEX[0][1])
    assert e.value.field == "kbpk"


def test_header_rejects_bad_fields() -> None:
    with pytest.raises(InvalidInput):
        Header(KeyBlockVersion.D, KeyUsage.DATA, KeyBlockAlgorithm.AES, ModeOfUse.ENCRYPT_DECRYPT, key_version="0")
    with pytest.raises(InvalidInput):
        Header(KeyBlockVersion.D, KeyUsage.DATA, KeyBlockAlgorithm.AES, ModeOfUse.ENCRYPT_DECRYPT,
               optional_blocks=(("PB", "0000"),))
