"""A TR-31 block's header against the key it is imported as (TR-31:2018 clause 5.1, table 1).

What any backend that opens TR-31 blocks holds a verified header to: the algorithm byte for a
key, the fields a template and a header must agree on, and the algorithm a header names.
"""

from __future__ import annotations

from typing import Final

from hsmsvc.crypto import tr31
from hsmsvc.errors import KeyUsageViolation
from hsmsvc.hsm.model import BlockTemplate, KeySpec
from hsmsvc.types import Algorithm, Exportability, KeyUsage, ModeOfUse

__all__ = ["block_algorithm", "check_header", "header_spec"]

_BLOCK_ALGORITHM: Final = {
    Algorithm.TDES_2KEY: tr31.KeyBlockAlgorithm.TDES,
    Algorithm.TDES_3KEY: tr31.KeyBlockAlgorithm.TDES,
    Algorithm.AES_128: tr31.KeyBlockAlgorithm.AES,
    Algorithm.AES_192: tr31.KeyBlockAlgorithm.AES,
    Algorithm.AES_256: tr31.KeyBlockAlgorithm.AES,
    Algorithm.SM4: tr31.KeyBlockAlgorithm.SM4,
    Algorithm.RSA_2048: tr31.KeyBlockAlgorithm.RSA,
    Algorithm.RSA_3072: tr31.KeyBlockAlgorithm.RSA,
    Algorithm.SM2: tr31.KeyBlockAlgorithm.ELLIPTIC_CURVE,
    Algorithm.ECC_P521: tr31.KeyBlockAlgorithm.ELLIPTIC_CURVE,
    Algorithm.ECC_P256: tr31.KeyBlockAlgorithm.ELLIPTIC_CURVE,
    Algorithm.ECC_P384: tr31.KeyBlockAlgorithm.ELLIPTIC_CURVE,
}


def block_algorithm(spec: KeySpec) -> tr31.KeyBlockAlgorithm:
    """The TR-31 algorithm byte for a key: HMAC keys are 'H' whatever their size."""
    if spec.usage is KeyUsage.MAC_HMAC:
        return tr31.KeyBlockAlgorithm.HMAC
    return _BLOCK_ALGORITHM[spec.algorithm]


def check_header(header: tr31.Header, spec: KeySpec, length: int) -> None:
    """A verified TR-31 block's header against the template (TR-31:2018 clause 5.1, table 1 fields).

    Called only after the MAC verified: the header travels in clear and the block is authentic, so
    the field that disagrees is named (the generic error is for what a wrong KBPK or a forged block
    would cause). ``length``: the key's byte length, which for AES the header does not give.
    """
    if header.usage is not spec.usage:
        raise KeyUsageViolation("key_block", f"header key usage {header.usage.value} differs from the "
                                             f"template's {spec.usage.value}")
    want = block_algorithm(spec)
    if header.algorithm is not want:
        raise KeyUsageViolation("key_block", f"header algorithm {header.algorithm.value} ({header.algorithm.name}) "
                                             f"differs from the template's {spec.algorithm.value}")
    if length != spec.algorithm.key_length:
        raise KeyUsageViolation("key_block", f"carries a {8 * length}-bit key, not the template's "
                                             f"{spec.algorithm.value}")
    if header.mode_of_use not in (spec.mode_of_use, ModeOfUse.NO_RESTRICTIONS):
        raise KeyUsageViolation("key_block", f"header mode of use {header.mode_of_use.value} differs from the "
                                             f"template's {spec.mode_of_use.value}")
    if header.exportability is not Exportability.EXPORTABLE and spec.exportability is Exportability.EXPORTABLE:
        raise KeyUsageViolation("key_block", f"header exportability {header.exportability.value} does not permit "
                                             f"the template's {spec.exportability.value}")


# TR-31:2018 table 1's algorithm byte and the verified key's length: the only algorithms a header names.
_FROM_HEADER: Final = {
    (tr31.KeyBlockAlgorithm.TDES, 16): Algorithm.TDES_2KEY,
    (tr31.KeyBlockAlgorithm.TDES, 24): Algorithm.TDES_3KEY,
    (tr31.KeyBlockAlgorithm.AES, 16): Algorithm.AES_128,
    (tr31.KeyBlockAlgorithm.AES, 24): Algorithm.AES_192,
    (tr31.KeyBlockAlgorithm.AES, 32): Algorithm.AES_256,
    # Not TR-31's: byte 4 for SM4 is hsmsvc's bilateral convention (docs/architecture.md, "SM4 key blocks").
    (tr31.KeyBlockAlgorithm.SM4, 16): Algorithm.SM4,
}


def header_spec(header: tr31.Header, template: KeySpec | BlockTemplate, length: int) -> KeySpec:
    """The spec a verified block is imported as: ``template``, or its algorithm taken from the header.

    Called only after the MAC verified, like :func:`check_header`: the header is authentic, so an
    algorithm it cannot name (H, R, E, S, or an odd length) is named in the refusal.
    """
    if isinstance(template, KeySpec):
        return template
    algorithm = _FROM_HEADER.get((header.algorithm, length))
    if algorithm is None:
        raise KeyUsageViolation("key_block", f"header algorithm {header.algorithm.value} with a {8 * length}-bit "
                                             "key names no algorithm hsmsvc takes; state template.algorithm")
    return template.with_algorithm(algorithm)
