"""Key diversification inside each backend (issue 35; bank design 004 clause 6.2.2): a user's key from
a KDK and the user's code, given out only as a TR-31 block. Checked against pyemv's HSM-checked card
key (the option A style) and an SP 800-108 reference written out here with pyca's CMAC primitive.
"""

from __future__ import annotations

import secrets

import pytest

from hsmsvc.errors import InvalidInput, KeyUsageViolation
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import Command, KeySpec
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from tests import reference as ref
from tests.hsm.helpers import form_known

H = bytes.fromhex
K0 = H("0123456789ABCDEFFEDCBA9876543210")  # pyemv's IMK (KCV 08D7)



def _ref_kbkdf_cmac(master: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """NIST SP 800-108 rev. 1 clause 4.1, counter mode, PRF = AES-CMAC (pyca's CMAC primitive), the 32-bit
    counter before Label || 00 || Context || [L]32: written out here, apart from hsmsvc's use of pyca's KBKDF."""
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    out = b""
    for i in range(1, -(-length // 16) + 1):
        c = cmac.CMAC(algorithms.AES(master))
        c.update(i.to_bytes(4, "big") + label + b"\x00" + context + (8 * length).to_bytes(4, "big"))
        out += c.finalize()
    return out[:length]


def test_keys_diversified_from_a_kdk(backend: Backend) -> None:
    from hsmsvc.hsm.commands import DiversifyKey
    from tests.hsm.helpers import form as form_key

    tdes = form_known(backend, KeyType.KDK, KeyUsage.KEY_DERIVATION, ModeOfUse.DERIVE, K0)
    kbpk, kbpk_clear = form_key(backend, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KBPK, ModeOfUse.ENCRYPT_DECRYPT)
    if Command.EXPORT_KEY not in backend.capabilities.commands:
        return
    mak = KeySpec("user-key", 1, KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_CMAC, ModeOfUse.MAC_GENERATE_VERIFY)
    # The option A style is EMV's card key derivation: pyemv's card key for PAN 1234567890123456, PSN 00
    # (Y = 3456789012345600) under K0 has KCV BAB0 (tests/test_cvn_hsm.py).
    block, check = backend.execute(DiversifyKey(master=tdes, kek=kbpk, data=H("3456789012345600"), derived=mak))
    clear = ref.tr31_unwrap(kbpk_clear, block.decode())[0]
    assert clear == ref.emv_card_key(K0, "1234567890123456", "00") and check[:2] == H("BAB0")
    assert block.decode()[5:8] == "M6T"
    # AES: SP 800-108 counter mode with CMAC, against the reference written out above.
    aes_clear = secrets.token_bytes(32)
    aes = form_known(backend, KeyType.KDK, KeyUsage.KEY_DERIVATION, ModeOfUse.DERIVE, aes_clear, Algorithm.AES_256)
    dek = KeySpec("user-dek", 1, KeyType.DEK, Algorithm.AES_256, KeyUsage.DATA, ModeOfUse.ENCRYPT_DECRYPT)
    block, _ = backend.execute(DiversifyKey(master=aes, kek=kbpk, data=b"employee-004217", derived=dek))
    assert ref.tr31_unwrap(kbpk_clear, block.decode())[0] == _ref_kbkdf_cmac(
        aes_clear, b"hsmsvc key diversification", b"employee-004217", 32)
    # Only a user's MAK, TAK or DEK; only under a K1 KEK no weaker than it; only as the master gives.
    zpk = KeySpec("z", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)
    with pytest.raises(InvalidInput, match="^key_type"):
        backend.execute(DiversifyKey(master=tdes, kek=kbpk, data=bytes(8), derived=zpk))
    with pytest.raises(InvalidInput, match="^algorithm"):
        backend.execute(DiversifyKey(master=aes, kek=kbpk, data=b"x", derived=mak))
    k0, _ = form_key(backend, KeyType.ZMK, Algorithm.AES_256, KeyUsage.KEK, ModeOfUse.ENCRYPT_DECRYPT)
    with pytest.raises(KeyUsageViolation, match="TR-31"):
        backend.execute(DiversifyKey(master=tdes, kek=k0, data=bytes(8), derived=mak))
    with pytest.raises(InvalidInput, match="^diversification_data"):
        backend.execute(DiversifyKey(master=tdes, kek=kbpk, data=bytes(7), derived=mak))
