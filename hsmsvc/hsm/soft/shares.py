"""k-of-n shares of a 32-byte sealing key: Shamir's threshold scheme (Shamir 1979, "How to share a secret").

The arithmetic is pycryptodome's (``Crypto.Protocol.SecretSharing.Shamir``: a
random polynomial of degree k-1 over GF(2^128) whose constant term is a
16-byte secret). It shares 16 bytes, so a 32-byte key is split as two 16-byte
halves, each under its own random polynomial, at the same share indices: a
share is the pair of points ``(i, p_lo(i))``, ``(i, p_hi(i))``, 32 bytes.
Fewer than k shares say nothing about either half.

A share is written for people as ``<seal>-<i>-<16 groups of 4 hex>-<check>``:
``<seal>`` the first 8 hex digits of the seal's id (which envelope goes with
which sealed file), ``<i>`` the index 1-9, and ``<check>`` a CRC-16/CCITT
(ITU-T V.41; ``binascii.crc_hqx`` from 0xFFFF) over the canonical text
before it. A CRC of degree 16 catches every error confined to 16 consecutive
bits, so every single mistyped character and every swap of two neighbours
is refused at entry, before the share is used. The check is over the share's
own text, which its holder is typing anyway: it says nothing about the secret.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from Crypto.Protocol.SecretSharing import Shamir

from hsmsvc.errors import InvalidInput

__all__ = ["MAX_SHARES", "SECRET_BYTES", "Share", "check_threshold", "combine", "parse", "split", "text"]

SECRET_BYTES: Final = 32
"""The sealing key: AES-256."""
MAX_SHARES: Final = 9
"""One decimal digit of index on the share's text; a bank's custodians are fewer."""
PREFIX_DIGITS: Final = 8
_HALF: Final = 16
_GROUPS: Final = SECRET_BYTES * 2 // 4
_CANONICAL: Final = re.compile(rf"([0-9A-F]{{{PREFIX_DIGITS}}})([1-9])([0-9A-F]{{{SECRET_BYTES * 2}}})([0-9A-F]{{4}})")
MISTYPED: Final = "not a valid share: mistyped? compare it with your envelope, group by group"


@dataclass(frozen=True, eq=False)
class Share:
    """One share as its holder gave it: the seal it belongs to, its index, and its 32 bytes.

    ``value`` is a ``bytearray`` so that its holder can :meth:`wipe` it once used
    (where Python allows: a copy made on the way, a ``bytes`` handed to a
    library, cannot be wiped). Not comparable, and its repr holds no value.
    """

    seal: str
    index: int
    value: bytearray = field(repr=False)

    def wipe(self) -> None:
        self.value[:] = bytes(len(self.value))


def check_threshold(*, threshold: int, count: int) -> None:
    """2 <= k <= n <= 9: two people at least (dual control), and no more shares than indices."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 2:
        raise InvalidInput("threshold", "at least 2 shares to open (dual control: no one person opens the LMK)")
    if isinstance(count, bool) or not isinstance(count, int) or not threshold <= count <= MAX_SHARES:
        raise InvalidInput("share_holders", f"{threshold} to {MAX_SHARES} share holders for a threshold of {threshold}")


def split(secret: bytes | bytearray, *, threshold: int, count: int) -> list[bytearray]:
    """``count`` shares of ``secret`` (32 bytes), any ``threshold`` of which give it back; share i is at [i-1]."""
    check_threshold(threshold=threshold, count=count)
    if len(secret) != SECRET_BYTES:
        raise InvalidInput("secret", f"{SECRET_BYTES} bytes")
    # The same indices 1..n for both halves (Shamir.split numbers them so): share i is both points at x = i.
    lo = Shamir.split(threshold, count, bytes(secret[:_HALF]))
    hi = Shamir.split(threshold, count, bytes(secret[_HALF:]))
    out = []
    for (i, a), (j, b) in zip(lo, hi):
        assert i == j  # pycryptodome numbers the shares 1..n in order
        out.append(bytearray(a + b))
    return out


def combine(shares: Sequence[tuple[int, bytes | bytearray]]) -> bytearray:
    """The secret from exactly k ``(index, value)`` shares.

    Any k distinct shares give *a* 32-byte value; only the right ones give the
    secret, and only the sealed file's authentication tag can tell which: that
    is the caller's check, with one answer for any wrong share.
    """
    indices = [i for i, _ in shares]
    if len(set(indices)) != len(indices) or not all(1 <= i <= MAX_SHARES for i in indices):
        raise InvalidInput("shares", f"distinct indices 1 to {MAX_SHARES}")
    if any(len(v) != SECRET_BYTES for _, v in shares):
        raise InvalidInput("shares", f"{SECRET_BYTES} bytes each")
    lo = Shamir.combine([(i, bytes(v[:_HALF])) for i, v in shares])
    hi = Shamir.combine([(i, bytes(v[_HALF:])) for i, v in shares])
    return bytearray(lo + hi)


def _check(canonical: bytes | bytearray) -> str:
    return f"{binascii.crc_hqx(bytes(canonical), 0xFFFF):04X}"


def text(*, seal: str, index: int, value: bytes | bytearray) -> str:
    """The share as its holder writes it down: ``SEAL-I-XXXX-…-XXXX-CHECK``."""
    if not re.fullmatch(f"[0-9A-F]{{{PREFIX_DIGITS}}}", seal) or not 1 <= index <= MAX_SHARES:
        raise InvalidInput("share", f"a seal prefix of {PREFIX_DIGITS} hex digits and an index 1-{MAX_SHARES}")
    if len(value) != SECRET_BYTES:
        raise InvalidInput("share", f"{SECRET_BYTES} bytes")
    digits = value.hex().upper()
    groups = "-".join(digits[g * 4 : g * 4 + 4] for g in range(_GROUPS))
    return f"{seal}-{index}-{groups}-{_check(f'{seal}{index}{digits}'.encode())}"


def parse(typed: bytes | bytearray | str) -> Share:
    """A share from its text (case, spaces and dashes do not matter); a mistyped one is refused.

    The refusal is the same for every fault and names no character: the text
    is a secret, and the message goes to logs.
    """
    raw = typed.encode() if isinstance(typed, str) else typed
    canonical = bytearray(c for c in raw if c not in b" \t-\r\n")
    try:
        canonical[:] = canonical.upper()
        m = _CANONICAL.fullmatch(canonical.decode("ascii", "replace"))
        if m is None or _check(canonical[:-4]) != m.group(4):
            raise InvalidInput("share", MISTYPED)
        return Share(m.group(1), int(m.group(2)), bytearray.fromhex(m.group(3)))
    finally:
        canonical[:] = bytes(len(canonical))
