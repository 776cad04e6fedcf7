"""Which key may do what: the one table, enforced in one place.

A key's type, TR-31 usage and mode of use are bound into its cryptogram, so the
backend (the only layer that sees the authenticated attributes) calls
:func:`require` after unwrapping and before any use. The ``keys`` and
``service`` layers import this table to refuse early and to describe keys, but
the backend's check is the one that counts.

TR-31:2018 clause A.5.1 (key usage) and A.5.3 (mode of use) give the codes; the
pairing of usages with the X9.17 key types is hsmsvc's policy, not a standard's.
"""

from __future__ import annotations

from enum import unique
from typing import Final, Mapping

from hsmsvc.errors import InvalidInput, KeyUsageViolation
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, MacAlgorithm, ModeOfUse, Vocabulary

__all__ = ["ALLOWED", "Operation", "USAGES", "check_binding", "check_decimalization_table", "require"]


@unique
class Operation(Vocabulary):
    """What a backend command does with a key."""

    PIN_DECRYPT = "PIN_DECRYPT"
    """Decipher an incoming PIN block (source of a translation or verification)."""
    PIN_ENCRYPT = "PIN_ENCRYPT"
    """Encipher an outgoing PIN block (destination of a translation)."""
    PIN_VERIFY_IBM3624 = "PIN_VERIFY_IBM3624"
    PIN_VERIFY_PVV = "PIN_VERIFY_PVV"
    PIN_GENERATE_IBM3624 = "PIN_GENERATE_IBM3624"
    """Derive an offset for a customer-selected PIN (issuance)."""
    PIN_GENERATE_PVV = "PIN_GENERATE_PVV"
    PIN_STORE_ENCRYPT = "PIN_STORE_ENCRYPT"
    """Encipher a PIN for storage (PSK with usage P0)."""
    PIN_STORE_DIGEST = "PIN_STORE_DIGEST"
    """Keyed one-way digest of a PIN for storage (PSK with usage M7)."""
    MAC_GENERATE = "MAC_GENERATE"
    MAC_VERIFY = "MAC_VERIFY"
    DATA_ENCRYPT = "DATA_ENCRYPT"
    DATA_DECRYPT = "DATA_DECRYPT"
    KEY_EXPORT_UNDER = "KEY_EXPORT_UNDER"
    """Wrap another key under this one (ZMK/TMK)."""
    KEY_IMPORT_UNDER = "KEY_IMPORT_UNDER"
    """Unwrap another key under this one (ZMK/TMK)."""
    KEY_EXPORT = "KEY_EXPORT"
    """Be wrapped under a ZMK/TMK and leave the backend."""
    KEY_SYNC_MAC = "KEY_SYNC_MAC"
    """MAC a key-change message under a key derived from this ZMK/TMK."""
    KEY_TRANSPORT_DECRYPT = "KEY_TRANSPORT_DECRYPT"
    """Unwrap a key sent under this key pair's public half (KTK)."""
    PUBLIC_KEY = "PUBLIC_KEY"
    """Give out this key pair's public half (KTK or CTK)."""
    COMPONENT_DECRYPT = "COMPONENT_DECRYPT"
    """Unwrap a custodian's key component sent under this key pair's public half (CTK)."""
    KEY_AGREE = "KEY_AGREE"
    """Derive a key with a partner's public key (KAK: ECDH and the SP 800-56C one-step KDF)."""
    TR34_SIGN = "TR34_SIGN"
    """Sign a TR-34 key token as its KDH (a KTK with mode of use S: one that signs never decrypts)."""
    SIGN = "SIGN"
    """Sign a message or digest, or a PKCS#10 request for this pair (SIG, mode S)."""
    SIGNATURE_VERIFY = "SIGNATURE_VERIFY"
    """Verify a signature under this key's public half (SIG, mode S or V)."""
    COSIGN = "COSIGN"
    """Give the server's partial SM2 signature for a client's digest (CSK, usage S0, mode S)."""
    CODECRYPT = "CODECRYPT"
    """Give the server's part of an SM2 decryption (CSK, usage D1, mode D)."""
    DUKPT_PIN_DECRYPT = "DUKPT_PIN_DECRYPT"
    """Derive a transaction's PIN key from this BDK and a KSN, and decipher a PIN block under it
    (X9.24-1 annex A, X9.24-3 clause 6): the derived key exists only inside that command."""
    DUKPT_MAC_GENERATE = "DUKPT_MAC_GENERATE"
    """Derive a transaction's response MAC key from this BDK and MAC a message to the terminal."""
    DUKPT_MAC_VERIFY = "DUKPT_MAC_VERIFY"
    """Derive a transaction's request MAC key from this BDK and check a terminal's MAC."""
    DUKPT_DATA_ENCRYPT = "DUKPT_DATA_ENCRYPT"
    """Derive a transaction's response data key from this BDK and encipher data for the terminal."""
    DUKPT_DATA_DECRYPT = "DUKPT_DATA_DECRYPT"
    """Derive a transaction's request data key from this BDK and decipher a terminal's data."""
    DUKPT_INITIAL_KEY_EXPORT = "DUKPT_INITIAL_KEY_EXPORT"
    """Derive a terminal's initial key (IPEK) from this BDK and give it out in a TR-31 block (B1)
    under a K1 KEK, for the terminal's key loader (X9.24-1 A.6, X9.24-3 6.3)."""
    DIVERSIFY = "DIVERSIFY"
    """Derive a user's key from this KDK and the user's code, and give it out wrapped (004 6.2.2)."""
    CVV_GENERATE = "CVV_GENERATE"
    """Compute a card's CVV, CVV2 or iCVV (CVK, usage C0): issuance, never verification's."""
    CVV_VERIFY = "CVV_VERIFY"
    """Check a presented CVV, CVV2 or iCVV (CVK, usage C0)."""
    ARQC_VERIFY = "ARQC_VERIFY"
    """Derive a card's AC key from this IMK (E0) and verify its ARQC, answering with an ARPC
    (EMV Book 2 clauses 8.1-8.2 and annex A1.4)."""
    SCRIPT_MAC = "SCRIPT_MAC"
    """Derive a card's integrity key from this IMK (E2) and MAC an issuer script command (Book 2 9.2)."""
    SCRIPT_ENCRYPT = "SCRIPT_ENCRYPT"
    """Derive a card's confidentiality key from this IMK (E1) and encipher script data or a new PIN (9.3)."""
    VISA_PIN_CHANGE_MASK = "VISA_PIN_CHANGE_MASK"
    """Derive a card's AC key from this IMK (E0) to mask a Visa PIN change block with (VIS)."""
    DYNAMIC_CVV_VERIFY = "DYNAMIC_CVV_VERIFY"
    """Derive a card's key from this IMK and check a Visa dCVV (E6) or a Mastercard CVC3 (E4)."""


