"""Key diversification inside each backend (issue 35; bank design 004 clause 6.2.2): a user's key from
a KDK and the user's code, given out only as a TR-31 block. Checked against pyemv's HSM-checked card
key step (the option A style) and an SP 800-108 reference written out here with pyca's CMAC primitive.
"""

from __future__ import annotations

import hashlib
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
    # Option A (pyemv's HSM-checked card key derivation, tests/test_reference.py) over Y, the first 8 bytes
    # of SHA-256 of the label, the derived key's purpose and the user's code.
    block, check = backend.execute(DiversifyKey(master=tdes, kek=kbpk, data=b"EMP04217", derived=mak))
    clear = ref.tr31_unwrap(kbpk_clear, block.decode())[0]
    digest = hashlib.sha256(b"hsmsvc key diversification\x00MAK/M6\x00EMP04217").digest()
    y = bytes([digest[0] | 0xA0]) + digest[1:8]  # a first nibble no card key's digits have
    assert clear == ref.option_a(K0, y) and check == ref.tdes_kcv(clear)
    assert block.decode()[5:8] == "M6T"
    # The purpose is bound: the same code gives a user's data key apart from the MAC key, and no code
    # makes the master encipher a block of the caller's choice (a card's Y: its EMV card key).
    dek2 = KeySpec("user-dek", 1, KeyType.DEK, Algorithm.TDES_2KEY, KeyUsage.DATA, ModeOfUse.ENCRYPT_DECRYPT)
    other, _ = backend.execute(DiversifyKey(master=tdes, kek=kbpk, data=b"EMP04217", derived=dek2))
    assert ref.tr31_unwrap(kbpk_clear, other.decode())[0] != clear
    card, _ = backend.execute(DiversifyKey(master=tdes, kek=kbpk, data=H("3456789012345600"), derived=mak))
    assert ref.tr31_unwrap(kbpk_clear, card.decode())[0] != ref.emv_card_key(K0, "1234567890123456", "00")
    # AES: SP 800-108 counter mode with CMAC, against the reference written out above.
    aes_clear = secrets.token_bytes(32)
    aes = form_known(backend, KeyType.KDK, KeyUsage.KEY_DERIVATION, ModeOfUse.DERIVE, aes_clear, Algorithm.AES_256)
    dek = KeySpec("user-dek", 1, KeyType.DEK, Algorithm.AES_256, KeyUsage.DATA, ModeOfUse.ENCRYPT_DECRYPT)
    block, _ = backend.execute(DiversifyKey(master=aes, kek=kbpk, data=b"employee-004217", derived=dek))
    assert ref.tr31_unwrap(kbpk_clear, block.decode())[0] == _ref_kbkdf_cmac(
        aes_clear, b"hsmsvc key diversification", b"DEK/D0\x00employee-004217", 32)
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
        backend.execute(DiversifyKey(master=tdes, kek=kbpk, data=b"", derived=mak))
    # Only under a KEK that may carry the type: a TMK carries a TAK or DEK, not a MAK.
    tmk, _ = form_key(backend, KeyType.TMK, Algorithm.AES_256, KeyUsage.KBPK, ModeOfUse.ENCRYPT_DECRYPT)
    with pytest.raises(KeyUsageViolation, match="carry"):
        backend.execute(DiversifyKey(master=tdes, kek=tmk, data=b"x", derived=mak))
