"""The soft backend's LMK sealed under a random key split among custodians (k of n shares).

Dual control of the sealed file, where :mod:`hsmsvc.hsm.soft.sealed` (one
passphrase) is single control: the sealing key is 32 random bytes that exist
only while the file is sealed or opened, split by :mod:`hsmsvc.hsm.soft.shares`
into one share per named custodian, any k of which open the file (Shamir 1979;
Vault's unseal keys work the same way).

The file is JSON: a header (format, LMK algorithm and KCV, seal id, threshold,
the custodians' names by share index) and the AES-256-GCM nonce and
ciphertext. The whole header is the GCM associated data, so no field can be
changed without the seal failing. No share, nor anything derived from one, is
in the file. Every failure after the shares are combined (wrong shares, an
altered file, a KCV that does not match) is one :class:`PermissionDenied`
with one message, so opening is no oracle for which share was wrong.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, unique
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsmsvc.crypto import compare, kcv
from hsmsvc.errors import InvalidInput, PermissionDenied, unreadable
from hsmsvc.hsm.soft import shares as sharing
from hsmsvc.types import Algorithm

__all__ = ["DO_NOT_OPEN", "FORMAT", "Holder", "SealHeader", "SealKind", "check_holders", "kind_of", "read_header",
           "seal", "unseal"]

FORMAT: Final = "hsmsvc-sealed-lmk-shares/1"
PASSPHRASE_FORMAT: Final = "hsmsvc-sealed-lmk/1"
DO_NOT_OPEN: Final = "the shares entered do not open the LMK"
"""The one answer for every fault found once shares are combined."""
LMK_ALGORITHMS: Final = (Algorithm.AES_256, Algorithm.SM4)
HOLDER_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""A custodian's name as the ceremony takes it (the mailers' rule)."""


@unique
class SealKind(Enum):
    PASSPHRASE = "passphrase"
    """:mod:`hsmsvc.hsm.soft.sealed`: one passphrase opens it (single control; development)."""
    SHARES = "shares"
    """This module: k custodians' shares open it (dual control)."""


@dataclass(frozen=True)
class Holder:
    """The custodian named at the ceremony for share ``index``: a label, not an authenticated identity."""

    index: int
    name: str


@dataclass(frozen=True)
class SealHeader:
    """What the file says in clear (all of it authenticated): never a share."""

    seal_id: str
    algorithm: Algorithm
    lmk_kcv: bytes
    threshold: int
    holders: tuple[Holder, ...]

    @property
    def count(self) -> int:
        return len(self.holders)

    @property
    def prefix(self) -> str:
        """The seal id's first digits, which begin every share of this seal."""
        return self.seal_id[: sharing.PREFIX_DIGITS]

    def holder(self, index: int) -> Holder | None:
        return next((h for h in self.holders if h.index == index), None)

    def _doc(self) -> dict[str, Any]:
        return {"format": FORMAT, "algorithm": self.algorithm.value, "kcv": self.lmk_kcv.hex().upper(),
                "seal_id": self.seal_id, "threshold": self.threshold,
                "holders": [{"index": h.index, "name": h.name} for h in self.holders]}


