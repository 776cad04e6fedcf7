"""Which stored key a cryptogram claims to be, read without the LMK.

A host command names a stored key by its cryptogram, as a payShield in key-block LMK mode takes
its own key blocks. The claim only finds the stored row: the caller compares the whole cryptogram
with the stored one and authorizes the stored key's id and zone, and the backend verifies the
cryptogram's MAC when the key is used. Both backends' forms are read here: the soft backend's
TR-31 block (its optional block ``10``) and the PKCS#11 backend's attribute header.
"""

from __future__ import annotations

from hsmsvc.crypto import tr31
from hsmsvc.errors import HsmsvcError
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import ATTRIBUTE_BLOCK

__all__ = ["claimed", "from_text", "to_text"]


def _is_block(blob: bytes) -> bool:
    return len(blob) >= 5 and blob[:1] in (b"A", b"B", b"C", b"D") and blob[1:5].isdigit() \
        and int(blob[1:5]) == len(blob)


def claimed(blob: bytes) -> tuple[str, int] | None:
    """The key id and version ``blob`` claims, or None if it claims none."""
    try:
        if _is_block(blob):
            header = tr31.read_header(blob.decode("ascii"))
            spec = KeySpec.parse(dict(header.optional_blocks)[ATTRIBUTE_BLOCK])
        else:
            n = int.from_bytes(blob[:2], "big")
            attrs = blob[2:2 + n].decode("ascii").rsplit(";kcv=", 1)[0]
            spec = KeySpec.parse(attrs)
    except (HsmsvcError, KeyError, ValueError, UnicodeDecodeError):
        return None
    return spec.key_id, spec.version


def to_text(blob: bytes) -> str:
    """A cryptogram as a host command carries it after ``S``: a TR-31 block as it is; any other
    form as ``P``, four digits counting the hex characters, and the hex."""
    if _is_block(blob):
        return blob.decode("ascii")
    h = blob.hex().upper()
    return f"P{len(h):04d}{h}"


def from_text(text: bytes) -> bytes:
    """Inverse of :func:`to_text` (``ValueError`` if it is neither form)."""
    if text[:1] == b"P":
        if not text[1:5].isdigit() or int(text[1:5]) != len(text) - 5:
            raise ValueError("length")
        return bytes.fromhex(text[5:].decode("ascii"))
    if not _is_block(text):
        raise ValueError("not a key block")
    return bytes(text)
