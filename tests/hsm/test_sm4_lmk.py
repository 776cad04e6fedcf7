"""An SM4 LMK in the soft backend (issue 33, GB/T 39786 national-only deployments).

Every key block under an SM4 LMK is read back with the independent reference's SM4 key
block (tests/reference.py: TR-31:2018 clause 5.3.2.3 with SM4 for AES, pyca/cryptography's
SM4, GB/T 32907-2016), so the LMK really is SM4 and not AES under another name.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from hsmsvc.crypto import components, kcv
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.commands import Kcv, LmkComponents, TranslateLmk
from hsmsvc.hsm.soft import sealed
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from tests import reference as ind
from tests.hsm.helpers import form


def _header_length(blob: bytes) -> int:
    """16 plus the optional blocks (hsmsvc's attribute block and a PB pad)."""
    text, pos = blob.decode("ascii"), 16
    for _ in range(int(text[12:14])):
        pos += int(text[pos + 2: pos + 4], 16)
    return pos


def test_key_blocks_under_an_sm4_lmk_are_sm4_key_blocks(tmp_path: Path) -> None:
    lmk = secrets.token_bytes(16)
    b = SoftBackend(lmk, Algorithm.SM4, anchor_path=tmp_path / "a")
    assert b.capabilities.lmk is Algorithm.SM4
    assert b.lmk_kcv() == ind.kcv("SM4", lmk)
    zpk, clear = form(b, KeyType.ZPK, Algorithm.SM4, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)
    assert zpk.blob[:1] == b"D" and zpk.blob[7:8] == b"4"
    got, _pad = ind.tr31_unwrap(lmk, zpk.blob.decode(), _header_length(zpk.blob), sm4=True)
    assert got == clear
    with pytest.raises(ValueError):  # not an AES-128 block under the same bytes
        ind.tr31_unwrap(lmk, zpk.blob.decode(), _header_length(zpk.blob))
    assert b.execute(Kcv(key=zpk)) == ind.kcv("SM4", clear)


def test_an_sm4_lmk_backs_up_as_sm4_components(tmp_path: Path) -> None:
    lmk = secrets.token_bytes(16)
    parts = SoftBackend(lmk, Algorithm.SM4, anchor_path=tmp_path / "a").execute(LmkComponents(n=3))
    assert [len(p) for p in parts] == [16, 16, 16]
    assert components.combine(Algorithm.SM4, parts) == lmk


def test_keys_move_from_an_aes_lmk_to_an_sm4_one(tmp_path: Path) -> None:
    """``ceremony lmk migrate`` AES_256 to SM4: payShield's key change storage, across algorithms."""
    old_lmk, new_lmk = secrets.token_bytes(32), secrets.token_bytes(16)
    old = SoftBackend(old_lmk, anchor_path=tmp_path / "old")
    zmk, clear = form(old, KeyType.ZMK, Algorithm.SM4, KeyUsage.KEK, ModeOfUse.NO_RESTRICTIONS)
    migrating = SoftBackend(new_lmk, Algorithm.SM4, anchor_path=tmp_path / "m", old_lmk=(Algorithm.AES_256, old_lmk))
    moved = migrating.execute(TranslateLmk(key=zmk))
    assert ind.tr31_unwrap(new_lmk, moved.blob.decode(), _header_length(moved.blob), sm4=True)[0] == clear
    assert SoftBackend(new_lmk, Algorithm.SM4, anchor_path=tmp_path / "n").execute(Kcv(key=moved)) == zmk.kcv


def test_lmk_lengths_follow_the_algorithm(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        SoftBackend(secrets.token_bytes(32), Algorithm.SM4)
    with pytest.raises(InvalidInput):
        SoftBackend(secrets.token_bytes(16))
    with pytest.raises(InvalidInput):
        SoftBackend(secrets.token_bytes(16), Algorithm.SM4, old_lmk=(Algorithm.SM4, secrets.token_bytes(32)))


def test_a_sealed_sm4_lmk_opens_as_one(tmp_path: Path) -> None:
    lmk = secrets.token_bytes(16)
    path = tmp_path / "lmk.sealed"
    path.write_bytes(sealed.seal(Algorithm.SM4, lmk, b"a passphrase of length", sealed.ScryptParams(log2_n=14)))
    b = SoftBackend.from_sealed(path, b"a passphrase of length")
    assert b.capabilities.lmk is Algorithm.SM4 and b.lmk_kcv() == kcv.kcv(Algorithm.SM4, lmk)