def _aad(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def check_holders(names: Sequence[str], threshold: int) -> None:
    """k of n named holders: 2 <= k <= n <= 9, each name once, by the ceremony's name rule."""
    sharing.check_threshold(threshold=threshold, count=len(names))
    for n in names:
        if not isinstance(n, str) or not HOLDER_NAME.fullmatch(n):
            raise InvalidInput("share_holder", "a name of 1-64 of A-Z a-z 0-9 . _ -")
    if len(set(names)) != len(names):
        raise InvalidInput("share_holder", "each holder once: one share per person")


def seal(algorithm: Algorithm, lmk: bytes | bytearray, *, threshold: int,
         holders: Sequence[str]) -> tuple[bytes, SealHeader, list[sharing.Share]]:
    """Seal ``lmk`` under a fresh random key and split that key; returns the file's bytes, its header,
    and the shares, share i for ``holders[i-1]``. The caller shows each share to its holder only, then
    wipes it; the key itself is wiped here (where Python allows: AESGCM keeps a copy until collected)."""
    if algorithm not in LMK_ALGORITHMS:
        raise InvalidInput("algorithm", "AES_256 or SM4 for an LMK")
    if not isinstance(lmk, (bytes, bytearray)) or len(lmk) != algorithm.key_length:
        raise InvalidInput("lmk", f"{algorithm.key_length} bytes")
    check_holders(holders, threshold)
    header = SealHeader(secrets.token_hex(16).upper(), algorithm, kcv.kcv(algorithm, bytes(lmk)), threshold,
                        tuple(Holder(i + 1, n) for i, n in enumerate(holders)))
    key = bytearray(secrets.token_bytes(sharing.SECRET_BYTES))
    try:
        doc = header._doc()
        nonce = secrets.token_bytes(12)
        ct = AESGCM(bytes(key)).encrypt(nonce, bytes(lmk), _aad(doc))
        values = sharing.split(key, threshold=threshold, count=len(holders))
    finally:
        key[:] = bytes(len(key))
    blob = json.dumps({"header": doc, "nonce": nonce.hex(), "ciphertext": ct.hex()}, indent=2,
                      sort_keys=True).encode() + b"\n"
    return blob, header, [sharing.Share(header.prefix, i + 1, v) for i, v in enumerate(values)]


def _load(blob: bytes) -> tuple[SealHeader, dict[str, Any], bytes, bytes]:
    try:
        doc = json.loads(blob)
        h = doc["header"]
        if h["format"] != FORMAT:
            raise ValueError
        algorithm = Algorithm(h["algorithm"])
        holders = tuple(Holder(int(x["index"]), str(x["name"])) for x in h["holders"])
        header = SealHeader(str(h["seal_id"]), algorithm, bytes.fromhex(h["kcv"]), int(h["threshold"]), holders)
        if (algorithm not in LMK_ALGORITHMS or not re.fullmatch("[0-9A-F]{32}", header.seal_id)
                or [x.index for x in holders] != list(range(1, len(holders) + 1))):
            raise ValueError
        check_holders([x.name for x in holders], header.threshold)
        return header, h, bytes.fromhex(doc["nonce"]), bytes.fromhex(doc["ciphertext"])
    except (ValueError, KeyError, TypeError, InvalidInput):
        raise InvalidInput("sealed_lmk", "a share-sealed hsmsvc LMK file") from None


def read_header(blob: bytes) -> SealHeader:
    """The header of a share-sealed file, without opening it; ``InvalidInput`` for anything else."""
    return _load(blob)[0]


def kind_of(path: Path) -> SealKind:
    """Which seal a sealed LMK file has, from its header's format; ``InvalidInput`` if neither."""
    try:
        doc = json.loads(Path(path).read_bytes())
        fmt = doc["header"]["format"]
    except OSError as e:
        raise unreadable("sealed_lmk", path, e) from None
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("sealed_lmk", "a hsmsvc sealed LMK file") from None
    if fmt == FORMAT:
        return SealKind.SHARES
    if fmt == PASSPHRASE_FORMAT:
        return SealKind.PASSPHRASE
    raise InvalidInput("sealed_lmk", "a hsmsvc sealed LMK file")


def unseal(blob: bytes, given: Sequence[sharing.Share]) -> tuple[Algorithm, bytes, bytes]:
    """Open with exactly k shares of this seal; returns (algorithm, LMK, KCV).

    Too few, too many or repeated indices are refused first (they say nothing
    about the key); everything after combining is :data:`DO_NOT_OPEN`.
    """
    header, doc, nonce, ct = _load(blob)
    if len(given) != header.threshold:
        raise InvalidInput("shares", f"{header.threshold} shares open this LMK, not {len(given)}")
    if len({s.index for s in given}) != len(given) or any(not 1 <= s.index <= header.count for s in given):
        raise InvalidInput("shares", f"distinct indices 1 to {header.count}")
    key = sharing.combine([(s.index, s.value) for s in given])
    try:
        lmk = AESGCM(bytes(key)).decrypt(nonce, ct, _aad(doc))
    except InvalidTag:
        raise PermissionDenied("shares", DO_NOT_OPEN) from None
    finally:
        key[:] = bytes(len(key))
    if len(lmk) != header.algorithm.key_length or not compare.bytes_eq(kcv.kcv(header.algorithm, lmk),
                                                                        header.lmk_kcv):
        raise PermissionDenied("shares", DO_NOT_OPEN)
    return header.algorithm, lmk, header.lmk_kcv
