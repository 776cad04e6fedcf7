"""The vocabulary of hsmsvc: algorithms, key types, usages, formats.

Enum values are stable strings because they are stored in the database and in
audit records. No key-type or algorithm literal appears outside this module.
"""

from __future__ import annotations

from enum import Enum, unique
from typing import Final

from hsmsvc.errors import InvalidInput


class Vocabulary(Enum):
    """Base of hsmsvc's enums: members are singletons compared by identity, so they hash by it.

    ``Enum.__hash__`` is Python code hashing the member's name, and the hot path
    hashes these in every set and dict lookup of the key-binding checks.
    """

    __hash__ = object.__hash__


@unique
class Algorithm(Vocabulary):
    """A block cipher and key length, a key-pair algorithm, or an HMAC-only key length.

    Key-pair algorithms belong to key-pair types only (see ``hsm.policy``); asking one
    for a block size or a symmetric key length is refused. An HMAC key is named by the
    block cipher of its size where there is one (AES_256 for HMAC-SHA256, SM4 for a
    16-byte HMAC-SM3 key); HMAC_SM3_256 has none, and no block size.
    """

    TDES_2KEY = "TDES_2KEY"
    """Two-key Triple DES (ANSI X9.52 / ISO/IEC 18033-3), 16-byte key K1||K2."""
    TDES_3KEY = "TDES_3KEY"
    """Three-key Triple DES, 24-byte key K1||K2||K3."""
    AES_128 = "AES_128"
    AES_192 = "AES_192"
    AES_256 = "AES_256"
    SM4 = "SM4"
    """SM4 block cipher (GB/T 32907-2016), 16-byte key, 16-byte block."""
    RSA_2048 = "RSA_2048"
    """RSA key pair, 2048-bit modulus; transports keys by RSAES-OAEP (RFC 8017 clause 7.1)."""
    RSA_3072 = "RSA_3072"
    SM2 = "SM2"
    """SM2 key pair on sm2p256v1; transports keys by SM2 encryption (GB/T 32918.4-2016)."""
    ECC_P521 = "ECC_P521"
    """EC key pair on NIST P-521 (FIPS 186-5, SP 800-186) for ECDH key agreement (SP 800-56A rev. 3)."""
    ECC_P256 = "ECC_P256"
    """EC key pair on NIST P-256 for ECDSA with SHA-256 (FIPS 186-5 clause 6): signature keys only."""
    ECC_P384 = "ECC_P384"
    """EC key pair on NIST P-384 for ECDSA with SHA-384: signature keys only."""
    HMAC_SM3_256 = "HMAC_SM3_256"
    """HMAC-SM3 key of 32 bytes, the SM3 output length (GM/T 0042-2015; RFC 2104 section 3 advises
    keys no shorter than the output): HMAC keys (usage M7) only, not a block cipher."""

    @property
    def is_asymmetric(self) -> bool:
        return self in _PAIRS

    @property
    def block_size(self) -> int:
        try:
            return _BLOCK_SIZE[self]
        except KeyError:
            raise InvalidInput("algorithm", f"{self.value} is not a block cipher") from None

    @property
    def key_length(self) -> int:
        try:
            return _KEY_LENGTH[self]
        except KeyError:
            raise InvalidInput("algorithm", f"{self.value} is a key pair: generate it in the backend") from None

    @property
    def is_block_cipher(self) -> bool:
        """TDES, AES or SM4: neither a key pair nor an HMAC-only key."""
        return self in _BLOCK_SIZE

    @property
    def is_tdes(self) -> bool:
        return self in (Algorithm.TDES_2KEY, Algorithm.TDES_3KEY)

    @property
    def is_aes(self) -> bool:
        return self in (Algorithm.AES_128, Algorithm.AES_192, Algorithm.AES_256)


_PAIRS: Final = frozenset({Algorithm.RSA_2048, Algorithm.RSA_3072, Algorithm.SM2, Algorithm.ECC_P521,
                           Algorithm.ECC_P256, Algorithm.ECC_P384})
