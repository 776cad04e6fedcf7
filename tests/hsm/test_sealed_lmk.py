"""The soft backend's sealed LMK file."""

import json

import pytest

from hsmsvc.crypto import kcv
from hsmsvc.errors import InvalidInput, PermissionDenied
from hsmsvc.hsm.soft import sealed
from hsmsvc.types import Algorithm

FAST = sealed.ScryptParams(log2_n=14)  # tests only: the default is 2**17
PASS = b"correct horse battery staple"
LMK = bytes(range(32))


def test_round_trip_and_kcv() -> None:
    blob = sealed.seal(Algorithm.AES_256, LMK, PASS, FAST)
    alg, lmk, check = sealed.unseal(blob, PASS)
    assert (alg, lmk) == (Algorithm.AES_256, LMK)
    assert check == kcv.kcv(Algorithm.AES_256, LMK)


def test_sm4_lmk() -> None:
    blob = sealed.seal(Algorithm.SM4, LMK[:16], PASS, FAST)
    assert sealed.unseal(blob, PASS)[:2] == (Algorithm.SM4, LMK[:16])


def test_file_holds_no_clear_key() -> None:
    blob = sealed.seal(Algorithm.AES_256, LMK, PASS, FAST)
    assert LMK.hex() not in blob.decode().lower() and PASS not in blob


def test_wrong_passphrase_refused() -> None:
    blob = sealed.seal(Algorithm.AES_256, LMK, PASS, FAST)
    with pytest.raises(PermissionDenied) as e:
        sealed.unseal(blob, b"incorrect horse battery")
    assert "horse" not in str(e.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["header"].__setitem__("kcv", "000000"),
        lambda d: d["header"].__setitem__("algorithm", "SM4"),
        lambda d: d.__setitem__("ciphertext", "00" + d["ciphertext"][2:]),
    ],
)
def test_any_altered_field_refused(edit: object) -> None:
    doc = json.loads(sealed.seal(Algorithm.AES_256, LMK, PASS, FAST))
    edit(doc)  # type: ignore[operator]
    with pytest.raises(PermissionDenied):
        sealed.unseal(json.dumps(doc).encode(), PASS)


@pytest.mark.parametrize("blob", [b"", b"{}", b"not json", b'{"header": {"format": "other"}}'])
def test_malformed_file_refused(blob: bytes) -> None:
    with pytest.raises(InvalidInput):
        sealed.unseal(blob, PASS)


def test_weak_inputs_refused() -> None:
    with pytest.raises(InvalidInput):
        sealed.seal(Algorithm.AES_256, LMK, b"short", FAST)
    with pytest.raises(InvalidInput):
        sealed.seal(Algorithm.TDES_2KEY, LMK[:16], PASS, FAST)
    with pytest.raises(InvalidInput):
        sealed.ScryptParams(log2_n=10)
