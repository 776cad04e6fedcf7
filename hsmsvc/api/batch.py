"""Packed batch fields: fixed-size items back to back, and per-item errors."""

from __future__ import annotations

from typing import Final, Sequence, cast

from hsmsvc.api.status import code_for, message_for
from hsmsvc.errors import HsmsvcError, InvalidInput
from hsmsvc_client.v1 import types_pb2 as pb

MAX_ITEMS: Final = 10_000


def items(packed: bytes, size: int, field: str) -> int:
    """How many ``size``-byte items ``packed`` holds; refused unless whole and within the limit."""
    if len(packed) % size:
        raise InvalidInput(field, f"a whole number of {size}-byte items")
    n = len(packed) // size
    if n > MAX_ITEMS:
        raise InvalidInput(field, f"at most {MAX_ITEMS} items")
    return n


def split(packed: bytes, size: int, field: str) -> list[bytes]:
    n = items(packed, size, field)
    return [packed[i * size:(i + 1) * size] for i in range(n)]


def texts(values: Sequence[str], n: int, field: str, limit: int = 19) -> list[str]:
    """One string per item, checked for length all at once."""
    if len(values) != n:
        raise InvalidInput(field, "one per PIN block")
    # One pass over the repeated field: each pass makes a str per item again.
    out = list(values)
    if out and max(map(len, out)) > limit:
        raise InvalidInput(field, f"at most {limit} characters")
    return out


def pans(values: Sequence[str], n: int, field: str = "pans") -> list[str | None]:
    """One PAN (or none, as ``""``) per item, checked for length all at once."""
    out = texts(values, n, field)
    return [p or None for p in out] if "" in out else cast("list[str | None]", out)


def count(items: Sequence[object], field: str) -> None:
    if len(items) > MAX_ITEMS:
        raise InvalidInput(field, f"at most {MAX_ITEMS} items")


def item_error(index: int, e: HsmsvcError) -> pb.ItemError:
    return pb.ItemError(index=index, code=code_for(e).value[0], field=e.field or "", message=message_for(e))


def verdicts(results: Sequence[bool | HsmsvcError]) -> tuple[list[bool], list[pb.ItemError]]:
    """A batch of checks' answers: ``verified`` per item (``False`` for an error) and the errors."""
    verified: list[bool] = []
    errs: list[pb.ItemError] = []
    for i, res in enumerate(results):
        if isinstance(res, HsmsvcError):
            errs.append(item_error(i, res))
            verified.append(False)
        else:
            verified.append(res)
    return verified, errs


def split_even(packed: bytes, n: int, field: str) -> list[bytes]:
    """``n`` equal items back to back."""
    if n == 0:
        if packed:
            raise InvalidInput(field, "no items expected")
        return []
    if not packed or len(packed) % n:
        raise InvalidInput(field, "one item per entry, all the same size")
    return split(packed, len(packed) // n, field)