# The usages each key type may carry. K0 KEKs exchange keys in the legacy ECB
# form; K1 KEKs (key block protection keys) exchange TR-31 key blocks.
USAGES: Final[Mapping[KeyType, frozenset[KeyUsage]]] = {
    KeyType.ZMK: frozenset({KeyUsage.KEK, KeyUsage.KBPK}),
    KeyType.TMK: frozenset({KeyUsage.KEK, KeyUsage.KBPK}),
    KeyType.ZPK: frozenset({KeyUsage.PIN_ENCRYPTION}),
    KeyType.TPK: frozenset({KeyUsage.PIN_ENCRYPTION}),
    KeyType.PVK: frozenset(
        {KeyUsage.PIN_VERIFICATION_IBM3624, KeyUsage.PIN_VERIFICATION_VISA_PVV}
    ),
    KeyType.PSK: frozenset({KeyUsage.PIN_ENCRYPTION, KeyUsage.MAC_HMAC}),
    KeyType.MAK: frozenset(
        {
            KeyUsage.MAC_ISO9797_ALG1,
            KeyUsage.MAC_ISO9797_ALG3,
            KeyUsage.MAC_CMAC,
            KeyUsage.MAC_HMAC,
        }
    ),
    KeyType.TAK: frozenset(
        {KeyUsage.MAC_ISO9797_ALG1, KeyUsage.MAC_ISO9797_ALG3, KeyUsage.MAC_CMAC}
    ),
    KeyType.DEK: frozenset({KeyUsage.DATA}),
    KeyType.KTK: frozenset({KeyUsage.ASYMMETRIC_KEY_WRAPPING}),
    KeyType.CTK: frozenset({KeyUsage.ASYMMETRIC_KEY_WRAPPING}),
    # TR-31:2018 K3 is "asymmetric key for key agreement/key wrapping"; mode X (derive) tells them apart.
    KeyType.KAK: frozenset({KeyUsage.ASYMMETRIC_KEY_WRAPPING}),
    KeyType.SIG: frozenset({KeyUsage.DIGITAL_SIGNATURE}),
    # A client's signing and encryption keys are separate pairs (two certificates, GM/T 0015).
    KeyType.CSK: frozenset({KeyUsage.DIGITAL_SIGNATURE, KeyUsage.ASYMMETRIC_DATA_ENCRYPTION}),
    KeyType.BDK: frozenset({KeyUsage.BDK}),
    KeyType.IPEK: frozenset({KeyUsage.DUKPT_INITIAL_KEY}),
    KeyType.KDK: frozenset({KeyUsage.KEY_DERIVATION}),
    KeyType.CVK: frozenset({KeyUsage.CVK}),
    KeyType.IMK: frozenset({KeyUsage.EMV_AC, KeyUsage.EMV_SMC, KeyUsage.EMV_SMI, KeyUsage.EMV_DYNAMIC_NUMBERS,
                            KeyUsage.EMV_OTHER}),
}

