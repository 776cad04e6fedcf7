"""A key loaded into the PKCS#11 token: the backend's ``LoadedKey``, one session object per key."""

from __future__ import annotations

from typing import Any, Final

from pkcs11 import Mechanism
from pkcs11 import exceptions as p11e

from hsmsvc.crypto import mac
from hsmsvc.errors import (
    InvalidInput,
    Unsupported,
)
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.pkcs11.running import RunningOps
from hsmsvc.types import (
    CipherMode,
    MacAlgorithm,
    Padding,
)


_ECB: Final = {True: Mechanism.DES3_ECB, False: Mechanism.AES_ECB}
_CBC: Final = {True: Mechanism.DES3_CBC, False: Mechanism.AES_CBC}
_CMAC: Final = {True: Mechanism.DES3_CMAC, False: Mechanism.AES_CMAC}
# Larger inputs take a single-part operation, whose set-up they amortise anyway.
_RUNNING_MAX: Final = 8 * 1024


class TokenKey:
    """A verified key as a session object; every call runs under the backend's lock.

    ECB goes through the key's running operations once it is in steady use
    (:mod:`.running`); anything else is a single-part operation.
    """

    __slots__ = ("_ecb", "_running", "algorithm", "ident", "kcv", "obj", "spec")

    def __init__(self, spec: KeySpec, obj: Any, check_value: bytes, ident: bytes, running: RunningOps) -> None:
        self.spec = spec
        self.kcv = check_value
        self.algorithm = spec.algorithm
        self.obj = obj
        self.ident = ident
        self._running = running
        self._ecb = _ECB[spec.algorithm.is_tdes]

    def __repr__(self) -> str:
        return f"TokenKey({self.spec.key_id} v{self.spec.version})"

    def _run(self, data: bytes, encrypt: bool) -> bytes | None:
        """ECB on the key's running operation, or ``None`` for a single-part one."""
        if not data or len(data) > _RUNNING_MAX or len(data) % self.algorithm.block_size:
            return None
        running, ident = self._running, self.ident
        try:
            op = running.get(ident, self.obj.handle, encrypt, self._ecb)
        except p11e.PKCS11Error:
            return None  # no session to spare: this call goes single-part
        if op is None:
            return None
        try:
            return op(data)
        except BaseException:
            running.stop(ident)
            raise

    def encrypt(self, data: bytes) -> bytes:
        out = self._run(data, True)
        return bytes(self.obj.encrypt(data, mechanism=self._ecb)) if out is None else out

    def decrypt(self, data: bytes) -> bytes:
        out = self._run(data, False)
        return bytes(self.obj.decrypt(data, mechanism=self._ecb)) if out is None else out

    def _iv(self, iv: bytes) -> bytes:
        if not isinstance(iv, (bytes, bytearray)) or len(iv) != self.algorithm.block_size:
            raise InvalidInput("iv", f"{self.algorithm.block_size} bytes")
        return bytes(iv)

    def _blocks(self, data: bytes) -> bytes:
        if len(data) % self.algorithm.block_size:
            raise InvalidInput("data", f"a multiple of {self.algorithm.block_size} bytes")
        return data

    def cbc_encrypt(self, iv: bytes, data: bytes) -> bytes:
        mech = _CBC[self.algorithm.is_tdes]
        return bytes(self.obj.encrypt(self._blocks(data), mechanism=mech, mechanism_param=self._iv(iv)))

    def cbc_decrypt(self, iv: bytes, data: bytes) -> bytes:
        mech = _CBC[self.algorithm.is_tdes]
        return bytes(self.obj.decrypt(self._blocks(data), mechanism=mech, mechanism_param=self._iv(iv)))

    def field_encrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes) -> bytes:
        self._field(mode, iv, aad)
        if mode is CipherMode.CBC:
            return self.cbc_encrypt(iv, data)
        return self.encrypt(self._blocks(data))

    def field_decrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes) -> bytes:
        self._field(mode, iv, aad)
        if not data:
            raise InvalidInput("ciphertext", f"a multiple of {self.algorithm.block_size} bytes")
        if mode is CipherMode.CBC:
            return self.cbc_decrypt(iv, data)
        return self.decrypt(self._blocks(data))

    @staticmethod
    def _field(mode: CipherMode, iv: bytes, aad: bytes) -> None:
        if mode not in (CipherMode.ECB, CipherMode.CBC):
            raise Unsupported("mode", f"{mode.value} is not supported by this backend")
        if aad:
            raise InvalidInput("aad", "only with GCM")
        if mode is CipherMode.ECB and iv:
            raise InvalidInput("iv", "empty for ECB")

    def mac(self, algorithm: MacAlgorithm, padding: Padding, data: bytes) -> bytes:
        if algorithm is MacAlgorithm.ISO9797_ALG1:
            bs = self.algorithm.block_size
            padded = mac.pad(data, padding, bs)
            return self.cbc_encrypt(bytes(bs), padded)[-bs:]
        if algorithm is MacAlgorithm.CMAC:
            return bytes(self.obj.sign(data, mechanism=_CMAC[self.algorithm.is_tdes]))
        if algorithm is MacAlgorithm.HMAC_SHA256:
            return bytes(self.obj.sign(data, mechanism=Mechanism.SHA256_HMAC))
        raise Unsupported("mac_algorithm", f"{algorithm.value} is not supported by this backend")