_BLOCK_SIZE: Final = {
    Algorithm.TDES_2KEY: 8,
    Algorithm.TDES_3KEY: 8,
    Algorithm.AES_128: 16,
    Algorithm.AES_192: 16,
    Algorithm.AES_256: 16,
    Algorithm.SM4: 16,
}
_KEY_LENGTH: Final = {
    Algorithm.TDES_2KEY: 16,
    Algorithm.TDES_3KEY: 24,
    Algorithm.AES_128: 16,
    Algorithm.AES_192: 24,
    Algorithm.AES_256: 32,
    Algorithm.SM4: 16,
    Algorithm.HMAC_SM3_256: 32,
}


@unique
class KcvMethod(Vocabulary):
    """How a key check value is computed (ANSI X9.24-1:2017 clause 7.x, Annex A)."""

    CMAC = "CMAC"
    """The leftmost bytes of the CMAC of a zero block: X9.24-1:2017's method, the default for AES."""
    ECB = "ECB"
    """The leftmost bytes of the encipherment of a zero block: the legacy method, the only one for TDES
    and SM4; some partners still state AES KCVs this way."""
    HMAC = "HMAC"
    """The leftmost bytes of the key's HMAC-SM3 of a 16-byte zero block: an HMAC_SM3_256 key's only
    method (it enciphers nothing). The CMAC method's rule with the MAC the key computes; hsmsvc's
    convention, as no standard fixes an HMAC key's KCV."""

    @staticmethod
    def default_for(algorithm: Algorithm) -> KcvMethod:
        """The method a stored KCV is in: CMAC for AES (X9.24-1:2017), ECB for TDES and SM4, HMAC for
        an HMAC_SM3_256 key."""
        if algorithm is Algorithm.HMAC_SM3_256:
            return KcvMethod.HMAC
        return KcvMethod.CMAC if algorithm.is_aes else KcvMethod.ECB


@unique
class KeyType(Vocabulary):
    """Place of a key in the ANSI X9.17 three-tier hierarchy."""

    LMK = "LMK"
    """Local master key: never leaves the backend."""
    ZMK = "ZMK"
    """Zone master key, shared by two sites, stored under the LMK."""
    TMK = "TMK"
    """Terminal master key, stored under the LMK."""
    ZPK = "ZPK"
    """Zone PIN key: PIN blocks between sites."""
    TPK = "TPK"
    """Terminal PIN key: PIN blocks from terminals."""
    PVK = "PVK"
    """PIN verification key: IBM 3624 and Visa PVV."""
    PSK = "PSK"
    """PIN storage key: stored PINs (encrypted or keyed digest)."""
    MAK = "MAK"
    """MAC key between sites (a ZAK in payShield terms)."""
    TAK = "TAK"
    """Terminal MAC key."""
    DEK = "DEK"
    """Data encryption key for sensitive fields."""
    KTK = "KTK"
    """Key transport key pair (RSA or SM2): the private half under the LMK unwraps
    a terminal's one-time PIN key sent under the public half (bank design 004
    clause 5.2.4(2))."""
    CTK = "CTK"
    """Ceremony transport key pair (RSA or SM2): custodians' clear components
    travel to the backend under its public half. Separate from a KTK, so a
    component can never be offered as a one-time PIN key or the reverse."""
    KAK = "KAK"
    """Key agreement key pair (ECDH on P-521, or SM2 key exchange): the private half under the LMK
    derives, with a partner's public half, a key both sites hold (NIST SP 800-56A rev. 3 and
    800-56C rev. 2; GB/T 32918.3-2016).
    Separate from a KTK/CTK, so a pair that agrees never unwraps, nor the reverse."""
    SIG = "SIG"
    """Signature key pair (SM2, ECDSA P-256/P-384, RSA-PSS): the private half under the LMK signs
    (mode of use S); one holding only a partner's public key verifies (mode V)."""
    CSK = "CSK"
    """Collaborative-signing key share: the server's share d2 of a two-party SM2 key whose other
    share only the client holds (GM/T 0003 with the two-party scheme in docs/architecture.md).
    Mode S co-signs, mode D co-decrypts: one share never does both."""
    BDK = "BDK"
    """Base derivation key (ANSI X9.24-1 and X9.24-3 DUKPT; TR-31 usage B0, mode X): derives each
    terminal's initial key and, from a transaction's KSN, that transaction's PIN, MAC and data
    keys, inside the backend. A TDES BDK is two-key (X9.24-1:2009); an AES BDK any AES size."""
    IPEK = "IPEK"
    """A DUKPT terminal's initial key (TR-31 usage B1, mode X), derived from a BDK and the terminal's
    initial KSN or key ID for its key loader: it leaves only as a TR-31 block, and is never stored
    by hsmsvc's own commands (one received from a key injection facility may be)."""
    KDK = "KDK"
    """Key derivation key (TR-31 usage B3, mode X): derives each user's key from the user's code, as the
    login keys of employees' USB-Keys are (bank design 004 clause 6.2.2); a derived key leaves only
    wrapped, never in clear."""
    CVK = "CVK"
    """Card verification key (TR-31 usage C0): the key pair A||B of the CVV method (CVV, CVV2, iCVV),
    a two-key TDES key."""
    IMK = "IMK"
    """Issuer master key (EMV Book 2 annex A1.4; TR-31 usages E0-E6, mode X): derives each card's own
    key from its PAN and PAN sequence number, inside the backend, and is never used directly. Two-key
    TDES, or SM4 for PBOC 3.0 / UnionPay IC cards."""


