"""SM2 ciphertexts whose C1 is compressed (GB/T 32918.4-2016 clause 6.1 A2 lets the sender choose
the point's form, GB/T 32918.1-2016 clause 4.2.10): accepted as the uncompressed form is.

The ciphertexts are OpenSSL's (``openssl pkeyutl -encrypt``, SM2Cipher DER of GB/T 35276-2017,
through tests/reference.sm2_wrap); the test takes C1's x and y out of the DER and writes the
compressed form itself, 02 or 03 by y's parity."""

from __future__ import annotations

import secrets

import pytest

from hsmsvc.crypto import keytransport, sm2
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm
from tests import reference as ref
from tests.sm2tools import openssl, sm2cipher


@pytest.mark.parametrize("length", [1, 16, 24, 32, 100])
def test_compressed_c1_decrypts_as_the_uncompressed_one(length: int) -> None:
    openssl()
    key = sm2.generate_private_key()
    plain = secrets.token_bytes(length)
    (x, y), c3, c2 = sm2cipher(ref.sm2_wrap(sm2.public_key_to_der(key.public), plain))
    uncompressed = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big") + c3 + c2
    compressed = bytes([2 + (y & 1)]) + x.to_bytes(32, "big") + c3 + c2
    assert sm2.decrypt(key, uncompressed) == plain
    assert sm2.decrypt(key, compressed) == plain
    # The key-transport path (one-time PIN keys, ceremony components) takes both forms too.
    ktk = keytransport.load_private_key(Algorithm.SM2, key.d.to_bytes(32, "big"))
    assert ktk.decrypt(compressed) == plain


def test_a_compressed_c1_of_the_wrong_parity_or_off_the_curve_does_not_decrypt() -> None:
    openssl()
    key = sm2.generate_private_key()
    (x, y), c3, c2 = sm2cipher(ref.sm2_wrap(sm2.public_key_to_der(key.public), b"sixteen byte key"))
    wrong = bytes([3 - (y & 1)]) + x.to_bytes(32, "big") + c3 + c2
    for bad in (wrong, b"\x02" + bytes(32) + c3 + c2, b"\x05" + x.to_bytes(32, "big") + c3 + c2):
        with pytest.raises(InvalidInput) as e:
            sm2.decrypt(key, bad)
        assert str(e.value) == "ciphertext: does not decrypt"
