"""ECB operations kept running on sessions of their own (PKCS#11 v2.40 sections 5.8 and 5.9).

A single-part C_EncryptInit + C_Encrypt of one block costs SoftHSM 11.6 µs,
most of it setting the operation up (its own copy of the key, a new OpenSSL
context). A C_EncryptUpdate on an operation already running takes 1.5 µs.
ECB chains nothing, so an update over whole blocks gives what a single-part
operation over the same blocks would. A partial block would not: the token
keeps it and every later output shifts, so callers pass whole blocks only.

A session holds one operation of a kind at a time, so each running operation
has a session of its own, opened without the PIN (the process's one login
covers it). The key is found on that session by a CKA_ID made for it when it
was loaded; session objects are visible to all of a process's sessions.

Everything here runs under the PKCS#11 backend's one lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Generator, Iterator
from typing import Any, Final

from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e

__all__ = ["RunningEcb", "RunningOps"]

# Enough for a batch of 1,000 TDES blocks without python-pkcs11 resizing its buffer.
_BUFFER: Final = 16 * 1024


class RunningEcb:
    """One ECB operation, encipher or decipher, under one key, on its own session."""

    __slots__ = ("_input", "_output", "_session")

    def __init__(self, session: Any, key: Any, mechanism: Mechanism, encrypt: bool) -> None:
        self._session = session
        self._input = b""
        run = key.encrypt if encrypt else key.decrypt
        # python-pkcs11's multi-part form: C_*Init at the first next(), then one
        # C_*Update per input the iterator gives. The iterator never ends, so
        # the operation runs until close().
        self._output: Generator[bytes, None, None] = run(self._inputs(), mechanism=mechanism, buffer_size=_BUFFER)

    def _inputs(self) -> Iterator[bytes]:
        while True:
            yield self._input

    def __call__(self, blocks: bytes) -> bytes:
        """``blocks``: one or more whole blocks (an empty input would not be passed to the token)."""
        self._input = blocks
        return bytes(next(self._output))

    def close(self) -> None:
        try:
            self._output.close()  # C_*Final, ending the operation
        except (p11e.PKCS11Error, RuntimeError):
            # RuntimeError: python-pkcs11 releases its session lock from the thread
            # closing it, which may not be the one that started the operation.
            pass
        try:
            self._session.close()
        except p11e.PKCS11Error:
            pass


class RunningOps:
    """At most ``limit`` running operations, for the keys used most recently.

    A key direction gets one at its ``after``-th use, so a key used a few times
    (a terminal's keys at sign-on) costs no session. The least recently used
    operation makes way for a new one; its key starts counting again.
    """

    def __init__(self, token: Any, limit: int = 64, after: int = 8) -> None:
        self._token = token
        self._limit = limit
        self._after = after
        self._ops: OrderedDict[tuple[bytes, bool], RunningEcb] = OrderedDict()
        self._counts: dict[tuple[bytes, bool], int] = {}

    def __len__(self) -> int:
        return len(self._ops)

    def get(self, ident: bytes, handle: int, encrypt: bool, mechanism: Mechanism) -> RunningEcb | None:
        """The key's running operation in this direction, started at its ``after``-th use.

        ``ident`` is the key object's CKA_ID and ``handle`` its handle: the object
        used on the new session is that one, not another with the same ID.
        """
        slot = (ident, encrypt)
        op = self._ops.get(slot)
        if op is not None:
            self._ops.move_to_end(slot)
            return op
        n = self._counts.get(slot, 0) + 1
        if n < self._after:
            self._counts[slot] = n
            return None
        self._counts.pop(slot, None)
        if len(self._ops) >= self._limit:
            _, oldest = self._ops.popitem(last=False)
            oldest.close()
        session = self._token.open()
        try:
            # The whole search, so it is finished before the session can close.
            found = [o for o in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.ID: ident})
                     if o.handle == handle]
        except p11e.PKCS11Error:
            session.close()
            raise
        if not found:
            session.close()
            return None
        op = self._ops[slot] = RunningEcb(session, found[0], mechanism, encrypt)
        return op

    def stop(self, ident: bytes) -> None:
        """End the key's operations: before its object is destroyed, or after one failed."""
        for encrypt in (True, False):
            self._counts.pop((ident, encrypt), None)
            op = self._ops.pop((ident, encrypt), None)
            if op is not None:
                op.close()

    def close(self) -> None:
        while self._ops:
            self._ops.popitem()[1].close()
        self._counts.clear()
