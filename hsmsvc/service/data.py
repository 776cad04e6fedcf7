"""Field-level data encryption (account, amount, time) under DEKs.

IVs for CBC and GCM come from the backend's random source unless the caller
supplies one; GCM IVs are always fresh (NIST SP 800-38D clause 8: an IV must
never repeat under one key), so a caller-chosen GCM IV is refused.
"""

from __future__ import annotations

from typing import Sequence

from hsmsvc.crypto import mac
from hsmsvc.crypto.fields import GCM_IV_LENGTH
from hsmsvc.errors import HsmsvcError, InvalidInput
from hsmsvc.hsm.commands import DecryptData, EncryptData, EncryptFields, Random, ReencryptData
from hsmsvc.hsm.model import MAX_RANDOM, FieldParams
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import KeyRef
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import CipherMode, DataPadding, HashAlgorithm

__all__ = ["decrypt", "digest", "encrypt", "encrypt_batch", "reencrypt"]


def _iv_size(mode: CipherMode, block: int) -> int:
    """How many fresh random bytes a field's IV takes: none for ECB."""
    return GCM_IV_LENGTH if mode is CipherMode.GCM else block if mode is CipherMode.CBC else 0


def _fresh(s: Services, *, mode: CipherMode, padding: DataPadding, iv: bytes, aad: bytes, block: int) -> FieldParams:
    if mode is CipherMode.GCM and iv:
        raise InvalidInput("iv", "chosen by hsmsvc for GCM; leave empty")
    size = _iv_size(mode, block)
    if not iv and size:
        iv = s.backend.execute(Random(length=size))
    return FieldParams(mode, iv, padding, aad)


def encrypt(
    s: Services, caller: Caller, *, key: KeyRef, mode: CipherMode, padding: DataPadding,
    iv: bytes, aad: bytes, data: bytes,
) -> tuple[bytes, bytes, int]:
    """Returns (ciphertext, IV used, key version)."""
    k = s.key(caller, key, Operation.DATA_ENCRYPT)
    params = _fresh(s, mode=mode, padding=padding, iv=iv, aad=aad, block=k.cryptogram.spec.algorithm.block_size)
    out = s.backend.execute(EncryptData(key=k.cryptogram, params=params, data=data))
    s.observer.key_used(k)
    return out, params.iv, k.version


def encrypt_batch(
    s: Services, caller: Caller, *, key: KeyRef, mode: CipherMode, padding: DataPadding,
    aad: bytes, fields: Sequence[bytes],
) -> tuple[list[tuple[bytes, bytes] | HsmsvcError], int]:
    """Each field under its own fresh IV; returns (ciphertext, IV) or an error per field."""
    k = s.key(caller, key, Operation.DATA_ENCRYPT)
    params = FieldParams(mode, b"", padding, aad)
    ivs = _fresh_ivs(s, mode, k.cryptogram.spec.algorithm.block_size, len(fields))
    cts = s.backend.execute(EncryptFields(key=k.cryptogram, params=params, ivs=ivs, plaintexts=fields))
    out: list[tuple[bytes, bytes] | HsmsvcError] = [
        (ct, iv) if isinstance(ct, bytes) else ct for ct, iv in zip(cts, ivs)]
    s.observer.key_used(k, sum(1 for r in out if isinstance(r, tuple)))
    return out, k.version


def _fresh_ivs(s: Services, mode: CipherMode, block: int, n: int) -> list[bytes]:
    """``n`` fresh IVs for ``mode``, as :func:`_fresh` draws one, from as few random calls as the
    backend's limit allows."""
    size = _iv_size(mode, block)
    if not size or not n:
        return [b""] * n
    per_call = MAX_RANDOM // size
    pool = b"".join(s.backend.execute(Random(length=size * min(per_call, n - i))) for i in range(0, n, per_call))
    return [pool[i:i + size] for i in range(0, n * size, size)]


def decrypt(
    s: Services, caller: Caller, *, key: KeyRef, mode: CipherMode, padding: DataPadding,
    iv: bytes, aad: bytes, data: bytes,
) -> bytes:
    k = s.key(caller, key, Operation.DATA_DECRYPT)
    out = s.backend.execute(DecryptData(key=k.cryptogram, params=FieldParams(mode, iv, padding, aad),
                                        data=data))
    s.observer.key_used(k)
    return out


def reencrypt(
    s: Services, caller: Caller, *,
    source: KeyRef, source_params: FieldParams,
    destination: KeyRef, mode: CipherMode, padding: DataPadding, aad: bytes,
    data: bytes,
) -> tuple[bytes, bytes, int]:
    """Translate a field to another DEK; returns (ciphertext, IV, destination version)."""
    src = s.key(caller, source, Operation.DATA_DECRYPT, "source_key")
    dst = s.key(caller, destination, Operation.DATA_ENCRYPT, "destination_key")
    params = _fresh(s, mode=mode, padding=padding, iv=b"", aad=aad, block=dst.cryptogram.spec.algorithm.block_size)
    out = s.backend.execute(ReencryptData(src=src.cryptogram, src_params=source_params, dst=dst.cryptogram,
                                          dst_params=params, data=data))
    s.observer.key_used(dst)
    return out, params.iv, dst.version


def digest(s: Services, algorithm: HashAlgorithm, data: bytes) -> bytes:
    """A hash computed by the service (GB/T 39786 asks that the product compute it): no key, no state."""
    s.mode.require_hash(algorithm)
    return mac.digest(algorithm, data)