@unique
class KeyUsage(Vocabulary):
    """ANSI X9 TR-31:2018 key usage (header bytes 5-6), by its code."""

    BDK = "B0"
    KEY_DERIVATION = "B3"
    """TR-31:2018 "key derivation key (non-ANSI X9.24)"."""
    DUKPT_INITIAL_KEY = "B1"
    """TR-31:2018 "initial DUKPT key" (IPEK): only ever exported to a terminal's key loader, never stored."""
    CVK = "C0"
    """TR-31:2018 "card verification key"."""
    EMV_AC = "E0"
    """TR-31:2018 "EMV/chip issuer master key: application cryptograms" (ARQC, TC, AAC, ARPC)."""
    EMV_SMC = "E1"
    """TR-31:2018 "EMV/chip issuer master key: secure messaging for confidentiality" (script encryption)."""
    EMV_SMI = "E2"
    """TR-31:2018 "EMV/chip issuer master key: secure messaging for integrity" (script MACs)."""
    EMV_DYNAMIC_NUMBERS = "E4"
    """TR-31:2018 "EMV/chip issuer master key: dynamic numbers" (Mastercard CVC3)."""
    EMV_OTHER = "E6"
    """TR-31:2018 "EMV/chip issuer master key: other" (Visa dCVV)."""
    DATA = "D0"
    KEK = "K0"
    KBPK = "K1"
    ASYMMETRIC_KEY_WRAPPING = "K3"
    """TR-31:2018 "asymmetric key for key agreement/key wrapping"."""
    DIGITAL_SIGNATURE = "S0"
    """TR-31:2018 "asymmetric key pair for digital signature"."""
    ASYMMETRIC_DATA_ENCRYPTION = "D1"
    """TR-31:2018 "asymmetric key for data encryption" (a co-decrypting CSK)."""
    MAC_ISO9797_ALG1 = "M1"
    MAC_ISO9797_ALG3 = "M3"
    MAC_CMAC = "M6"
    MAC_HMAC = "M7"
    PIN_ENCRYPTION = "P0"
    PIN_VERIFICATION_OTHER = "V0"
    PIN_VERIFICATION_IBM3624 = "V1"
    PIN_VERIFICATION_VISA_PVV = "V2"


@unique
class ModeOfUse(Vocabulary):
    """TR-31:2018 mode of use (header byte 8)."""

    ENCRYPT_DECRYPT = "B"
    MAC_GENERATE_VERIFY = "C"
    DECRYPT_ONLY = "D"
    ENCRYPT_ONLY = "E"
    MAC_GENERATE_ONLY = "G"
    NO_RESTRICTIONS = "N"
    SIGN_ONLY = "S"
    SIGN_DECRYPT = "T"
    MAC_VERIFY_ONLY = "V"
    """TR-31 "verify only": a MAC key, or a SIG that holds only a public key (the name is the wire's)."""
    DERIVE = "X"
    VARIANT = "Y"


