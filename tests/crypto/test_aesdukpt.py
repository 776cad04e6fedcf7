"""AES DUKPT (hsmsvc.crypto.aesdukpt) against the ANSI X9.24-3:2017 supplement's test vectors and
against an independent reference written here with pyca/cryptography and the standard library only."""

import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import aesdukpt
from hsmsvc.crypto.aesdukpt import AesKsn, DukptKeyUsage
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

H = bytes.fromhex

# ANSI X9.24-3:2017 supplement test vectors, as reproduced in openemv/dukpt test/dukpt_aes128_test.c
# (AES-128 BDK) and test/dukpt_aes256_test.c (AES-256 BDK).
IKID = H("1234567890123456")
BDK128 = H("FEDCBA9876543210F1F1F1F1F1F1F1F1")
IK128 = H("1273671EA26AC29AFA4D1084127652A1")
BDK256 = BDK128 * 2
IK256 = H("CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F")
# "Calculation of AES PIN Block Format 4": the plain-text PIN field (PIN 1234, its random fill) and
# the PAN field (PAN 4111111111111111) the supplement enciphers under each PIN key.
PIN_FIELD = H("441234AAAAAAAAAA2F69ADDE2E9E7ACE")
PAN_FIELD = H("44111111111111111000000000000000")

# (KSN, transaction key, PIN key, MAC generation key, data encryption key, all AES-128;
#  the enciphered ISO format 4 PIN block)
AES128_FIRST = [
    ("123456789012345600000001", "4F21B565BAD9835E112B6465635EAE44", "AF8CB133A78F8DC2D1359F18527593FB",
     "A2DC23DE6FDE0824A2BC321E08E4B8B7", "A35C412EFD41FDB98B69797C02DCD08F", "A912150391AB65A67E52883D81CE2D15"),
    ("123456789012345600000002", "2F34D68DE10F68D38091A73B9E7C437C", "D30BDC73EC9714B000BEC66BDB7B6D09",
     "484C3B06E8562704528CD5B46FB12FB6", "D639514AA33AC43AD9229E433D6D4E5B", "52A00503BD34BA1383F6A7EE9FE2547F"),
    ("123456789012345600000003", "031504E530365CF81264238540518318", "7D69F01F3B45449F62C7816ECE723268",
     "A5DF7D9D800CA769766F0C77CA4E6E6C", "EF17F6AB45B4820C93A3DCB21BC491AD", "A5A27E82B43A9A866A93D7ABE89CEF93"),
    ("123456789012345600000004", "0EEFC7ADA628BA68878DA9165A8A1887", "91A0588318EC2673214271F70137896E",
     "E6E4679647D8A9057C1FC15537CB4C4E", "B3BD44C08BB6BA27C3BB4711D7D70387", "71B3D0528669498777555A8BE6698E44"),
    ("123456789012345600000005", "C2A7AC328A5DA2D6002D62465BFC028B", "35A43BC9EFEB09C756204B57E3FB7D4D",
     "0588185FE1FF8C7E22FAD78C1C61F065", "CA02DF6F30B39E14BD0B4A30E460920F", "881A7F77A2E04E5BEA985E342FD0B628"),
    ("123456789012345600000006", "D30F7D9351DA58448A2F5E92B4EE3B7D", "02DCC6CD1201A3A2CA7099559C862123",
     "7B60F72A5639C0EE7EB2100FA80BB793", "C9B8A7C4E486180B2229115164F0B293", "BDC1C3871AFB0B340AA5B5CEFD08695E"),
    ("123456789012345600000007", "A8253CEED9AC042C54F75D35C8352278", "6ECF912F3B18CA11A7A27BB60705FD09",
     "BAA08CA263C69525BC6B1BA8F4275D69", "0FA8F1F0A2DD7B1005A862D77CDED698", "4A8E6B8C7DBEE6CBA6DC774F0CB83396"),
    ("123456789012345600000008", "718EE6CF0B27E53D5F7AF99C4D8146A2", "4D9DF3FBEE3448FC3E676D04320A90F5",
     "6FD572E5D59E618875F193484F9178FB", "650F34204ABD4E57764D61AC3D266FB1", "8308BB857C17F390369F761F8EB358FA"),
]
AES128_LATER = [
    ("12345678901234560001FFFE", "E21E8C8D347F8561A2BE752DAA85A111"),
    ("123456789012345600020000", "F7AE9025468A25D37B7249CFFED224C8"),
    ("123456789012345600020001", "692C8EA4013645135B36497131DF9D2C"),
    ("1234567890123456FFFE2000", "48E585B694EB0B18D5C35443E163C0BA"),
    ("1234567890123456FFFE4000", "396C2C7CA1EA701C03B86B7D41F0C562"),
    ("1234567890123456FFFE8000", "0387625F189B58AE03EF0E8CCA41105E"),
    ("1234567890123456FFFF0000", "F6BA59389BD14A9855BE9727E7C52E3C"),
]
AES256_LATER = [
    ("12345678901234560001FFFE", "A289508CBF1228452CD86AB77B15CB35577AC828C18BB66681E5A16D6C9CCED3"),
    ("123456789012345600020000", "D62DDA94A47D7DA5D763443B4ECB15EA8DD62E0E4F915958BA459591F8312E37"),
    ("123456789012345600020001", "44110A1102748D4A3AC326F53D8CAC650212590CA7126D54546DDE0F20E89CEE"),
    ("1234567890123456FFFE2000", "4625EB06E4886D4AFCC9AE37ED4F4E4E1653C9E60E3F24742A87A26AA96AB7A6"),
    ("1234567890123456FFFE4000", "FF20E1BB575539ACCB44E3111BE8757F83AE8549A2DD71B441A4A424F7FFD4B1"),
    ("1234567890123456FFFE8000", "630535C9C53E1EC6524016930B56F6728909C45403536B419AEBCB25B7351C07"),
    ("1234567890123456FFFF0000", "6D6DB7AAAE8B3EA90E57A39E4BBA71E173B21B446B30A78D64BFC6A8806C55EE"),
]
AES256_FIRST = [
    ("123456789012345600000001",
     "54AC2B32B145EA4A554CB8BC44B17467063A799856B1CCC2A138D36E8DBF78B3",
     "09C9C432966811D6B2C3336BAC1B1202",
     "8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502",
     "F04A1FABD4176E15490CEC82E217A96D",
     "61DABDF4B340CF461EE860B1D1AB55357142BD2D6977306859CF49AEFE8F1549",
     "616D59AE91F8CC7016F89FDA29605FA4",
     "71EB36C9A6B7F801D1D1700C29741FC5A5C4E9B45D742DA7AF6992B8AA29AF58"),
    ("123456789012345600000002",
     "5DD5A0253842BBBE1D7C0DA27021412C6F1FAB53FB928DEAE56DA06090A9DE97",
     "D632226A80795D13A80AFE66A3E97B01",
     "3583D6CD02FC38822CC71A8D7678E04F4A8556335E6CC66863D3DADC5AEE2C62",
     "DD99D77B4E2AB538B26BB6A8B3FB0BE3",
     "4417356219B2F93CE3F2671623DDCAB58A8B85AD80662A8D628024000956D426",
     "07B79D9BFF3633C07A9FDDF132070B30",
     "D0AC9F71F875FFFF3A83778F72F39EBB0924A5A526617AF669665E0A19725465"),
    ("123456789012345600000003",
     "8EEEF7C464AE415BB1D73FAED21993CD669F7999092A579EC6DD3CC680C65171",
     "C2CBD3D766B16F9F82F4EE3F74478918",
     "96A1AB5D37CB7CF81DDE64F66C46E0389B833E7AD5F4E44C791F04FAFDA6DA0E",
     "5A742A4A0403B3D7BB30842DAFBB5972",
     "35BD00A46F2A2BD127F565FBF2974B735AE3BB70242C0A415857CF69B2C2691A",
     "706E4E629E466BED956548E7B0D90C3D",
     "8E70D5DF53F48ED2F2A0B54FC4F45C844579BE96F6F161222CDD50193E2F737F"),
    ("123456789012345600000004",
     "C18CBED570B3B89ECADA7CEC9C224CD5A86ECF3DE377D3EFAB720F8C4D76B9D0",
     "58A3779C1E24B3EDAF068609E7E56D59",
     "420AA584BF215C4777E93009B56D08DE80687021D07ED96349FF71379CE5636D",
     "C531F7E08514858C445D5F54BFE7DA8E",
     "D80617C3C5869A8DCF0DA5383D032A0D6E6C51C0BF649BE992BE84AA191AE326",
     "CF3A4D9CA7E962E4023A84A2FE47DC80",
     "41D23F7D78E22A978D726BC71D266374263120EE49146CE5C1291FD0EE7DDD31"),
    ("123456789012345600000005",
     "6B3C3C93307151C25DC2309456F01C5C3108DAD571C321899A9B7E0C009FD2EB",
     "97504C8BB0FD4D4A88D605143BF00025",
     "B1E9E3D918952E6E5F67917F0FE77060F865AE27DCAD5742DDF90F61453B98BA",
     "E2E25AA7FE6E5DD6042C632A5DFED945",
     "8B047E32C476C0A0AF90A9B8D1C247C433E3D4C1DF1C7FC52E8CB1DC4C8FB275",
     "94C28455AEAD970555F326298557FA81",
     "813D156C142E5BB8F136427EBD0A1AC4DC9B2B5963C481F5E0A58F4BF33BD185"),
    ("123456789012345600000006",
     "B8BB61AE3E2D5CD8C699E0C578FB2C7B89B0C0CF02DBAB60864D8049C986C844",
     "BF281141609E6CAE7DF10DFA47A8D03D",
     "8714EB94E3BFD3018EC99D0434D9C94F071AF2EEBF4332FB14F5179793AA582C",
     "07B215929C5DB4262DECEE4A0336DD4F",
     "A2FF6FFB37CB8042B8C9B2F94C90C83D94DD5BECCD9951CFAB0BE7BD865CA403",
     "408D3B9A7D1AF109E2F689514BF79AC7",
     "F1FB0591AA2E45E1CE4C5D970C7396C4A87E53E5900C4A6D95C174140CC0AC9C"),
    ("123456789012345600000007",
     "88D0ACA287B3066F5DE0C93396337D4C2DA8D92C1F720A576D62CEB4C979E01E",
     "B7C6BB187134E9D429C3E8B7CCBD8477",
     "693C893A1E81D280302E0A47E7E634337B9A9B26E7CC6064D807E08FF911AFAC",
     "3AC9CC5159F96E10FCC5EB64015AC76A",
     "E8A57085DBE804B8C2767F9F77D54854861E99633A062C700B4E50A865153150",
     "DC2915BF421D617E7725E63A7DACB18D",
     "69BC5C9AFB2C93CC30C3F7529360B34D7B64B7206E0F0940D8654378C54824F2"),
    ("123456789012345600000008",
     "20A796D5077D51B8E7613893A4F095B134E02917DC84BD391F3661D0873FF308",
     "53C1C60A65532313141A102AD720E967",
     "173A45284262A3E292D86D08FD6DE9167963214450D1D48F6103BD2EB08E61B5",
     "6E94A9283EA9AEB7EAA77C3FF55FF2D1",
     "949A3FEF12DBD273DD25BB60E29BBE313C872A9DE3BE03A7E29626ACA0A42880",
     "8950DD50C254C60E26737CA9229F0F18",
     "0BF8789A21D068410A16C9F7FCBF65A7B4FF73203ADC0F1B4B5E5BF8050E4284"),
]

