"""A pool of backends, each in its own spawned worker process, with failover.

* Every member is built from a config in a fresh ``spawn`` process (a forked
  child would inherit a PKCS#11 login; see ``platform-notes.md``) and serves one
  request at a time over a pipe.
* At start, and on every restart, a member must prove the pool's LMK KCV and
  declare the same capabilities, or it is refused.
* A call goes to the next healthy member in turn. If that member dies, times
  out or reports ``BackendUnavailable``, its circuit opens and the call is
  retried on another member: the commands are idempotent (a key generated twice
  is simply a different key nobody stored), so a retried call loses nothing.
* A health thread pings open members, restarts dead workers and closes their
  circuit once they prove the LMK KCV again.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Sequence

from hsmsvc.errors import BackendUnavailable, HsmsvcError, InvalidInput, PermissionDenied, Unsupported
from hsmsvc.hsm.backend import (
    Capabilities, FieldParams, KeyCryptogram, KeySpec, PinBatch, PinKey, PinTranslator, StoredPin,
)
from hsmsvc.hsm.config import Pkcs11Config, SoftConfig, build
from hsmsvc.types import Algorithm, MacAlgorithm, Padding, PinBlockFormat

__all__ = ["MemberStats", "Pool"]

_CTX = mp.get_context("spawn")


def _error_state(e: HsmsvcError) -> tuple[str, str, str | None, str]:
    return (type(e).__module__, type(e).__qualname__, e.field, e.reason)


def _rebuild(state: tuple[str, str, str | None, str]) -> HsmsvcError:
    import hsmsvc.errors as errors

    cls = getattr(errors, state[1], None)
    if not (isinstance(cls, type) and issubclass(cls, HsmsvcError)):
        cls = BackendUnavailable
    e = cls.__new__(cls)
    HsmsvcError.__init__(e, state[2], state[3])
    return e


def _serve(config: SoftConfig | Pkcs11Config, conn: Connection) -> None:
    """The worker: build the backend, then answer requests until the pipe closes."""
    try:
        backend = build(config)
    except HsmsvcError as e:
        conn.send(("err", _error_state(e)))
        return
    conn.send(("ready", backend.lmk_kcv(), backend.capabilities))
    ops = 0
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):
            break
        if method == "_stats":
            conn.send(("ok", ops))
            continue
        try:
            result = getattr(backend, method)(*args)
            ops += 1
            conn.send(("ok", result))
        except HsmsvcError as e:
            conn.send(("err", _error_state(e)))
        except Exception as e:  # a bug: report it without a traceback or values
            conn.send(("err", ("", "BackendUnavailable", "hsm", f"internal error {type(e).__name__}")))
    backend.close()


@dataclass(frozen=True)
class MemberStats:
    index: int
    pid: int | None
    healthy: bool
    restarts: int
    ops: int


class _Member:
    def __init__(self, index: int, config: SoftConfig | Pkcs11Config) -> None:
        self.index = index
        self.config = config
        self.lock = threading.Lock()
        self.healthy = False
        self.restarts = -1
        self.proc: Any = None
        self.conn: Connection | None = None

    def start(self, timeout: float) -> tuple[bytes, Capabilities]:
        parent, child = _CTX.Pipe()
        proc = _CTX.Process(target=_serve, args=(self.config, child), daemon=True)
        proc.start()
        child.close()
        try:
            if not parent.poll(timeout):
                raise EOFError
            reply = parent.recv()
        except (EOFError, OSError):
            proc.kill()
            raise BackendUnavailable("pool", f"member {self.index} did not start") from None
        if reply[0] != "ready":
            proc.join(1)
            raise _rebuild(reply[1])
        self.proc, self.conn = proc, parent
        self.restarts += 1
        return reply[1], reply[2]

    def call(self, method: str, args: tuple[Any, ...], timeout: float) -> Any:
        conn = self.conn
        if conn is None:
            raise BackendUnavailable("pool", f"member {self.index} is down")
        try:
            conn.send((method, args))
            if not conn.poll(timeout):
                raise BackendUnavailable("pool", f"member {self.index} timed out")
            reply = conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            raise BackendUnavailable("pool", f"member {self.index} is gone") from None
        if reply[0] == "ok":
            return reply[1]
        raise _rebuild(reply[1])

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc is not None:
            self.proc.join(2)
            if self.proc.is_alive():
                self.proc.kill()
        self.conn = None


class Pool:
    """A :class:`~hsmsvc.hsm.backend.Backend` over several members holding one LMK."""

    def __init__(
        self,
        configs: Sequence[SoftConfig | Pkcs11Config],
        health_interval: float = 0.5,
        call_timeout: float = 10.0,
        start_timeout: float = 30.0,
    ) -> None:
        if not configs:
            raise PermissionDenied("pool", "at least one member")
        self._members = [_Member(i, c) for i, c in enumerate(configs)]
        self._timeout = call_timeout
        self._start_timeout = start_timeout
        self._rr = itertools.count()
        self._lmk_kcv: bytes | None = None
        self._caps: Capabilities | None = None
        try:
            for m in self._members:
                self._admit(m)
        except HsmsvcError:
            for m in self._members:
                m.stop()
            raise
        self._closed = threading.Event()
        self._health = threading.Thread(target=self._watch, args=(health_interval,), daemon=True)
        self._health.start()

    def _admit(self, m: _Member) -> None:
        kcv, caps = m.start(self._start_timeout)
        if self._lmk_kcv is None:
            self._lmk_kcv, self._caps = kcv, caps
        elif kcv != self._lmk_kcv:
            m.stop()
            raise PermissionDenied(
                "pool", f"member {m.index} holds LMK KCV {kcv.hex().upper()}, not {self._lmk_kcv.hex().upper()}"
            )
        elif caps != self._caps:
            m.stop()
            raise PermissionDenied("pool", f"member {m.index} declares other capabilities")
        m.healthy = True

    def _watch(self, interval: float) -> None:
        while not self._closed.wait(interval):
            for m in self._members:
                if self._closed.is_set():
                    return
                if m.healthy and m.proc is not None and not m.proc.is_alive():
                    m.healthy = False
                if m.healthy:
                    continue
                with m.lock:
                    try:
                        if m.proc is not None and m.proc.is_alive():
                            if m.call("lmk_kcv", (), self._timeout) == self._lmk_kcv:
                                m.healthy = True
                            continue
                        m.stop()
                        self._admit(m)
                    except HsmsvcError:
                        m.healthy = False

    def _call(self, method: str, *args: Any) -> Any:
        n = len(self._members)
        start = next(self._rr)
        for i in range(n):
            m = self._members[(start + i) % n]
            if not m.healthy:
                continue
            with m.lock:
                if not m.healthy:
                    continue
                try:
                    return m.call(method, args, self._timeout)
                except BackendUnavailable:
                    m.healthy = False  # open the circuit; the health thread revives it
        raise BackendUnavailable("hsm", "no pool member available")

    def _broadcast(self, method: str, *args: Any) -> list[Any]:
        out = []
        for m in self._members:
            with m.lock:
                if not m.healthy:
                    continue
                try:
                    out.append(m.call(method, args, self._timeout))
                except BackendUnavailable:
                    m.healthy = False
        if not out:
            raise BackendUnavailable("hsm", "no pool member available")
        return out

    def stats(self) -> list[MemberStats]:
        """Per member: worker PID, circuit state, restarts and operations served."""
        out = []
        for m in self._members:
            ops = 0
            with m.lock:
                if m.healthy:
                    try:
                        ops = int(m.call("_stats", (), self._timeout))
                    except BackendUnavailable:
                        m.healthy = False
            pid = m.proc.pid if m.proc is not None else None
            out.append(MemberStats(m.index, pid, m.healthy, m.restarts, ops))
        return out

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(m.healthy for m in self._members):
            if time.monotonic() > deadline:
                raise BackendUnavailable("pool", "members did not recover")
            time.sleep(0.05)

    # -- Backend -------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            raise BackendUnavailable("pool", "no member admitted")
        return self._caps

    def lmk_kcv(self) -> bytes:
        if self._lmk_kcv is None:
            raise BackendUnavailable("pool", "no member admitted")
        return self._lmk_kcv

    def generate_key(self, spec: KeySpec) -> KeyCryptogram:
        return self._call("generate_key", spec)  # type: ignore[no-any-return]

    def form_key(self, spec: KeySpec, components: Sequence[bytes]) -> tuple[KeyCryptogram, list[bytes]]:
        return self._call("form_key", spec, list(components))  # type: ignore[no-any-return]

    def check_component(self, ctk: KeyCryptogram, algorithm: Algorithm, wrapped: bytes, kcv: bytes) -> None:
        self._call("check_component", ctk, algorithm, wrapped, kcv)

    def form_key_wrapped(
        self, spec: KeySpec, ctk: KeyCryptogram, parts: Sequence[tuple[bytes, bytes]]
    ) -> tuple[KeyCryptogram, list[bytes]]:
        return self._call("form_key_wrapped", spec, ctk, list(parts))  # type: ignore[no-any-return]

    def lmk_components(self, n: int) -> list[bytes]:
        raise Unsupported("command", "back up the LMK from one member's own backend, not through the pool")

    def translate_lmk(self, key: KeyCryptogram) -> KeyCryptogram:
        raise Unsupported("command", "migrate the LMK with one backend holding both LMKs, not through the pool")

    def import_key(
        self, kek: KeyCryptogram, wrapped: bytes, spec: KeySpec, kcv: bytes | None = None
    ) -> KeyCryptogram:
        return self._call("import_key", kek, wrapped, spec, kcv)  # type: ignore[no-any-return]

    def export_key(self, kek: KeyCryptogram, key: KeyCryptogram) -> bytes:
        return self._call("export_key", kek, key)  # type: ignore[no-any-return]

    def kcv(self, key: KeyCryptogram) -> bytes:
        return self._call("kcv", key)  # type: ignore[no-any-return]

    def key_sync_mac(self, kek: KeyCryptogram, data: bytes) -> bytes:
        return self._call("key_sync_mac", kek, data)  # type: ignore[no-any-return]

    def public_key(self, key: KeyCryptogram) -> bytes:
        return self._call("public_key", key)  # type: ignore[no-any-return]

    def translate_pin(
        self,
        block: bytes,
        src: PinKey,
        src_format: PinBlockFormat,
        dst: KeyCryptogram,
        dst_format: PinBlockFormat,
        pan: str | None,
    ) -> bytes:
        return self._call("translate_pin", block, src, src_format, dst, dst_format, pan)  # type: ignore[no-any-return]

    def translate_pins(
        self,
        blocks: bytes,
        src: KeyCryptogram,
        src_format: PinBlockFormat,
        dst: KeyCryptogram,
        dst_format: PinBlockFormat,
        pans: Sequence[str | None],
    ) -> PinBatch:
        return self._call("translate_pins", blocks, src, src_format, dst, dst_format, pans)  # type: ignore[no-any-return]

    def pin_translator(
        self, src: PinKey, src_format: PinBlockFormat, dst: KeyCryptogram, dst_format: PinBlockFormat,
    ) -> PinTranslator:
        # Each call may go to another member, so nothing is bound but the arguments.
        def translate(block: bytes, pan: str | None) -> bytes:
            return self.translate_pin(block, src, src_format, dst, dst_format, pan)

        return translate

    def encrypt_pin_for_storage(
        self, block: bytes, key: PinKey, fmt: PinBlockFormat, pan: str | None,
        psk: KeyCryptogram, account: str,
    ) -> StoredPin:
        return self._call("encrypt_pin_for_storage", block, key, fmt, pan, psk, account)  # type: ignore[no-any-return]

    def verify_pin_stored(
        self, block: bytes, key: PinKey, fmt: PinBlockFormat, pan: str | None,
        psk: KeyCryptogram, account: str, stored: StoredPin,
    ) -> None:
        self._call("verify_pin_stored", block, key, fmt, pan, psk, account, stored)

    def verify_pins_stored(
        self, blocks: bytes, key: KeyCryptogram, fmt: PinBlockFormat, pans: Sequence[str | None],
        psk: KeyCryptogram, accounts: Sequence[str], stored: Sequence[StoredPin],
    ) -> list[bool | HsmsvcError]:
        return self._call("verify_pins_stored", blocks, key, fmt, pans, psk, accounts, stored)  # type: ignore[no-any-return]

    def reencrypt_stored_pin(
        self, stored: StoredPin, old_psk: KeyCryptogram, new_psk: KeyCryptogram, account: str
    ) -> StoredPin:
        return self._call("reencrypt_stored_pin", stored, old_psk, new_psk, account)  # type: ignore[no-any-return]

    def reencrypt_stored_pins(
        self, old_psk: KeyCryptogram, new_psk: KeyCryptogram, rows: Sequence[tuple[bytes, str]],
        old_lmk: bool = False,
    ) -> list[bytes | None]:
        return self._call("reencrypt_stored_pins", old_psk, new_psk, list(rows), old_lmk)  # type: ignore[no-any-return]

    def compare_stored_pins(
        self, old_psk: KeyCryptogram, new_psk: KeyCryptogram, rows: Sequence[tuple[bytes, bytes, str]],
        old_lmk: bool = False,
    ) -> list[bool]:
        return self._call("compare_stored_pins", old_psk, new_psk, list(rows), old_lmk)  # type: ignore[no-any-return]

    def verify_pin_ibm3624(
        self, block: bytes, key: PinKey, fmt: PinBlockFormat, pan: str | None,
        pvk: KeyCryptogram, validation_data: str, offset: str,
    ) -> None:
        self._call("verify_pin_ibm3624", block, key, fmt, pan, pvk, validation_data, offset)

    def generate_pin_offset(
        self, block: bytes, key: PinKey, fmt: PinBlockFormat, pan: str | None,
        pvk: KeyCryptogram, validation_data: str,
    ) -> str:
        return self._call("generate_pin_offset", block, key, fmt, pan, pvk, validation_data)  # type: ignore[no-any-return]

    def generate_pvv(
        self, block: bytes, key: PinKey, fmt: PinBlockFormat, pan: str, pvk: KeyCryptogram, pvki: int,
    ) -> str:
        return self._call("generate_pvv", block, key, fmt, pan, pvk, pvki)  # type: ignore[no-any-return]

    def verify_pin_pvv(
        self, block: bytes, key: PinKey, fmt: PinBlockFormat, pan: str,
        pvk: KeyCryptogram, pvki: int, pvv: str,
    ) -> None:
        self._call("verify_pin_pvv", block, key, fmt, pan, pvk, pvki, pvv)

    def generate_mac(self, key: KeyCryptogram, data: bytes, algorithm: MacAlgorithm, padding: Padding) -> bytes:
        return self._call("generate_mac", key, data, algorithm, padding)  # type: ignore[no-any-return]

    def verify_mac(
        self, key: KeyCryptogram, data: bytes, mac: bytes, algorithm: MacAlgorithm, padding: Padding
    ) -> None:
        self._call("verify_mac", key, data, mac, algorithm, padding)

    def generate_macs(
        self, key: KeyCryptogram, messages: Sequence[bytes], algorithm: MacAlgorithm, padding: Padding
    ) -> list[bytes | InvalidInput]:
        return self._call("generate_macs", key, messages, algorithm, padding)  # type: ignore[no-any-return]

    def verify_macs(
        self, key: KeyCryptogram, messages: Sequence[bytes], macs: Sequence[bytes], algorithm: MacAlgorithm,
        padding: Padding,
    ) -> list[bool | InvalidInput]:
        return self._call("verify_macs", key, messages, macs, algorithm, padding)  # type: ignore[no-any-return]

    def encrypt_data(self, key: KeyCryptogram, params: FieldParams, data: bytes) -> bytes:
        return self._call("encrypt_data", key, params, data)  # type: ignore[no-any-return]

    def encrypt_fields(
        self, key: KeyCryptogram, params: FieldParams, ivs: Sequence[bytes], plaintexts: Sequence[bytes]
    ) -> list[bytes | InvalidInput]:
        return self._call("encrypt_fields", key, params, ivs, plaintexts)  # type: ignore[no-any-return]

    def decrypt_data(self, key: KeyCryptogram, params: FieldParams, data: bytes) -> bytes:
        return self._call("decrypt_data", key, params, data)  # type: ignore[no-any-return]

    def reencrypt_data(
        self, src: KeyCryptogram, src_params: FieldParams, dst: KeyCryptogram, dst_params: FieldParams,
        data: bytes,
    ) -> bytes:
        return self._call("reencrypt_data", src, src_params, dst, dst_params, data)  # type: ignore[no-any-return]

    def pan_hash(self, pan: str) -> bytes:
        return self._call("pan_hash", pan)  # type: ignore[no-any-return]

    def pan_hashes(self, pans: Sequence[str]) -> list[bytes]:
        return self._call("pan_hashes", pans)  # type: ignore[no-any-return]

    def random(self, length: int) -> bytes:
        return self._call("random", length)  # type: ignore[no-any-return]

    def audit_mac(self, data: bytes) -> bytes:
        return self._call("audit_mac", data)  # type: ignore[no-any-return]

    def write_audit_anchor(self, seq: int, head: bytes) -> None:
        self._broadcast("write_audit_anchor", seq, head)

    def read_audit_anchor(self) -> tuple[int, bytes] | None:
        found = [a for a in self._broadcast("read_audit_anchor") if a is not None]
        return max(found, key=lambda a: int(a[0])) if found else None

    def forget(self, key_id: str) -> None:
        self._broadcast("forget", key_id)

    def close(self) -> None:
        self._closed.set()
        self._health.join(2)
        for m in self._members:
            with m.lock:
                m.healthy = False
                m.stop()
