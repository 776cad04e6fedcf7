"""Builders the backend tests share: keys formed from components the test knows, capability gates.

Not a test module, so test modules import from here and never from one another. The
independent crypto they check results with lives in tests/reference.py.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import Command, KeyCryptogram, KeySpec
from hsmsvc.types import Algorithm, Exportability, KeyType, KeyUsage, ModeOfUse
from tests.reference import odd_parity, rsa_oaep_wrap, sm2_wrap
from hsmsvc.hsm.commands import FormKey, GenerateKey

PAN = "4012345678909"
PIN = "1234"
_ids = iter(range(1, 1_000_000))


def clear_key(alg: Algorithm) -> bytes:
    """A fresh random clear key for ``alg``, with DES parity if it is TDES."""
    k = secrets.token_bytes(alg.key_length)
    return odd_parity(k) if alg.is_tdes else k


def form_known(backend: Backend, key_type: KeyType, usage: KeyUsage, mode: ModeOfUse, clear: bytes,
               alg: Algorithm = Algorithm.TDES_2KEY) -> KeyCryptogram:
    """A key of a published vector's value ``clear``, formed from two random components."""
    c1 = secrets.token_bytes(len(clear))
    spec = KeySpec(f"k{next(_ids)}", 1, key_type, alg, usage, mode)
    cg, _ = backend.execute(FormKey(spec=spec, components=[c1, bytes(a ^ b for a, b in zip(clear, c1))]))
    return cg


def form(
    backend: Backend,
    key_type: KeyType,
    alg: Algorithm,
    usage: KeyUsage,
    mode: ModeOfUse = ModeOfUse.NO_RESTRICTIONS,
    exportability: Exportability = Exportability.NON_EXPORTABLE,
    decimalization_table: str = "",
) -> tuple[KeyCryptogram, bytes]:
    """A key from two components; returns the cryptogram and the clear key the test knows."""
    clear = clear_key(alg)
    c1 = secrets.token_bytes(alg.key_length)
    c2 = bytes(a ^ b for a, b in zip(clear, c1))
    spec = KeySpec(f"k{next(_ids)}", 1, key_type, alg, usage, mode, exportability,
                   decimalization_table=decimalization_table)
    cg, kcvs = backend.execute(FormKey(spec=spec, components=[c1, c2]))
    assert len(kcvs) == 2
    return cg, clear


def needs(backend: Backend, command: Command, *algs: Algorithm) -> None:
    caps = backend.capabilities
    if command not in caps.commands or any(a not in caps.algorithms for a in algs):
        pytest.skip(f"backend lacks {command.value} {[a.value for a in algs]}")


_ktks: dict[tuple[int, Algorithm], KeyCryptogram] = {}


def ktk(backend: Backend, alg: Algorithm) -> KeyCryptogram:
    """One KTK per backend and algorithm: RSA key generation is slow."""
    needs(backend, Command.ONE_TIME_PIN_KEY, alg)
    k = (id(backend), alg)
    if k not in _ktks:
        spec = KeySpec(f"ktk-{secrets.token_hex(4)}", 1, KeyType.KTK, alg, KeyUsage.ASYMMETRIC_KEY_WRAPPING,
                       ModeOfUse.DECRYPT_ONLY)
        _ktks[k] = backend.execute(GenerateKey(spec=spec))
    return _ktks[k]


def terminal_wrap(alg: Algorithm, public_der: bytes, key: bytes, tmp: Path) -> bytes:
    """What a terminal does with the published public key (tests/reference.py's wraps; ``tmp`` unused)."""
    if alg is Algorithm.SM2:
        return sm2_wrap(public_der, key)
    return rsa_oaep_wrap(public_der, key)