@unique
class Exportability(Vocabulary):
    """TR-31:2018 exportability (header byte 11)."""

    EXPORTABLE = "E"
    NON_EXPORTABLE = "N"
    SENSITIVE = "S"


@unique
class KeyState(Vocabulary):
    """Life-cycle state of a stored key version."""

    PENDING = "PENDING"
    """Created or received (a key-change notice), not yet confirmed: no use."""
    ACTIVE = "ACTIVE"
    RETIRING = "RETIRING"
    """Superseded: still verifies and decrypts, no longer generates or encrypts."""
    SUSPENDED = "SUSPENDED"
    """Held by an officer: no use until reactivated."""
    REVOKED = "REVOKED"
    """Compromised or withdrawn: no use, never again."""
    DESTROYED = "DESTROYED"
    """Cryptogram erased; the row stays for the audit trail."""


@unique
class PinBlockFormat(Vocabulary):
    """PIN block formats of ISO 9564-1:2017 clause 9.3, and one bilateral one."""

    ISO_0 = "ISO_0"
    """Format 0 (ANSI X9.8): PIN field XOR PAN field, 8 bytes."""
    ISO_1 = "ISO_1"
    """Format 1: no PAN, random or transaction fill, 8 bytes."""
    ISO_2 = "ISO_2"
    """Format 2: IC card offline use only, F fill, 8 bytes."""
    ISO_3 = "ISO_3"
    """Format 3: like format 0 with random fill A-F."""
    ISO_4 = "ISO_4"
    """Format 4: 16-byte AES (or SM4) enciphered PIN and PAN fields."""
    SM4_0 = "SM4_0"
    """Format 0 widened to 16 bytes for SM4 peers: a bilateral convention."""

    @property
    def block_size(self) -> int:
        return 16 if self in (PinBlockFormat.ISO_4, PinBlockFormat.SM4_0) else 8

    @property
    def pan_bound(self) -> bool:
        return self in (
            PinBlockFormat.ISO_0,
            PinBlockFormat.ISO_3,
            PinBlockFormat.ISO_4,
            PinBlockFormat.SM4_0,
        )


@unique
class Padding(Vocabulary):
    """ISO/IEC 9797-1:2011 padding methods."""

    METHOD_1 = "METHOD_1"
    """Zero bits to a block boundary (none when already aligned)."""
    METHOD_2 = "METHOD_2"
    """One 1 bit, then zero bits to a block boundary (ISO/IEC 7816-4)."""
    METHOD_3 = "METHOD_3"
    """A block holding the bit length of the data, then method 1."""


@unique
class MacAlgorithm(Vocabulary):
    """MAC mechanisms offered."""

    ISO9797_ALG1 = "ISO9797_ALG1"
    """ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC)."""
    ISO9797_ALG3 = "ISO9797_ALG3"
    """ISO/IEC 9797-1 MAC algorithm 3 (retail MAC, ANSI X9.19), DES based."""
    CMAC = "CMAC"
    """NIST SP 800-38B CMAC (ISO/IEC 9797-1 MAC algorithm 5)."""
    HMAC_SHA256 = "HMAC_SHA256"
    HMAC_SM3 = "HMAC_SM3"
    UNIONPAY_POS = "UNIONPAY_POS"
    """The China UnionPay POS "ECB" MAC (XOR of blocks, two encryptions)."""


@unique
class HashAlgorithm(Vocabulary):
    SHA256 = "SHA256"
    SM3 = "SM3"


@unique
class CipherMode(Vocabulary):
    """Modes for field-level data encryption (NIST SP 800-38A and 38D)."""

    ECB = "ECB"
    """One field of at most a few blocks with no structure to leak; kept for legacy peers."""
    CBC = "CBC"
    GCM = "GCM"
    """Authenticated (SP 800-38D); 16-byte-block ciphers only (AES, SM4)."""


@unique
class DataPadding(Vocabulary):
    """How a field is brought to a whole number of blocks before ECB or CBC."""

    NONE = "NONE"
    """The field is already block-aligned; required with GCM."""
    PKCS7 = "PKCS7"
    """RFC 5652 clause 6.3: n bytes of value n."""
    ISO9797_M2 = "ISO9797_M2"
    """ISO/IEC 9797-1 padding method 2 (0x80 then zeros); always adds at least one byte."""