_N = ModeOfUse.NO_RESTRICTIONS
_ENC: Final = frozenset({ModeOfUse.ENCRYPT_DECRYPT, ModeOfUse.ENCRYPT_ONLY, _N})
_DEC: Final = frozenset({ModeOfUse.ENCRYPT_DECRYPT, ModeOfUse.DECRYPT_ONLY, _N})
_GEN: Final = frozenset({ModeOfUse.MAC_GENERATE_VERIFY, ModeOfUse.MAC_GENERATE_ONLY, _N})
_VER: Final = frozenset({ModeOfUse.MAC_GENERATE_VERIFY, ModeOfUse.MAC_VERIFY_ONLY, _N})
_ANY_MAC: Final = _GEN | _VER

# (key types, usages, modes of use) that may perform each operation.
ALLOWED: Final[
    Mapping[Operation, tuple[frozenset[KeyType], frozenset[KeyUsage], frozenset[ModeOfUse]]]
] = {
    Operation.PIN_DECRYPT: (
        frozenset({KeyType.ZPK, KeyType.TPK}),
        frozenset({KeyUsage.PIN_ENCRYPTION}),
        _DEC,
    ),
    Operation.PIN_ENCRYPT: (frozenset({KeyType.ZPK}), frozenset({KeyUsage.PIN_ENCRYPTION}), _ENC),
    Operation.PIN_VERIFY_IBM3624: (
        frozenset({KeyType.PVK}),
        frozenset({KeyUsage.PIN_VERIFICATION_IBM3624}),
        _VER,
    ),
    Operation.PIN_VERIFY_PVV: (
        frozenset({KeyType.PVK}),
        frozenset({KeyUsage.PIN_VERIFICATION_VISA_PVV}),
        _VER,
    ),
    Operation.PIN_GENERATE_IBM3624: (
        frozenset({KeyType.PVK}),
        frozenset({KeyUsage.PIN_VERIFICATION_IBM3624}),
        _GEN,
    ),
    Operation.PIN_GENERATE_PVV: (
        frozenset({KeyType.PVK}),
        frozenset({KeyUsage.PIN_VERIFICATION_VISA_PVV}),
        _GEN,
    ),
    Operation.PIN_STORE_ENCRYPT: (
        frozenset({KeyType.PSK}),
        frozenset({KeyUsage.PIN_ENCRYPTION}),
        frozenset({ModeOfUse.ENCRYPT_DECRYPT, _N}),
    ),
    Operation.PIN_STORE_DIGEST: (frozenset({KeyType.PSK}), frozenset({KeyUsage.MAC_HMAC}), _ANY_MAC),
    Operation.MAC_GENERATE: (
        frozenset({KeyType.MAK, KeyType.TAK}),
        USAGES[KeyType.MAK],
        _GEN,
    ),
    Operation.MAC_VERIFY: (frozenset({KeyType.MAK, KeyType.TAK}), USAGES[KeyType.MAK], _VER),
    Operation.DATA_ENCRYPT: (frozenset({KeyType.DEK}), frozenset({KeyUsage.DATA}), _ENC),
    Operation.DATA_DECRYPT: (frozenset({KeyType.DEK}), frozenset({KeyUsage.DATA}), _DEC),
    Operation.KEY_EXPORT_UNDER: (
        frozenset({KeyType.ZMK, KeyType.TMK}),
        frozenset({KeyUsage.KEK, KeyUsage.KBPK}),
        _ENC,
    ),
    Operation.KEY_IMPORT_UNDER: (
        frozenset({KeyType.ZMK, KeyType.TMK}),
        frozenset({KeyUsage.KEK, KeyUsage.KBPK}),
        _DEC,
    ),
    Operation.KEY_EXPORT: (
        # A key pair's private half never leaves; its public half is not an export. A BDK never
        # leaves either (X9.24-1: never in a PIN entry device, which TR-34 loads): a second HSM
        # takes it from its ceremony's components, as an LMK.
        frozenset(KeyType) - {KeyType.LMK, KeyType.KTK, KeyType.CTK, KeyType.KAK, KeyType.SIG, KeyType.CSK,
                              KeyType.BDK},
        frozenset(KeyUsage),
        frozenset(ModeOfUse),
    ),
    Operation.KEY_SYNC_MAC: (
        frozenset({KeyType.ZMK, KeyType.TMK}),
        frozenset({KeyUsage.KEK, KeyUsage.KBPK}),
        frozenset(ModeOfUse),
    ),
    Operation.KEY_TRANSPORT_DECRYPT: (
        frozenset({KeyType.KTK}),
        frozenset({KeyUsage.ASYMMETRIC_KEY_WRAPPING}),
        frozenset({ModeOfUse.DECRYPT_ONLY, _N}),
    ),
    Operation.PUBLIC_KEY: (
        frozenset({KeyType.KTK, KeyType.CTK, KeyType.KAK, KeyType.SIG, KeyType.CSK}),
        frozenset({KeyUsage.ASYMMETRIC_KEY_WRAPPING, KeyUsage.DIGITAL_SIGNATURE, KeyUsage.ASYMMETRIC_DATA_ENCRYPTION}),
        frozenset({ModeOfUse.DECRYPT_ONLY, ModeOfUse.DERIVE, ModeOfUse.SIGN_ONLY, ModeOfUse.MAC_VERIFY_ONLY, _N}),
    ),
    Operation.COMPONENT_DECRYPT: (
        frozenset({KeyType.CTK}),
        frozenset({KeyUsage.ASYMMETRIC_KEY_WRAPPING}),
        frozenset({ModeOfUse.DECRYPT_ONLY, _N}),
    ),
    Operation.KEY_AGREE: (frozenset({KeyType.KAK}), frozenset({KeyUsage.ASYMMETRIC_KEY_WRAPPING}),
                          frozenset({ModeOfUse.DERIVE})),
    # Sign-only: a KDH key never unwraps, so a token can't be made to sign what a KTK decrypted.
    Operation.TR34_SIGN: (
        frozenset({KeyType.KTK}),
        frozenset({KeyUsage.ASYMMETRIC_KEY_WRAPPING}),
        frozenset({ModeOfUse.SIGN_ONLY}),
    ),
    Operation.SIGN: (frozenset({KeyType.SIG}), frozenset({KeyUsage.DIGITAL_SIGNATURE}),
                     frozenset({ModeOfUse.SIGN_ONLY})),
    Operation.SIGNATURE_VERIFY: (frozenset({KeyType.SIG}), frozenset({KeyUsage.DIGITAL_SIGNATURE}),
                                 frozenset({ModeOfUse.SIGN_ONLY, ModeOfUse.MAC_VERIFY_ONLY})),
    Operation.COSIGN: (frozenset({KeyType.CSK}), frozenset({KeyUsage.DIGITAL_SIGNATURE}),
                       frozenset({ModeOfUse.SIGN_ONLY})),
    Operation.CODECRYPT: (frozenset({KeyType.CSK}), frozenset({KeyUsage.ASYMMETRIC_DATA_ENCRYPTION}),
                          frozenset({ModeOfUse.DECRYPT_ONLY})),
    Operation.DUKPT_PIN_DECRYPT: (frozenset({KeyType.BDK}), frozenset({KeyUsage.BDK}), frozenset({ModeOfUse.DERIVE})),
    **{op: (frozenset({KeyType.BDK}), frozenset({KeyUsage.BDK}), frozenset({ModeOfUse.DERIVE}))
       for op in (Operation.DUKPT_MAC_GENERATE, Operation.DUKPT_MAC_VERIFY, Operation.DUKPT_DATA_ENCRYPT,
                  Operation.DUKPT_DATA_DECRYPT, Operation.DUKPT_INITIAL_KEY_EXPORT)},
    Operation.DIVERSIFY: (frozenset({KeyType.KDK}), frozenset({KeyUsage.KEY_DERIVATION}),
                          frozenset({ModeOfUse.DERIVE})),
    Operation.CVV_GENERATE: (frozenset({KeyType.CVK}), frozenset({KeyUsage.CVK}), _GEN),
    Operation.CVV_VERIFY: (frozenset({KeyType.CVK}), frozenset({KeyUsage.CVK}), _VER),
    Operation.ARQC_VERIFY: (frozenset({KeyType.IMK}), frozenset({KeyUsage.EMV_AC}), frozenset({ModeOfUse.DERIVE})),
    Operation.SCRIPT_MAC: (frozenset({KeyType.IMK}), frozenset({KeyUsage.EMV_SMI}), frozenset({ModeOfUse.DERIVE})),
    Operation.SCRIPT_ENCRYPT: (frozenset({KeyType.IMK}), frozenset({KeyUsage.EMV_SMC}), frozenset({ModeOfUse.DERIVE})),
    Operation.VISA_PIN_CHANGE_MASK: (frozenset({KeyType.IMK}), frozenset({KeyUsage.EMV_AC}),
                                     frozenset({ModeOfUse.DERIVE})),
    Operation.DYNAMIC_CVV_VERIFY: (frozenset({KeyType.IMK}),
                                   frozenset({KeyUsage.EMV_OTHER, KeyUsage.EMV_DYNAMIC_NUMBERS}),
                                   frozenset({ModeOfUse.DERIVE})),
}

