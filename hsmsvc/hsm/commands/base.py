"""What every command family shares: the command type, a loaded key, and the one observation point.

A command is a frozen value naming its keys and inputs (keyword-only fields, so
two keys of one type cannot be swapped unnoticed) and written once, in
:meth:`HsmCommand.run`, over a backend's loaded keys and primitives
(:class:`~hsmsvc.hsm.commands.core.CommandBackend`). A backend runs it through
``execute``; the pool sends the same value to a worker process.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Final, Generic, Protocol, Sequence, TypeVar, cast

from hsmsvc.errors import InvalidInput, KeyUsageViolation
from hsmsvc.hsm.domains import HMAC_FOR
from hsmsvc.hsm.model import DukptKey, KeyCryptogram, KeySpec, OneTimeKey
from hsmsvc.types import Algorithm, CipherMode, MacAlgorithm, Padding

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend
    from hsmsvc.hsm.policy import Operation

__all__ = [
    "DEBUG", "HsmCommand", "KeptKeys", "LoadedKey", "MAX_BATCH_PINS", "STRENGTH", "TimingHook", "debugging", "observe",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

log = logging.getLogger("hsmsvc.hsm.commands")
debugging: Final = log.isEnabledFor
"""``debugging(DEBUG)``: whether :func:`observe` logs; bound once, as it is asked on every command."""
DEBUG: Final = logging.DEBUG

# Security strength in bits (NIST SP 800-57 part 1 rev. 5, table 2: P-521 is f >= 512, 256 bits; SM4 as AES-128).
STRENGTH: Final = {
    Algorithm.TDES_2KEY: 80,
    Algorithm.TDES_3KEY: 112,
    Algorithm.AES_128: 128,
    Algorithm.AES_192: 192,
    Algorithm.AES_256: 256,
    Algorithm.SM4: 128,
    Algorithm.RSA_2048: 112,
    Algorithm.RSA_3072: 128,
    Algorithm.SM2: 128,
    Algorithm.ECC_P521: 256,
    Algorithm.ECC_P256: 128,
    Algorithm.ECC_P384: 192,
    # An HMAC key's strength is its length in bits, up to the hash's (NIST SP 800-107 rev. 1): 256, so
    # only an AES-256 KEK carries one (X9.24-1), as it alone carries an AES_256 HMAC-SHA256 key.
    Algorithm.HMAC_SM3_256: 256,
}
MAX_BATCH_PINS: Final = 100_000
"""Items per batch command: a chunk of a batch job, bounded in memory."""


class TimingHook(Protocol):
    """Told of every command a backend ran: its class name, seconds, and the error's class name if any."""

    def __call__(self, command: str, seconds: float, error: str | None) -> None: ...


class HsmCommand(Generic[T_co]):
    """One payment-HSM command answering a ``T``; subclasses are frozen, keyword-only dataclasses.

    ``broadcast`` commands (cache drops, audit anchors) go to every pool member and
    their answers are merged by :meth:`combine`; a ``pool_refusal`` names why the
    pool does not run one at all (commands that need one backend holding both LMKs).
    """

    __slots__ = ()
    broadcast: ClassVar[bool] = False
    pool_refusal: ClassVar[str | None] = None

    def run(self, b: CommandBackend) -> T_co:
        """The command over ``b``'s loaded keys; only :meth:`CommandBackend.execute` calls this."""
        raise NotImplementedError

    def combine(self, answers: Sequence[Any]) -> T_co:
        """A broadcast command's answer from every member's (at least one, each this command's answer)."""
        return cast(T_co, answers[0])

    def __repr__(self) -> str:
        # Fields hold PANs, PIN blocks, offsets and PVVs: a command shows its name and key ids only
        # (subclasses are declared with ``repr=False`` so this one stands).
        return f"{type(self).__name__}(keys={','.join(self.key_ids())})"

    def key_ids(self) -> list[str]:
        """The ids of the keys the command names, for the log: never key material, PINs or PANs."""
        out = []
        for v in vars(self).values():
            if isinstance(v, KeyCryptogram):
                out.append(v.spec.key_id)
            elif isinstance(v, OneTimeKey):
                out.append(v.ktk.spec.key_id)
            elif isinstance(v, DukptKey):
                out.append(v.bdk.spec.key_id)
            elif isinstance(v, KeySpec):
                out.append(v.key_id)
        return out


