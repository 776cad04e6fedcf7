"""Power-on known-answer tests, as an HSM runs before it serves (FIPS 140-3 self-tests).

One published vector per algorithm the soft backend offers; ``hsmsvc serve``
runs them first and refuses to start if any fails (``hsmsvc selfcheck`` runs
them on demand). Tests under ``tests/crypto`` carry the full tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hsmsvc.crypto import cmac, ibm3624, kcv, mac, pinblock, pvv, signature, sm2, tr31
from hsmsvc.crypto._cipher import BlockCipher, ecb_encrypt
from hsmsvc.types import Algorithm, HashAlgorithm, Padding

_H = bytes.fromhex


@dataclass(frozen=True)
class Result:
    name: str
    standard: str
    passed: bool


def _tdes_kcv() -> bool:
    return kcv.kcv(Algorithm.TDES_2KEY, _H("3F419E1CB7079442AA37474C2EFBF8B8")) == _H("57C409")


def _aes_kcv() -> bool:
    return kcv.kcv(Algorithm.AES_128, _H("3F419E1CB7079442AA37474C2EFBF8B8")) == _H("08793E")


def _alg1() -> bool:
    k = _H("0123456789ABCDEF") * 3
    out = mac.generate_cbc_mac(Algorithm.TDES_3KEY, k, b"Now is the time for all ", Padding.METHOD_1, 4)
    return out == _H("70A30640")


def _alg3() -> bool:
    k = _H("0123456789ABCDEFFEDCBA9876543210")
    return mac.generate_retail_mac(k, b"Now is the time for all ", Padding.METHOD_1) == _H("A1C72E74EA3FA9B6")


def _cmac_aes() -> bool:
    k = _H("2b7e151628aed2a6abf7158809cf4f3c")
    m = _H("6bc1bee22e409f96e93d7e117393172a")
    return cmac.generate_cmac(Algorithm.AES_128, k, m) == _H("070a16b46b4d4144f79bdd9dd04a287c")


def _hmac_sha256() -> bool:
    out = mac.generate_hmac(HashAlgorithm.SHA256, b"Jefe", b"what do ya want for nothing?")
    return out == _H("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def _sm3() -> bool:
    return sm2.sm3(b"abc") == _H("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")


def _sm4() -> bool:
    k = _H("0123456789abcdeffedcba9876543210")
    return ecb_encrypt(Algorithm.SM4, k, k) == _H("681edf34d206965e86b3e94f536e4246")


def _pin_iso0() -> bool:
    return pinblock.encode_iso0("1234", "4012345678909") == _H("041274EDCBA9876F")


def _ibm3624() -> bool:
    pvk = _H("0123456789ABCDEF") * 2
    return ibm3624.generate_offset(
        BlockCipher(Algorithm.TDES_2KEY, pvk), validation_data="1234567890123445", table="0123456789012345", pin="1234"
    ) == "2298"


def _pvv() -> bool:
    pvk = _H("0123456789ABCDEFFEDCBA9876543210")
    return pvv.generate_pvv(BlockCipher(Algorithm.TDES_2KEY, pvk), "1122334455667788", 1, "4524") == "8523"


def _tr31_b() -> bool:
    _, key = tr31.unwrap(
        _H("DD7515F2BFC17F85CE48F3CA25CB21F6"),
        "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E",
    )
    return key == _H("3F419E1CB7079442AA37474C2EFBF8B8")


def _tr31_d() -> bool:
    _, key = tr31.unwrap(
        _H("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"),
        "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D2"
        "07E2E417C07156A27E8E31DA05F7425509593D03A457DC34",
    )
    return key == _H("3F419E1CB7079442AA37474C2EFBF8B8")


def _sm2_signature() -> bool:
    # GB/T 32918.5-2017 / GM/T 0003.5-2012 example on sm2p256v1 (fixed k).
    d = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
    key = sm2.private_key_from_d(d)
    e = sm2.sm3(sm2.za(key.public) + b"message digest")
    sig = sm2._sign_with_k(key, e, 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21)
    return sig == _H("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
                     "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA")


def _signature_pairwise() -> bool:
    # No RSA key generation here: it would add a tenth of a second or more to every start.
    for alg in (Algorithm.ECC_P256, Algorithm.ECC_P384):
        key = signature.load_private_key(alg, signature.generate_private_key(alg))
        key.verifier().verify(message=b"pairwise", signature=key.sign(message=b"pairwise"))
    return True


def _sm2_pairwise() -> bool:
    key = sm2.generate_private_key()
    sm2.verify(key.public, b"pairwise", sm2.sign(key, b"pairwise"))
    return sm2.decrypt(key, sm2.encrypt(key.public, b"pairwise")) == b"pairwise"


TESTS: tuple[tuple[str, str, Callable[[], bool]], ...] = (
    ("TDES KCV", "TR-31:2018 A.7.2.2", _tdes_kcv),
    ("AES CMAC KCV", "X9.24-1:2017; TR-31:2018 A.7.4", _aes_kcv),
    ("ISO 9797-1 MAC algorithm 1", "ISO/IEC 9797-1:1999 annex B", _alg1),
    ("ISO 9797-1 MAC algorithm 3", "ISO/IEC 9797-1:1999 annex B", _alg3),
    ("AES-CMAC", "NIST SP 800-38B D.1 example 2", _cmac_aes),
    ("HMAC-SHA256", "RFC 4231 test case 2", _hmac_sha256),
    ("SM3", "GB/T 32905-2016 A.1", _sm3),
    ("SM4", "GB/T 32907-2016 A.1", _sm4),
    ("PIN block ISO format 0", "X9.24-1:2009 A.4", _pin_iso0),
    ("IBM 3624 PIN offset", "IBM 3624 offset example", _ibm3624),
    ("Visa PVV", "cross-implementation table", _pvv),
    ("TR-31 version B unwrap", "TR-31:2018 A.7.2.2", _tr31_b),
    ("TR-31 version D unwrap", "TR-31:2018 A.7.4", _tr31_d),
    ("SM2 sign/encrypt pairwise", "GB/T 32918 pairwise consistency", _sm2_pairwise),
    ("SM2 signature", "GB/T 32918.5-2017 example", _sm2_signature),
    ("ECDSA pairwise", "FIPS 186-5 pairwise consistency", _signature_pairwise),
)


def run() -> list[Result]:
    """Run every known-answer test; a raised error counts as a failure."""
    out = []
    for name, standard, fn in TESTS:
        try:
            ok = fn()
        except Exception:  # noqa: BLE001 - a self-test reports, it never crashes
            ok = False
        out.append(Result(name, standard, ok))
    return out