# The key types whose only mode of use is X (derive): they make keys, and are never used directly.
DERIVING: Final = frozenset({KeyType.KAK, KeyType.BDK, KeyType.IPEK, KeyType.IMK, KeyType.KDK})
# What a BDK may be: X9.24-1:2009's double-length TDES, or X9.24-3:2017's AES.
BDK_ALGORITHMS: Final = frozenset({Algorithm.TDES_2KEY, Algorithm.AES_128, Algorithm.AES_192, Algorithm.AES_256})
# What a KDK may be, and the keys it derives: option A style under TDES and SM4, SP 800-108 under AES.
KDK_ALGORITHMS: Final = frozenset({Algorithm.TDES_2KEY, Algorithm.TDES_3KEY, Algorithm.AES_128, Algorithm.AES_192,
                                   Algorithm.AES_256, Algorithm.SM4})
DIVERSIFIED: Final = frozenset({KeyType.MAK, KeyType.TAK, KeyType.DEK})
"""The key types a KDK derives: a user's authentication (MAC) or data key."""
# What an IMK may be: EMV's two-key TDES (Book 2 annex A1.4), or SM4 for PBOC 3.0 / UnionPay IC cards.
IMK_ALGORITHMS: Final = frozenset({Algorithm.TDES_2KEY, Algorithm.SM4})
# Keys whose every use is a derivation or a check a caller must not be able to run another way. An
# ECB form binds no key type (X9.17, the payShield variants: a KCV only), so one taken in that way
# could be taken in again as a DEK, and its encryptions would be the terminals' initial keys (BDK),
# the cards' own keys (IMK) or CVVs for any card (CVK). They travel only as TR-31 key blocks.
TR31_ONLY: Final = frozenset({KeyType.BDK, KeyType.IPEK, KeyType.CVK, KeyType.IMK, KeyType.KDK})
# Keys a new random version would break: their terminals or cards hold values made under the old
# one. RotateKey refuses them; a use or age limit records ``key.renewal_due`` for an officer.
NOT_ROTATED: Final = frozenset({KeyType.BDK, KeyType.IPEK, KeyType.CVK, KeyType.IMK, KeyType.KDK})

