"""TR-31 key blocks, versions B and D (ANSI X9 TR-31:2018; ASC X9.143-2022).

* B: TDES key block protection key (KBPK), key derivation binding method.
* D: AES KBPK, key derivation binding method.
* D with an SM4 KBPK: no GM/T or JR/T standard defines an SM4 key block, so
  hsmsvc uses version D with every AES operation replaced by SM4 (KDF
  indicators as for AES-128, 0002/0080) and algorithm byte ``4`` for an SM4
  key: a bilateral convention, named by the caller (``kbpk_algorithm``)
  because an SM4 key and an AES-128 key are both 16 bytes.

Encryption and authentication keys are derived from the KBPK with CMAC in
counter mode (TR-31:2018, NIST SP 800-108). The authenticator is
the CMAC of header and clear payload under the authentication key; the payload
is enciphered in CBC mode with the authenticator as IV. On unwrap the MAC is
checked before any byte of the payload is interpreted, and every fault after
the header gives the same :class:`InvalidKeyBlock`.

This module checks format and MAC only. Whether a P0 key may be imported as a
ZPK is decided by key policy above the crypto layer.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from enum import Enum, unique
from typing import Final

from hsmsvc.crypto import _cipher, compare, cmac
from hsmsvc.errors import InvalidInput, InvalidKeyBlock
from hsmsvc.types import Algorithm, Exportability, KeyUsage, ModeOfUse

__all__ = ["Header", "KeyBlockAlgorithm", "KeyBlockVersion", "read_header", "unwrap", "wrap"]


@unique
class KeyBlockVersion(Enum):
    B = "B"
    """TDES KBPK, key derivation binding method."""
    D = "D"
    """AES KBPK, key derivation binding method."""


@unique
class KeyBlockAlgorithm(Enum):
    """Header byte 8: algorithm of the wrapped key (TR-31:2018)."""

    AES = "A"
    DES = "D"
    ELLIPTIC_CURVE = "E"
    HMAC = "H"
    RSA = "R"
    DSA = "S"
    TDES = "T"
    SM4 = "4"
    """Not assigned by TR-31:2018 or X9.143: a bilateral convention for SM4 keys
    (docs/architecture.md, "SM4 key blocks"), in hsmsvc's LMK blocks and across
    a K1 KBPK both ways."""


_PRINTABLE: Final = frozenset(chr(c) for c in range(0x20, 0x7F))
_ALNUM: Final = frozenset(string.ascii_letters + string.digits)
_HEADER_LEN: Final = 16
# KDF "algorithm" and "length" fields of the TR-31 derivation data.
_KDF_PARAMS: Final = {
    Algorithm.TDES_2KEY: (b"\x00\x00", b"\x00\x80"),
    Algorithm.TDES_3KEY: (b"\x00\x01", b"\x00\xC0"),
    Algorithm.AES_128: (b"\x00\x02", b"\x00\x80"),
    Algorithm.AES_192: (b"\x00\x03", b"\x00\xC0"),
    Algorithm.AES_256: (b"\x00\x04", b"\x01\x00"),
    Algorithm.SM4: (b"\x00\x02", b"\x00\x80"),  # the convention: as AES-128
}
_MAC_LEN: Final = {KeyBlockVersion.B: 8, KeyBlockVersion.D: 16}


@dataclass(frozen=True)
class Header:
    """The TR-31 header fields, optional blocks as (id, data) pairs (no PB block)."""

    version: KeyBlockVersion
    usage: KeyUsage
    algorithm: KeyBlockAlgorithm
    mode_of_use: ModeOfUse
    key_version: str = "00"
    exportability: Exportability = Exportability.NON_EXPORTABLE
    optional_blocks: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if len(self.key_version) != 2 or not _ALNUM.issuperset(self.key_version):
            raise InvalidInput("key_version", "2 alphanumeric characters")
        for block_id, data in self.optional_blocks:
            if len(block_id) != 2 or not _ALNUM.issuperset(block_id) or block_id == "PB":
                raise InvalidInput("optional_block", "2 alphanumeric id, not PB")
            if not _PRINTABLE.issuperset(data):
                raise InvalidInput("optional_block", "printable ASCII data")

    def encode(self, block_size: int) -> str:
        """The header with its optional blocks, padded by a PB block to ``block_size``."""
        blocks = [_encode_opt(i, d) for i, d in self.optional_blocks]
        count = len(blocks)
        used = _HEADER_LEN + sum(len(b) for b in blocks)
        if count and used % block_size:
            need = -(used + 4) % block_size
            pb = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(need))
            blocks.append(_encode_opt("PB", pb))
            count += 1
        if count > 99:
            raise InvalidInput("optional_blocks", "at most 99")
        return (
            self.version.value
            + "0000"
            + self.usage.value
            + self.algorithm.value
            + self.mode_of_use.value
            + self.key_version
            + self.exportability.value
            + f"{count:02d}"
            + "00"
            + "".join(blocks)
        )


def _encode_opt(block_id: str, data: str) -> str:
    n = 4 + len(data)
    if n <= 0xFF:
        return f"{block_id}{n:02X}{data}"
    # Extended length: "00", then the length of the length, then the length.
    n = 4 + 2 + 4 + len(data)
    if n > 0xFFFF:
        raise InvalidInput("optional_block", "at most 65535 characters")
    return f"{block_id}0004{n:04X}{data}"


def _kbpk_algorithm(version: KeyBlockVersion, kbpk: bytes, named: Algorithm | None) -> Algorithm:
    if named is Algorithm.SM4:
        if version is not KeyBlockVersion.D or not isinstance(kbpk, (bytes, bytearray)) or len(kbpk) != 16:
            raise InvalidInput("kbpk", "an SM4 KBPK protects version D blocks")
        return Algorithm.SM4
    if version is KeyBlockVersion.B:
        table = {16: Algorithm.TDES_2KEY, 24: Algorithm.TDES_3KEY}
    else:
        table = {16: Algorithm.AES_128, 24: Algorithm.AES_192, 32: Algorithm.AES_256}
    if not isinstance(kbpk, (bytes, bytearray)) or len(kbpk) not in table:
        raise InvalidInput("kbpk", f"a {'TDES' if version is KeyBlockVersion.B else 'AES'} key")
    if named is not None and named is not table[len(kbpk)]:
        raise InvalidInput("kbpk", f"{len(kbpk)} bytes, not a {named.value} key")
    return table[len(kbpk)]


def _derive(alg: Algorithm, kbpk: bytes) -> tuple[bytes, bytes]:
    """KBEK and KBAK by the CMAC counter-mode KDF of TR-31:2018."""
    alg_field, len_field = _KDF_PARAMS[alg]
    out = []
    for usage in (b"\x00\x00", b"\x00\x01"):
        key = b""
        counter = 1
        while len(key) < alg.key_length:
            data = bytes([counter]) + usage + b"\x00" + alg_field + len_field
            key += cmac.generate_cmac(alg, kbpk, data)
            counter += 1
        out.append(key[: alg.key_length])
    return out[0], out[1]


def wrap(kbpk: bytes, header: Header, key: bytes, pad_to: int | None = None, *,
         kbpk_algorithm: Algorithm | None = None) -> str:
    """Wrap ``key`` under ``kbpk`` into a TR-31 key block string.

    ``pad_to`` pads the key field to that many bytes to hide the key's length
    (TR-31 key length obfuscation). Asymmetric private keys (DER) travel the
    same way, as ANSI X9.143 allows; the 9999-character block limit bounds them.
    ``kbpk_algorithm``: SM4 for the SM4 convention; otherwise TDES or AES by length.
    """
    if not isinstance(key, (bytes, bytearray)) or not 1 <= len(key) <= 4096:
        raise InvalidInput("key", "1 to 4096 bytes")
    alg = _kbpk_algorithm(header.version, kbpk, kbpk_algorithm)
    bs = alg.block_size
    hdr = header.encode(bs)
    fill_to = max(len(key), pad_to or 0)
    body = (len(key) * 8).to_bytes(2, "big") + bytes(key)
    body += secrets.token_bytes(fill_to - len(key))
    body += secrets.token_bytes(-len(body) % bs)
    mac_len = _MAC_LEN[header.version]
    total = len(hdr) + 2 * len(body) + 2 * mac_len
    if total > 9999:
        raise InvalidInput("key_block", "at most 9999 characters")
    hdr = hdr[0] + f"{total:04d}" + hdr[5:]
    kbek, kbak = _derive(alg, bytes(kbpk))
    tag = cmac.generate_cmac(alg, kbak, hdr.encode("ascii") + body)[:mac_len]
    enc = _cipher.cbc_encrypt(alg, kbek, tag[:bs], body)
    return hdr + enc.hex().upper() + tag.hex().upper()


def _parse_header(block: str) -> tuple[Header, int]:
    """Parse the clear header and optional blocks; return it and its length."""
    if not isinstance(block, str) or not _PRINTABLE.issuperset(block) or len(block) < _HEADER_LEN:
        raise InvalidKeyBlock("header malformed")
    try:
        version = KeyBlockVersion(block[0])
    except ValueError:
        raise InvalidKeyBlock("version not supported (B or D)") from None
    if not block[1:5].isdigit() or int(block[1:5]) != len(block):
        raise InvalidKeyBlock("length field does not match")
    try:
        usage = KeyUsage(block[5:7])
        algorithm = KeyBlockAlgorithm(block[7])
        mode = ModeOfUse(block[8])
        exportability = Exportability(block[11])
    except ValueError:
        raise InvalidKeyBlock("header field not supported") from None
    if not block[12:14].isdigit():
        raise InvalidKeyBlock("optional block count malformed")
    count = int(block[12:14])
    pos = _HEADER_LEN
    blocks: list[tuple[str, str]] = []
    for _ in range(count):
        block_id, raw_len = block[pos : pos + 2], block[pos + 2 : pos + 4]
        try:
            n = int(raw_len, 16)
            start = pos + 4
            if n == 0:
                ll = int(block[pos + 4 : pos + 6], 16)
                n = int(block[pos + 6 : pos + 6 + ll], 16)
                start = pos + 6 + ll
        except ValueError:
            raise InvalidKeyBlock("optional block length malformed") from None
        if n < start - pos or pos + n > len(block) or not _ALNUM.issuperset(block_id):
            raise InvalidKeyBlock("optional block malformed")
        if block_id != "PB":
            blocks.append((block_id, block[start : pos + n]))
        pos += n
    try:
        header = Header(
            version, usage, algorithm, mode, block[9:11], exportability, tuple(blocks)
        )
    except InvalidInput:
        raise InvalidKeyBlock("header field malformed") from None
    return header, pos


def read_header(block: str) -> Header:
    """The clear header and optional blocks of ``block``, unauthenticated: for finding a key, never
    for trusting one (:func:`unwrap` verifies the MAC)."""
    return _parse_header(block)[0]


def unwrap(kbpk: bytes, block: str, *, kbpk_algorithm: Algorithm | None = None) -> tuple[Header, bytes]:
    """Verify and unwrap a TR-31 key block; return its header and the clear key.

    TR-31:2018 annex A.7.2.2 (version B):

    >>> kbpk = bytes.fromhex("DD7515F2BFC17F85CE48F3CA25CB21F6")
    >>> h, k = unwrap(kbpk, "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E")
    >>> h.usage, k.hex().upper()
    (<KeyUsage.PIN_ENCRYPTION: 'P0'>, '3F419E1CB7079442AA37474C2EFBF8B8')
    """
    header, hlen = _parse_header(block)
    alg = _kbpk_algorithm(header.version, kbpk, kbpk_algorithm)
    bs = alg.block_size
    mac_hex = 2 * _MAC_LEN[header.version]
    body_hex = block[hlen:-mac_hex]
    if hlen % bs or len(body_hex) < 2 * bs or len(body_hex) % (2 * bs):
        raise InvalidKeyBlock()
    try:
        body_enc = bytes.fromhex(body_hex)
        tag = bytes.fromhex(block[-mac_hex:])
    except ValueError:
        raise InvalidKeyBlock() from None
    kbek, kbak = _derive(alg, bytes(kbpk))
    body = _cipher.cbc_decrypt(alg, kbek, tag[:bs], body_enc)
    computed = cmac.generate_cmac(alg, kbak, block[:hlen].encode("ascii") + body)[: len(tag)]
    if not compare.bytes_eq(computed, tag):
        raise InvalidKeyBlock()
    # Only now, with the MAC verified, is the payload interpreted.
    bits = int.from_bytes(body[:2], "big")
    if bits % 8 or not 8 <= bits <= 8 * (len(body) - 2):
        raise InvalidKeyBlock()
    return header, body[2 : 2 + bits // 8]