# The supplement's update keys (usage 0002, key encryption, at counter FFFFFFFF), as reproduced in
# openemv/dukpt test/dukpt_aes128_update_key_test.c and test/dukpt_aes256_update_key_test.c (the
# TDES two are in comments there, not run). hsmsvc derives no update key; they check the reference's
# derivation, TDES key types included, that the property tests below rely on.
UPDATE_KEYS = [
    (IK128, 0x0002, 128, "9A9770AEE1ACD1B13473D0463A1883B9"),  # AES-128
    (IK128, 0x0000, 128, "4744A5ECBC62B5C4BB76FBEAE1E244A3"),  # TDES two-key
    (IK128, 0x0001, 192, "AF82BE8533CFCA526DA71708667AD0BBC7A7517504C78C8A"),  # TDES three-key
    (IK256, 0x0002, 128, "90E54E4A70160C7E085C09D2B241D343"),  # AES-128
    (IK256, 0x0004, 256, "AEFB210C136278A1279F7C8815F446DB8EBE2AA910B157AA4E6484D8DE9C4807"),  # AES-256
]
# Counter 1FFFF: published (in comments in the openemv files above), but 17 one bits, which the
# standard's device never uses and hsmsvc refuses.
KSN_1FFFF = H("12345678901234560001FFFF")
TXN_1FFFF = {
    IK128: H("1FE368988089CDD76DA18A3458E113BA"),
    IK256: H("7C1F24BC33C5B146E1D3015126F4AC2E0C48AC080DC9234137B82890E8E91FB8"),
}