# The key types that are key pairs (RSA, SM2 or EC), not block-cipher keys.
KEY_PAIRS: Final = frozenset({KeyType.KTK, KeyType.CTK, KeyType.KAK, KeyType.SIG, KeyType.CSK})

# The modes each key pair may have: ALLOWED's PUBLIC_KEY row lists them all together, so it alone
# would admit a KTK of mode V or a CTK of mode S, which no command uses.
PAIR_MODES: Final[Mapping[tuple[KeyType, KeyUsage], frozenset[ModeOfUse]]] = {
    (KeyType.KTK, KeyUsage.ASYMMETRIC_KEY_WRAPPING): frozenset({ModeOfUse.DECRYPT_ONLY, ModeOfUse.SIGN_ONLY, _N}),
    (KeyType.CTK, KeyUsage.ASYMMETRIC_KEY_WRAPPING): frozenset({ModeOfUse.DECRYPT_ONLY, _N}),
    (KeyType.KAK, KeyUsage.ASYMMETRIC_KEY_WRAPPING): frozenset({ModeOfUse.DERIVE}),
    (KeyType.SIG, KeyUsage.DIGITAL_SIGNATURE): frozenset({ModeOfUse.SIGN_ONLY, ModeOfUse.MAC_VERIFY_ONLY}),
    (KeyType.CSK, KeyUsage.DIGITAL_SIGNATURE): frozenset({ModeOfUse.SIGN_ONLY}),
    (KeyType.CSK, KeyUsage.ASYMMETRIC_DATA_ENCRYPTION): frozenset({ModeOfUse.DECRYPT_ONLY}),
}