def observe(command: HsmCommand[Any], run: Callable[[], T], hook: TimingHook | None) -> T:
    """Run ``run`` (the command), logging it at DEBUG and feeding ``hook`` its duration.

    The one place a command is logged and timed, whatever entered it (API, batch,
    ceremony); callers skip it unless a hook is set or DEBUG is on, so the common
    path costs one attribute test and one ``isEnabledFor``.
    """
    start = time.perf_counter()
    error: str | None = None
    try:
        return run()
    except BaseException as e:
        error = type(e).__name__
        raise
    finally:
        seconds = time.perf_counter() - start
        name = type(command).__name__
        if debugging(DEBUG):
            log.debug("%s keys=%s %.3f ms%s", name, ",".join(command.key_ids()), seconds * 1e3,
                      f" error={error}" if error else "")
        if hook is not None:
            hook(name, seconds, error)


class LoadedKey(Protocol):
    """A key the backend has verified and can use; holds or references clear material."""

    @property
    def spec(self) -> KeySpec: ...

    @property
    def algorithm(self) -> Algorithm: ...

    def encrypt(self, data: bytes) -> bytes:
        """ECB encipherment of whole blocks."""
        ...

    def decrypt(self, data: bytes) -> bytes: ...

    def field_encrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes) -> bytes:
        """Encipher a padded field (GCM: tag appended)."""
        ...

    def field_decrypt(self, mode: CipherMode, iv: bytes, data: bytes, aad: bytes) -> bytes: ...

    def mac(self, algorithm: MacAlgorithm, padding: Padding, data: bytes) -> bytes:
        """The full-length tag."""
        ...


class KeptKeys:
    """The loaded keys of a prepared command, kept while the backend keeps every key it loaded.

    Each key's binding is checked when it is loaded (``CommandBackend._use``), which
    happens again after the backend drops any loaded key (a PKCS#11 object may be
    destroyed and its handle reused): ``generation`` moves on every drop.
    """

    __slots__ = ("_generation", "_keys", "_uses")

    def __init__(self, *uses: tuple[KeyCryptogram, Operation]) -> None:
        self._uses = uses
        self._keys: tuple[LoadedKey, ...] = ()
        self._generation = -1

    def get(self, b: CommandBackend) -> tuple[LoadedKey, ...]:
        """The keys, loaded again if the backend dropped any; call under the backend's guard."""
        if self._generation != b._generation or not self._keys:
            before = b._generation
            keys = tuple(b._use(key, op) for key, op in self._uses)
            # Kept only if loading them dropped nothing, not even one of them.
            self._keys, self._generation = keys, (before if b._generation == before else -1)
            return keys
        return self._keys


def check_data(data: bytes) -> None:
    if not isinstance(data, (bytes, bytearray)) or len(data) > 1 << 20:
        raise InvalidInput("data", "bytes, at most 1 MiB")


def hmac_for(key: LoadedKey) -> MacAlgorithm:
    m = HMAC_FOR.get(key.algorithm)
    if m is None:
        raise KeyUsageViolation("key", "not an HMAC-sized key")
    return m


def columns(rows: Sequence[tuple[object, ...]], width: int) -> list[Sequence[Any]]:
    """A batch's rows as ``width`` columns (one C-level transpose), or ``InvalidInput``."""
    if not isinstance(rows, Sequence) or len(rows) > MAX_BATCH_PINS:
        raise InvalidInput("rows", f"at most {MAX_BATCH_PINS} per call")
    if not rows:
        return [() for _ in range(width)]
    try:
        cols: list[Sequence[Any]] = list(zip(*rows, strict=True))
    except (TypeError, ValueError):
        cols = []
    if len(cols) != width:
        raise InvalidInput("rows", f"tuples of {width}")
    return cols
