"""The soft backend's LMK at rest: AES-256-GCM under a key derived by scrypt (RFC 7914).

The file is JSON: a header (format, LMK algorithm, LMK KCV, scrypt parameters and
salt) and the GCM nonce and ciphertext. The whole header is the GCM associated
data, so no field can be changed without the seal failing. After opening, the
LMK's KCV is checked against the header's, so a file that opens but holds
another key is refused as well.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hsmsvc.crypto import compare, kcv
from hsmsvc.errors import InvalidInput, PermissionDenied
from hsmsvc.types import Algorithm

__all__ = ["MIN_PASSPHRASE", "ScryptParams", "check_passphrase", "recorded_kcv", "seal", "unseal"]

FORMAT = "hsmsvc-sealed-lmk/1"
SHARES_FORMAT = "hsmsvc-sealed-lmk-shares/1"
"""The dual-control form (:mod:`hsmsvc.hsm.soft.sharesealed`), named here to say so when it is given a passphrase."""
LMK_ALGORITHMS = (Algorithm.AES_256, Algorithm.SM4)


@dataclass(frozen=True)
class ScryptParams:
    """RFC 7914 cost parameters; the default costs about 128 MiB and a fraction of a second."""

    log2_n: int = 17
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if not (14 <= self.log2_n <= 22 and 1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise InvalidInput("scrypt", "log2_n 14-22, r 1-32, p 1-16")


MIN_PASSPHRASE = 12
"""Bytes a sealing passphrase needs at least."""


def check_passphrase(passphrase: bytes | bytearray) -> None:
    """``InvalidInput`` unless ``passphrase`` may seal an LMK."""
    if not isinstance(passphrase, (bytes, bytearray)) or len(passphrase) < MIN_PASSPHRASE:
        raise InvalidInput("passphrase", f"at least {MIN_PASSPHRASE} bytes")


def _kek(passphrase: bytes, salt: bytes, params: ScryptParams) -> bytes:
    check_passphrase(passphrase)
    kdf = Scrypt(salt=salt, length=32, n=1 << params.log2_n, r=params.r, p=params.p)
    return kdf.derive(bytes(passphrase))


def _aad(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def seal(algorithm: Algorithm, lmk: bytes, passphrase: bytes, params: ScryptParams | None = None) -> bytes:
    """Seal ``lmk`` under ``passphrase``; returns the file's bytes."""
    if algorithm not in LMK_ALGORITHMS:
        raise InvalidInput("algorithm", "AES_256 or SM4 for an LMK")
    if not isinstance(lmk, (bytes, bytearray)) or len(lmk) != algorithm.key_length:
        raise InvalidInput("lmk", f"{algorithm.key_length} bytes")
    params = params or ScryptParams()
    salt = secrets.token_bytes(16)
    header = {
        "format": FORMAT,
        "algorithm": algorithm.value,
        "kcv": kcv.kcv(algorithm, bytes(lmk)).hex().upper(),
        "scrypt": {"log2_n": params.log2_n, "r": params.r, "p": params.p, "salt": salt.hex()},
    }
    nonce = secrets.token_bytes(12)
    ct = AESGCM(_kek(passphrase, salt, params)).encrypt(nonce, bytes(lmk), _aad(header))
    doc = {"header": header, "nonce": nonce.hex(), "ciphertext": ct.hex()}
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def unseal(blob: bytes, passphrase: bytes) -> tuple[Algorithm, bytes, bytes]:
    """Open a sealed LMK; returns (algorithm, LMK, KCV).

    A wrong passphrase or any altered field raises ``PermissionDenied``.
    """
    share_sealed = False
    try:
        doc = json.loads(blob)
        header = doc["header"]
        if header["format"] == SHARES_FORMAT:
            share_sealed = True
            raise ValueError
        if header["format"] != FORMAT:
            raise ValueError
        algorithm = Algorithm(header["algorithm"])
        if algorithm not in LMK_ALGORITHMS:
            raise ValueError
        sp = header["scrypt"]
        params = ScryptParams(int(sp["log2_n"]), int(sp["r"]), int(sp["p"]))
        salt = bytes.fromhex(sp["salt"])
        expected_kcv = bytes.fromhex(header["kcv"])
        nonce = bytes.fromhex(doc["nonce"])
        ct = bytes.fromhex(doc["ciphertext"])
    except (ValueError, KeyError, TypeError, InvalidInput):
        if share_sealed:
            raise InvalidInput("sealed_lmk", "share-sealed: it opens with its custodians' shares, "
                                             "not a passphrase") from None
        raise InvalidInput("sealed_lmk", "a hsmsvc sealed LMK file") from None
    try:
        lmk = AESGCM(_kek(passphrase, salt, params)).decrypt(nonce, ct, _aad(header))
    except InvalidTag:
        raise PermissionDenied("passphrase", "does not open the sealed LMK") from None
    if len(lmk) != algorithm.key_length or not compare.bytes_eq(kcv.kcv(algorithm, lmk), expected_kcv):
        raise PermissionDenied("sealed_lmk", "LMK does not match its recorded KCV")
    return algorithm, lmk, expected_kcv


def recorded_kcv(blob: bytes) -> bytes:
    """The LMK KCV a sealed file's header records (either seal), read without opening it.

    What the file claims, not a proof: only opening it checks the LMK against it.
    """
    try:
        doc = json.loads(blob)
        if doc["header"]["format"] not in (FORMAT, SHARES_FORMAT):
            raise ValueError
        return bytes.fromhex(doc["header"]["kcv"])
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("sealed_lmk", "a hsmsvc sealed LMK file") from None