# The algorithms a SIG may be (one signature scheme each: crypto/signature.py); a CSK is SM2.
SIGNATURE_ALGORITHMS: Final = frozenset({Algorithm.SM2, Algorithm.ECC_P256, Algorithm.ECC_P384,
                                         Algorithm.RSA_2048, Algorithm.RSA_3072})

# What a KAK may derive (KeyService.AgreeKey): a zone's KEK in AES, the form TR-31 version D
# protects with, or in SM4 from an SM2 KAK (the national suite end to end). TDES is not
# derived (no parity in the agreement); no algorithm stronger than the KAK (STRENGTH).
AGREEABLE: Final[Mapping[KeyType, frozenset[KeyUsage]]] = {
    KeyType.ZMK: frozenset({KeyUsage.KBPK, KeyUsage.KEK}),
}
# An SM2 KAK also agrees a terminal's session keys with it (seed 000 annex B.2 f: SM4 keys for
# the terminal and its front end), stored as working keys: a TMK, a TPK, a TAK or MAK, a DEK.
AGREEABLE_SM2: Final[Mapping[KeyType, frozenset[KeyUsage]]] = {
    **AGREEABLE,
    KeyType.TMK: frozenset({KeyUsage.KBPK, KeyUsage.KEK}),
    KeyType.TPK: USAGES[KeyType.TPK],
    KeyType.TAK: USAGES[KeyType.TAK],
    KeyType.MAK: USAGES[KeyType.MAK],
    KeyType.DEK: USAGES[KeyType.DEK],
}
AGREEABLE_ALGORITHMS: Final[Mapping[Algorithm, frozenset[Algorithm]]] = {
    Algorithm.ECC_P521: frozenset({Algorithm.AES_128, Algorithm.AES_192, Algorithm.AES_256}),
    Algorithm.SM2: frozenset({Algorithm.AES_128, Algorithm.SM4}),
}

# The MAC algorithm a MAK's usage binds it to.
MAC_USAGE: Final[Mapping[MacAlgorithm, KeyUsage]] = {
    MacAlgorithm.ISO9797_ALG1: KeyUsage.MAC_ISO9797_ALG1,
    MacAlgorithm.UNIONPAY_POS: KeyUsage.MAC_ISO9797_ALG1,
    MacAlgorithm.ISO9797_ALG3: KeyUsage.MAC_ISO9797_ALG3,
    MacAlgorithm.CMAC: KeyUsage.MAC_CMAC,
    MacAlgorithm.HMAC_SHA256: KeyUsage.MAC_HMAC,
    MacAlgorithm.HMAC_SM3: KeyUsage.MAC_HMAC,
}