# --- The reference: X9.24-3:2017 clause 6 from its text, on pyca/cryptography only ---------------

_AES_BY_LENGTH = {16: 0x0002, 24: 0x0003, 32: 0x0004}


def _aes(key: bytes, data: bytes) -> bytes:
    ctx = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return ctx.update(data) + ctx.finalize()


def ref_derive(key: bytes, usage: int, algorithm: int, bits: int, tail: bytes) -> bytes:
    # 6.3.1 and 6.3.2: one AES block of derivation data per 128 bits, key block counter from 1.
    out = b"".join(_aes(key, struct.pack(">BBHHH", 1, n, usage, algorithm, bits) + tail)
                   for n in range(1, (bits + 127) // 128 + 1))
    return out[: bits // 8]


def ref_initial_key(bdk: bytes, ikid: bytes) -> bytes:
    return ref_derive(bdk, 0x8001, _AES_BY_LENGTH[len(bdk)], len(bdk) * 8, ikid)


def ref_transaction_key(ik: bytes, ikid: bytes, counter: int) -> bytes:
    """The key for a counter: the key of the counter without its lowest one bit, derived once more
    (usage 8000) with the derivation ID and the counter. No limit on one bits here."""
    if not counter:
        return ik
    parent = ref_transaction_key(ik, ikid, counter & (counter - 1))
    return ref_derive(parent, 0x8000, _AES_BY_LENGTH[len(ik)], len(ik) * 8, ikid[4:] + counter.to_bytes(4, "big"))


def ref_working_key(txn_key: bytes, ikid: bytes, counter: int, usage: int, algorithm: int, bits: int) -> bytes:
    return ref_derive(txn_key, usage, algorithm, bits, ikid[4:] + counter.to_bytes(4, "big"))


# The standard's indicators by hsmsvc's names, for the tests to call the reference with.
# Table 3: algorithm indicator and length in bits of each key type.
REF_TYPES = {
    Algorithm.TDES_2KEY: (0x0000, 128),
    Algorithm.TDES_3KEY: (0x0001, 192),
    Algorithm.AES_128: (0x0002, 128),
    Algorithm.AES_192: (0x0003, 192),
    Algorithm.AES_256: (0x0004, 256),
}
# Table 2: the working keys' usage indicators.
REF_USAGES = {
    DukptKeyUsage.PIN_ENCRYPTION: 0x1000,
    DukptKeyUsage.MAC_GENERATION: 0x2000,
    DukptKeyUsage.MAC_VERIFICATION: 0x2001,
    DukptKeyUsage.MAC_BOTH: 0x2002,
    DukptKeyUsage.DATA_ENCRYPT: 0x3000,
    DukptKeyUsage.DATA_DECRYPT: 0x3001,
    DukptKeyUsage.DATA_BOTH: 0x3002,
}
# Security strength in bits (NIST SP 800-57 part 1): a working key is no stronger than the BDK.
REF_STRENGTH = {
    Algorithm.TDES_2KEY: 80,
    Algorithm.TDES_3KEY: 112,
    Algorithm.AES_128: 128,
    Algorithm.AES_192: 192,
    Algorithm.AES_256: 256,
}


def _ksn(counter: int) -> AesKsn:
    return AesKsn(IKID, counter)


# --- Published vectors ---------------------------------------------------------------------------


def test_reference_reproduces_the_supplement() -> None:
    # The oracle of the property tests below is itself checked against the supplement first.
    assert ref_initial_key(BDK128, IKID) == IK128
    assert ref_initial_key(BDK256, IKID) == IK256
    for ik, rows in ((IK128, AES128_FIRST + AES128_LATER), (IK256, AES256_FIRST + AES256_LATER)):
        for ksn, txn, *_ in rows:
            assert ref_transaction_key(ik, IKID, int(ksn[16:], 16)) == H(txn)
        assert ref_transaction_key(ik, IKID, 0x1FFFF) == TXN_1FFFF[ik]
    for ik, algorithm, bits, key in UPDATE_KEYS:
        last = ref_transaction_key(ik, IKID, 0xFFFFFFFF)
        assert ref_derive(last, 0x0002, algorithm, bits, IKID[4:] + b"\xff" * 4) == H(key)


def test_initial_key() -> None:
    # Supplement: BDK FEDCBA9876543210F1F1F1F1F1F1F1F1 (and twice over), initial key ID 1234567890123456.
    assert aesdukpt.initial_key(bdk=BDK128, initial_key_id=IKID) == IK128
    assert aesdukpt.initial_key(bdk=BDK256, initial_key_id=IKID) == IK256


TRANSACTIONS = [(IK128, k, t) for k, t, *_ in AES128_FIRST + AES128_LATER] + [
    (IK256, k, t) for k, t, *_ in AES256_FIRST + AES256_LATER]


@pytest.mark.parametrize(("ik", "ksn", "txn"), TRANSACTIONS, ids=[f"{len(i) * 8}-{k[16:]}" for i, k, _ in TRANSACTIONS])
def test_transaction_keys(ik: bytes, ksn: str, txn: str) -> None:
    # Supplement: counters 1 to 8, 1FFFE, 20000, 20001 and the last four, FFFE2000 to FFFF0000.
    k = AesKsn.parse(H(ksn))
    assert bytes(k) == H(ksn)
    assert aesdukpt.transaction_key(ik, k) == H(txn)


@pytest.mark.parametrize(("ksn", "txn", "pin", "mac", "data", "pin_block"), AES128_FIRST,
                         ids=[r[0][-2:] for r in AES128_FIRST])
def test_working_keys_aes128_bdk(ksn: str, txn: str, pin: str, mac: str, data: str, pin_block: str) -> None:
    # Supplement, AES-128 BDK, first eight transactions: AES-128 PIN, MAC generation and data
    # encryption keys, and the ISO format 4 PIN block enciphered under the PIN key.
    k = AesKsn.parse(H(ksn))
    key = H(txn)
    pin_key = aesdukpt.working_key(key, k, DukptKeyUsage.PIN_ENCRYPTION, Algorithm.AES_128)
    assert pin_key == H(pin)
    assert aesdukpt.working_key(key, k, DukptKeyUsage.MAC_GENERATION, Algorithm.AES_128) == H(mac)
    assert aesdukpt.working_key(key, k, DukptKeyUsage.DATA_ENCRYPT, Algorithm.AES_128) == H(data)
    assert aesdukpt.derive(bdk=BDK128, ksn=k, usage=DukptKeyUsage.PIN_ENCRYPTION, key_type=Algorithm.AES_128) == H(pin)
    # ISO 9564-1 format 4: E(K, E(K, PIN field) XOR PAN field).
    inner = bytes(a ^ b for a, b in zip(_aes(pin_key, PIN_FIELD), PAN_FIELD, strict=True))
    assert _aes(pin_key, inner) == H(pin_block)


@pytest.mark.parametrize(("ksn", "txn", "pin128", "pin256", "mac128", "mac256", "data128", "data256"), AES256_FIRST,
                         ids=[r[0][-2:] for r in AES256_FIRST])
def test_working_keys_aes256_bdk(ksn: str, txn: str, pin128: str, pin256: str, mac128: str, mac256: str,
                                 data128: str, data256: str) -> None:
    # Supplement, AES-256 BDK, first eight transactions: PIN, MAC generation and data encryption
    # keys, each as AES-128 and AES-256.
    k = AesKsn.parse(H(ksn))
    key = H(txn)
    expected = {
        (DukptKeyUsage.PIN_ENCRYPTION, Algorithm.AES_128): pin128,
        (DukptKeyUsage.PIN_ENCRYPTION, Algorithm.AES_256): pin256,
        (DukptKeyUsage.MAC_GENERATION, Algorithm.AES_128): mac128,
        (DukptKeyUsage.MAC_GENERATION, Algorithm.AES_256): mac256,
        (DukptKeyUsage.DATA_ENCRYPT, Algorithm.AES_128): data128,
        (DukptKeyUsage.DATA_ENCRYPT, Algorithm.AES_256): data256,
    }
    for (usage, key_type), value in expected.items():
        assert aesdukpt.working_key(key, k, usage, key_type) == H(value)
    derived = aesdukpt.derive(bdk=BDK256, ksn=k, usage=DukptKeyUsage.DATA_ENCRYPT, key_type=Algorithm.AES_256)
    assert derived == H(data256)


def test_published_17_bit_counter_refused() -> None:
    # The supplement lists counter 1FFFF; its 17 one bits are past the standard's 16.
    with pytest.raises(InvalidInput) as e:
        AesKsn.parse(KSN_1FFFF)
    assert e.value.field == "ksn"


# --- The KSN and the refusals -------------------------------------------------------------------


def test_ksn_fields() -> None:
    k = AesKsn.parse(H("1234567890123456FFFF0000"))
    assert (k.bdk_id, k.derivation_id, k.counter) == (H("12345678"), H("90123456"), aesdukpt.MAX_COUNTER)


@pytest.mark.parametrize("ksn", [
    "123456789012345600000000",  # counter 0
    "12345678901234560001FFFF",  # 17 one bits
    "1234567890123456FFFF0001",  # past FFFF0000, the maximum
    "1234567890123456FFFFFFFF",  # 32 one bits
    "12345678901234560000000001",  # 13 bytes
    "1234567890123456000001",  # 11 bytes
    "FFFF9876543210E00001",  # a TDES KSN, 10 bytes
])
def test_ksn_refused(ksn: str) -> None:
    with pytest.raises(InvalidInput) as e:
        AesKsn.parse(H(ksn))
    assert e.value.field == "ksn"


@pytest.mark.parametrize(("ikid", "counter", "field"), [
    (IKID, 0, "ksn"),
    (IKID, 1 << 32, "ksn"),
    (IKID, -1, "ksn"),
    (IKID, True, "ksn"),
    (IKID[:7], 1, "initial_key_id"),
])
def test_ksn_constructor_refused(ikid: bytes, counter: int, field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        AesKsn(ikid, counter)
    assert e.value.field == field


def test_working_key_no_stronger_than_bdk() -> None:
    # 6.1.3: an AES-128 BDK gives TDES and AES-128 working keys only.
    key = H(AES128_FIRST[0][1])
    for key_type in (Algorithm.TDES_2KEY, Algorithm.TDES_3KEY, Algorithm.AES_128):
        assert len(aesdukpt.working_key(key, _ksn(1), DukptKeyUsage.MAC_BOTH, key_type)) == key_type.key_length
    for key_type in (Algorithm.AES_192, Algorithm.AES_256):
        with pytest.raises(InvalidInput, match="key_type"):
            aesdukpt.working_key(key, _ksn(1), DukptKeyUsage.MAC_BOTH, key_type)


def test_other_refusals() -> None:
    with pytest.raises(InvalidInput, match="bdk"):
        aesdukpt.initial_key(bdk=BDK128[:8], initial_key_id=IKID)
    with pytest.raises(InvalidInput, match="initial_key_id"):
        aesdukpt.initial_key(bdk=BDK128, initial_key_id=IKID + b"\0")
    with pytest.raises(InvalidInput, match="initial_key"):
        aesdukpt.transaction_key(IK128[:15], _ksn(1))
    with pytest.raises(InvalidInput, match="key_type"):
        aesdukpt.working_key(IK128, _ksn(1), DukptKeyUsage.PIN_ENCRYPTION, Algorithm.SM4)
    with pytest.raises(InvalidInput, match="key_usage"):
        aesdukpt.working_key(IK128, _ksn(1), 0x8000, Algorithm.AES_128)  # type: ignore[arg-type]


# --- Against the reference ------------------------------------------------------------------------

counters = st.sets(st.integers(0, 31), min_size=1, max_size=16).map(lambda bits: sum(1 << b for b in bits))
bdks = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@given(bdks, st.binary(min_size=8, max_size=8), counters)
def test_matches_reference(bdk: bytes, ikid: bytes, counter: int) -> None:
    # Every working usage and key type at counters of up to 16 one bits; the types stronger than
    # the BDK refused (6.1.3).
    ksn = AesKsn(ikid, counter)
    ik = aesdukpt.initial_key(bdk=bdk, initial_key_id=ikid)
    assert ik == ref_initial_key(bdk, ikid)
    txn = aesdukpt.transaction_key(ik, ksn)
    assert txn == ref_transaction_key(ik, ikid, counter)
    for usage, indicator in REF_USAGES.items():
        for key_type, strength in REF_STRENGTH.items():
            if strength > len(bdk) * 8:
                with pytest.raises(InvalidInput, match="key_type"):
                    aesdukpt.working_key(txn, ksn, usage, key_type)
            else:
                expected = ref_working_key(txn, ikid, counter, indicator, *REF_TYPES[key_type])
                assert aesdukpt.working_key(txn, ksn, usage, key_type) == expected
    assert aesdukpt.derive(bdk=bdk, ksn=ksn, usage=DukptKeyUsage.PIN_ENCRYPTION, key_type=Algorithm.TDES_2KEY) == (
        ref_working_key(txn, ikid, counter, 0x1000, 0x0000, 128))