# Which keys a KEK of each type may carry: a TMK feeds one terminal.
EXPORTABLE_UNDER: Final[Mapping[KeyType, frozenset[KeyType]]] = {
    # A TMK may arrive under a ZMK from a key-loading site (as payShield's A6 allows).
    # A PSK arrives under a ZMK only from a system being retired (004 clause 6.3.2).
    KeyType.ZMK: frozenset({
        KeyType.ZPK, KeyType.MAK, KeyType.DEK, KeyType.PVK, KeyType.ZMK, KeyType.TMK, KeyType.PSK,
        KeyType.BDK,  # from the key injection facility that holds the terminals' BDK
        KeyType.CVK, KeyType.IMK,  # to and from a card personalisation bureau
        KeyType.IPEK,  # to a key injection facility
        KeyType.KDK,  # between the sites that derive users' keys
    }),
    KeyType.TMK: frozenset({KeyType.TPK, KeyType.TAK, KeyType.DEK, KeyType.IPEK}),
}


# The HSMSVC_VARIANT legacy form only (hsm.model.LegacyForm): the KEK's first byte
# XORed with its cargo's variant, so a key sent as a ZPK unwraps to garbage (and
# fails its KCV) if taken in as a DEK. hsmsvc's own table, read by no other HSM:
# kept for K0 ZMKs made before a form could be chosen (migration 0007). Partners
# use X917_ECB or PAYSHIELD_VARIANT (crypto/legacy.py).
ECB_VARIANTS: Final[Mapping[KeyType, int]] = {
    KeyType.ZMK: 0xA6,
    KeyType.TMK: 0x5A,
    KeyType.ZPK: 0x6A,
    KeyType.TPK: 0xDE,
    KeyType.PVK: 0x2B,
    KeyType.MAK: 0x50,
    KeyType.TAK: 0x74,
    KeyType.DEK: 0x9C,
    KeyType.PSK: 0x3C,
}


def check_binding(
    key_type: KeyType, usage: KeyUsage, algorithm: Algorithm, mode: ModeOfUse
) -> None:
    """Refuse a key whose type, usage and algorithm do not belong together."""
    if key_type is KeyType.LMK:
        raise InvalidInput("key_type", "an LMK is formed only by `hsmsvc lmk init`")
    if usage not in USAGES[key_type]:
        raise InvalidInput("usage", f"not a usage of a {key_type.value}")
    if algorithm.is_asymmetric != (key_type in KEY_PAIRS):
        raise InvalidInput("algorithm", "RSA, SM2 and ECC are for KTKs, CTKs, KAKs, SIGs and CSKs, which are key pairs")
    if key_type is KeyType.SIG and algorithm not in SIGNATURE_ALGORITHMS:
        raise InvalidInput("algorithm", "a SIG is SM2, ECC_P256, ECC_P384, RSA_2048 or RSA_3072")
    if key_type is KeyType.CSK and algorithm is not Algorithm.SM2:
        raise InvalidInput("algorithm", "a CSK is SM2")
    if algorithm in (Algorithm.ECC_P256, Algorithm.ECC_P384) and key_type is not KeyType.SIG:
        raise InvalidInput("algorithm", "ECC_P256 and ECC_P384 are for SIGs only")
    if key_type is KeyType.KAK and algorithm not in AGREEABLE_ALGORITHMS:
        raise InvalidInput("algorithm", "a KAK is ECC_P521 or SM2")
    if algorithm is Algorithm.ECC_P521 and key_type not in (KeyType.KAK, KeyType.CTK):
        # A P-521 CTK carries components by ECIES (crypto/ecies.py); a KTK is RSA or SM2.
        raise InvalidInput("algorithm", "ECC_P521 is for KAKs and CTKs only")
    pair_modes = PAIR_MODES.get((key_type, usage))
    if pair_modes is not None and mode not in pair_modes:
        raise InvalidInput("mode_of_use", f"not a mode of use for a {key_type.value} of usage {usage.value}")
    if (mode is ModeOfUse.DERIVE) != (key_type in DERIVING):
        raise InvalidInput("mode_of_use", "DERIVE is the mode of use of a KAK, BDK, IPEK, IMK or KDK, "
                           "and their only one")
    if key_type in (KeyType.BDK, KeyType.IPEK) and algorithm not in BDK_ALGORITHMS:
        raise InvalidInput("algorithm", "a BDK is TDES_2KEY (X9.24-1) or AES_128, AES_192 or AES_256 (X9.24-3)")
    if key_type is KeyType.KDK and algorithm not in KDK_ALGORITHMS:
        raise InvalidInput("algorithm", "a KDK is TDES, AES or SM4")
    if key_type is KeyType.IMK and algorithm not in IMK_ALGORITHMS:
        raise InvalidInput("algorithm", "an IMK is TDES_2KEY (EMV) or SM4 (PBOC 3.0 / UnionPay)")
    if key_type is KeyType.CVK and algorithm is not Algorithm.TDES_2KEY:
        raise InvalidInput("algorithm", "a CVK is TDES_2KEY: the CVV method's key pair A||B")
    if usage is KeyUsage.MAC_ISO9797_ALG3 and algorithm is not Algorithm.TDES_2KEY:
        raise InvalidInput("algorithm", "ISO 9797-1 algorithm 3 needs a two-key TDES key")
    if key_type is KeyType.PVK and algorithm is not Algorithm.TDES_2KEY:
        # Both are defined over DES; no network or vendor publishes an SM4 form (issue 33): say so.
        raise InvalidInput("algorithm", "IBM 3624 and Visa PVV need a two-key TDES PVK" + (
            ": no published method computes an offset or a PVV with SM4" if algorithm is Algorithm.SM4 else ""))
    if usage is KeyUsage.MAC_HMAC and algorithm not in (Algorithm.AES_256, Algorithm.SM4, Algorithm.HMAC_SM3_256):
        raise InvalidInput("algorithm", "an HMAC key is AES_256 (SHA-256), SM4 or HMAC_SM3_256 (SM3) sized")
    if algorithm is Algorithm.HMAC_SM3_256 and usage is not KeyUsage.MAC_HMAC:
        raise InvalidInput("algorithm", "HMAC_SM3_256 is for HMAC keys (usage M7) only")
    if not any(key_type in t and usage in u and mode in m for t, u, m in ALLOWED.values()):
        raise InvalidInput("mode_of_use", f"not a mode of use for a {key_type.value}")


def check_decimalization_table(usage: KeyUsage, table: str) -> None:
    """An IBM 3624 PVK carries its table: 16 digits holding each of 0-9.

    Requiring all ten digits blocks the decimalization-table attack's doctored
    tables (Bond and Zielinski, 2003) without a fixed list of tables.
    """
    if not isinstance(table, str):
        raise InvalidInput("decimalization_table", "a string")
    if usage is not KeyUsage.PIN_VERIFICATION_IBM3624:
        if table:
            raise InvalidInput("decimalization_table", "only for an IBM 3624 PVK")
        return
    if len(table) != 16 or not table.isascii() or not table.isdigit() or set("0123456789") - set(table):
        raise InvalidInput("decimalization_table", "16 digits holding each of 0-9")


def require(
    key_type: KeyType,
    usage: KeyUsage,
    mode: ModeOfUse,
    operation: Operation,
    exportability: Exportability | None = None,
) -> None:
    """Raise ``KeyUsageViolation`` unless the key may perform ``operation``.

    >>> require(KeyType.ZPK, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT, Operation.MAC_GENERATE)
    Traceback (most recent call last):
    hsmsvc.errors.KeyUsageViolation: key: a ZPK may not be used for MAC_GENERATE
    """
    if (operation, key_type, usage, mode, exportability) in _PERMITTED:
        return
    types, usages, modes = ALLOWED[operation]
    if key_type not in types or usage not in usages:
        raise KeyUsageViolation("key", f"a {key_type.value} may not be used for {operation.value}")
    if mode not in modes:
        raise KeyUsageViolation("key", f"its mode of use forbids {operation.value}")
    if operation is Operation.KEY_EXPORT and exportability is not Exportability.EXPORTABLE:
        raise KeyUsageViolation("key", "not exportable")
    _PERMITTED.add((operation, key_type, usage, mode, exportability))


# Combinations found permitted (a few dozen at most): the hot path decides by one lookup.
_PERMITTED: Final[set[tuple[Operation, KeyType, KeyUsage, ModeOfUse, Exportability | None]]] = set()
