"""LMK ceremonies, run at the backend by key officers and custodians (004 clause 7.1.1 (1)).

* :func:`create`: two to nine custodians each enter (or draw) a component; each
  sees only their own component's KCV; the LMK's KCV is shown and recorded.
* :func:`backup`: the soft backend gives the LMK out as fresh random
  components, one per custodian; a token LMK is non-extractable, so its
  backup is the set of components it was created from.
* :func:`restore`: custodians re-enter components; each is checked against the
  KCV on its mailer, and the result against the LMK's recorded KCV, before
  anything is written.
* :mod:`hsmsvc.ceremony.migration`: every stored key moves to a new LMK.

Every step is appended to a journal file and, when a store is named, to its
audit chain, with the officer's and the custodians' names.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from hsmsvc.ceremony import mailer
from hsmsvc.ceremony.console import Console, group, parse_hex, zeroize
from hsmsvc.crypto import compare, components, kcv
from hsmsvc.errors import (
    InvalidInput,
    PermissionDenied,
    VerificationFailed,
)
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import LmkComponents
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm

__all__ = [
    "Custodian", "Record", "SealedTarget", "Target", "TokenTarget", "backup", "check_custodians", "create",
    "restore",
]

LMK = Algorithm.AES_256


@dataclass(frozen=True)
class Custodian:
    name: str
    kcv: bytes


class Target(Protocol):
    """Where an LMK lives: a sealed file (soft) or a token (PKCS#11)."""

    def install(self, parts: Sequence[bytes | bytearray]) -> bytes:
        """Form the LMK from ``parts`` here; returns its KCV. Refuses to replace an LMK."""
        ...

    def open(self) -> Backend: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class SealedTarget:
    path: Path
    passphrase: bytes = field(repr=False)
    scrypt_log2_n: int = 17

    def __post_init__(self) -> None:
        # The sealed file's own rule, checked when the passphrase is typed, before any custodian
        # enters a component (it was checked only when the LMK was sealed, after all of them).
        from hsmsvc.hsm.soft import sealed

        sealed.check_passphrase(self.passphrase)

    def install(self, parts: Sequence[bytes | bytearray]) -> bytes:
        from hsmsvc.hsm.soft import sealed

        if self.path.exists():
            raise InvalidInput("sealed", "file exists; an LMK is never overwritten")
        lmk = components.combine(LMK, parts)
        blob = sealed.seal(LMK, lmk, self.passphrase, sealed.ScryptParams(log2_n=self.scrypt_log2_n))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        return kcv.kcv(LMK, lmk)

    def open(self, old: SealedTarget | None = None) -> Backend:
        from hsmsvc.hsm.soft.backend import SoftBackend

        return SoftBackend.from_sealed(self.path, self.passphrase,
                                       (old.path, old.passphrase) if old is not None else None)

    def describe(self) -> str:
        return f"sealed file {self.path}"


@dataclass(frozen=True)
class TokenTarget:
    module: str
    token: str
    pin: str = field(repr=False)

    def install(self, parts: Sequence[bytes | bytearray]) -> bytes:
        from hsmsvc.hsm.pkcs11.backend import provision_lmk

        return provision_lmk(self.module, self.token, self.pin, [bytes(p) for p in parts])

    def open(self) -> Backend:
        from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend

        return Pkcs11Backend(self.module, self.token, self.pin)

    def describe(self) -> str:
        return f"token {self.token!r}"


@dataclass(frozen=True)
class Record:
    """Where each ceremony step is written: a journal file, and the store's audit chain if named."""

    officer: str
    journal: Path | None = None
    store_url: str | None = None

    def write(self, action: str, backend: Backend | None, **detail: str) -> None:
        if self.journal is not None:
            line = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "officer": self.officer,
                    "action": action, **detail}
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            # 0600 when created: the journal names custodians and KCVs (an existing one keeps its mode).
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(json.dumps(line, sort_keys=True) + "\n")
        if self.store_url is not None and backend is not None:
            store = KeyStore(self.store_url, backend)
            try:
                store.migrate()
                store.audit(AuditEvent(self.officer, action, None, None, tuple(sorted(detail.items()))))
            finally:
                store.close()


def _detail(custodians: Sequence[Custodian], lmk_kcv: bytes, **extra: str) -> dict[str, str]:
    return {"custodians": ",".join(c.name for c in custodians),
            **{f"component_{i + 1}_kcv": c.kcv.hex().upper() for i, c in enumerate(custodians)},
            "lmk_kcv": lmk_kcv.hex().upper(), **extra}


def check_custodians(n: int) -> None:
    if not isinstance(n, int) or n < 2:
        raise InvalidInput("custodians", "at least 2 (dual control: no one person holds the LMK)")
    if n > 9:
        raise InvalidInput("custodians", "at most 9")


NAME_TRIES = 3
"""How many times a custodian may type a name the mailer rule refuses before the ceremony stops."""


def _name(console: Console, names: Sequence[str], i: int, n: int) -> str:
    """The custodian's name, by the rule their mailer's file names need (issue 29: a name with ``:``
    passed the prompt and then failed at the mailer, after the LMK was written)."""
    rule = "a name of 1-64 of A-Z a-z 0-9 . _ -"
    if i < len(names):
        if not mailer.CUSTODIAN_NAME.fullmatch(names[i]):
            raise InvalidInput("custodian", rule)
        return names[i]
    for _ in range(NAME_TRIES):
        name = console.ask(f"Custodian {i + 1} of {n}, your name: ")
        if mailer.CUSTODIAN_NAME.fullmatch(name):
            return name
        console.say(f"  {rule}; again")
    raise InvalidInput("custodian", rule)


def check_against_mailer(console: Console, prompt: str, check: bytes, i: int, outcome: str) -> None:
    """The custodian types the KCV printed on their mailer; a component that does not give it stops here."""
    typed = console.ask(prompt).replace(" ", "")
    try:
        want = bytes.fromhex(typed)
    except ValueError:
        raise InvalidInput(f"component {i + 1} KCV", "hex digits") from None
    if len(want) < 2 or not compare.bytes_eq(check[: len(want)], want):
        raise VerificationFailed(
            f"component {i + 1}", f"KCV mismatch: the mailer says {want.hex().upper()}, the component entered "
            f"gives {check[: max(len(want), 3)].hex().upper()}; {outcome}")


def _recorded(record: Record, target: Target, action: str, custodians: Sequence[Custodian], lmk_kcv: bytes) -> None:
    """Journal and, with a store, audit an LMK step; the audit row is MACed under that LMK."""
    backend = target.open() if record.store_url else None
    try:
        record.write(action, backend, **_detail(custodians, lmk_kcv, target=target.describe()))
    finally:
        if backend is not None:
            backend.close()


def _show_once(console: Console, name: str, part: bytes | bytearray, check: bytes) -> None:
    console.ask(f"{name}: make sure only you can see the screen, then press Enter. ")
    try:
        console.say(f"  component  {group(part)}")
        console.say(f"  KCV        {check.hex().upper()}")
        console.ask("Write both down for your envelope, then press Enter to clear the screen. ")
    finally:
        console.clear()  # on Ctrl-C or a closed input too: the component leaves the screen first


def collect(
    console: Console, n: int, algorithm: Algorithm, names: Sequence[str] = (), *,
    may_generate: bool, need_kcv: bool, on_generated: Callable[[int, str, bytearray, bytes], None] | None = None,
) -> tuple[list[bytearray], list[Custodian]]:
    """Each custodian in turn enters a component (echo off) or has one drawn; returns them with their KCVs.

    ``need_kcv``: the custodian also types the KCV from their mailer and a
    mismatch stops the ceremony before anything changes.
    """
    check_custodians(n)
    parts: list[bytearray] = []
    custodians: list[Custodian] = []
    try:
        for i in range(n):
            name = _name(console, names, i, n)
            if any(c.name == name for c in custodians):
                raise PermissionDenied("custodian", f"{name} already gave a component (one each)")
            hint = "hex, hidden; Enter alone to draw a random one" if may_generate else "hex, hidden"
            raw = console.secret(f"{name}, component {i + 1} of {n} ({hint}): ")
            try:
                if not raw.strip() and may_generate:
                    part = bytearray(secrets.token_bytes(algorithm.key_length))
                    if algorithm.is_tdes:
                        part[:] = components.adjust_odd_parity(bytes(part))
                    drawn = True
                else:
                    part = parse_hex(raw, f"component {i + 1}")
                    drawn = False
            finally:
                zeroize(raw)
            parts.append(part)
            if len(part) != algorithm.key_length:
                raise InvalidInput(f"component {i + 1}", f"{2 * algorithm.key_length} hex digits")
            check = kcv.kcv(algorithm, bytes(part))
            if need_kcv:
                check_against_mailer(console, f"{name}, the component KCV on your mailer: ", check, i,
                                     "nothing was changed")
            if drawn:
                if on_generated is not None:
                    on_generated(i, name, part, check)
                else:
                    _show_once(console, name, part, check)
            console.say(f"{name}: component {i + 1} KCV {check.hex().upper()}")
            custodians.append(Custodian(name, check))
        return parts, custodians
    except BaseException:
        for p in parts:
            zeroize(p)
        raise


def create(
    console: Console, *, n: int, target: Target, record: Record, names: Sequence[str] = (),
    mailer_dir: Path | None = None,
) -> bytes:
    """Form a new LMK from ``n`` custodians' components into ``target``; returns its KCV."""
    check_custodians(n)
    console.say(f"LMK ceremony: create, {n} custodians, into {target.describe()}")
    drawn: list[tuple[int, str, bytearray, bytes]] = []

    def keep(i: int, name: str, part: bytearray, check: bytes) -> None:
        drawn.append((i, name, part, check))

    parts, custodians = collect(console, n, LMK, names, may_generate=True, need_kcv=False,
                                on_generated=keep if mailer_dir is not None else None)
    try:
        lmk_kcv = target.install(parts)
        if mailer_dir is not None:
            now = datetime.now(timezone.utc)
            for i, name, part, check in drawn:
                mailer.write(mailer_dir, mailer.Mailer(name, i + 1, n, "lmk", "LMK", LMK.value, part, check,
                                                       lmk_kcv, "lmk-create", now))
    finally:
        for p in parts:
            zeroize(p)
    console.say(f"LMK KCV {lmk_kcv.hex().upper()}: record it in the ceremony log; every restore checks it.")
    _recorded(record, target, "lmk.create", custodians, lmk_kcv)
    return lmk_kcv


def restore(
    console: Console, *, n: int, target: Target, record: Record, expect_kcv: bytes | None,
    names: Sequence[str] = (),
) -> bytes:
    """Re-create an LMK from its backup (or creation) components, each checked by its KCV first."""
    check_custodians(n)
    console.say(f"LMK ceremony: restore, {n} custodians, into {target.describe()}")
    if expect_kcv is None:
        typed = console.ask("The LMK KCV from the ceremony record: ").replace(" ", "")
        try:
            expect_kcv = bytes.fromhex(typed)
        except ValueError:
            raise InvalidInput("lmk_kcv", "hex digits") from None
    if len(expect_kcv) < 2:
        raise InvalidInput("lmk_kcv", "at least 2 bytes (4 hex digits)")
    parts, custodians = collect(console, n, LMK, names, may_generate=False, need_kcv=True)
    try:
        combined = kcv.kcv(LMK, components.combine(LMK, parts))
        if not compare.bytes_eq(combined[: len(expect_kcv)], expect_kcv):
            raise VerificationFailed("lmk_kcv", f"the components give {combined.hex().upper()}, not "
                                                f"{expect_kcv.hex().upper()}; nothing was changed")
        lmk_kcv = target.install(parts)
    finally:
        for p in parts:
            zeroize(p)
    console.say(f"LMK restored into {target.describe()}; KCV {lmk_kcv.hex().upper()}")
    _recorded(record, target, "lmk.restore", custodians, lmk_kcv)
    return lmk_kcv


def backup(
    console: Console, *, backend: Backend, n: int, record: Record, names: Sequence[str] = (),
    mailer_dir: Path | None = None,
) -> list[Custodian]:
    """The LMK as ``n`` fresh random components, each shown to (or mailed for) one custodian."""
    check_custodians(n)
    lmk_kcv = backend.lmk_kcv()
    parts = [bytearray(p) for p in backend.execute(LmkComponents(n=n))]
    custodians: list[Custodian] = []
    try:
        now = datetime.now(timezone.utc)
        for i, part in enumerate(parts):
            name = _name(console, names, i, n)
            if any(c.name == name for c in custodians):
                raise PermissionDenied("custodian", f"{name} already holds a component (one each)")
            check = kcv.kcv(LMK, bytes(part))
            if mailer_dir is not None:
                txt, _ = mailer.write(mailer_dir, mailer.Mailer(name, i + 1, n, "lmk", "LMK", LMK.value, part,
                                                                check, lmk_kcv, "lmk-backup", now))
                console.say(f"{name}: component {i + 1} KCV {check.hex().upper()}, mailer {txt.name} (+ .pdf)")
            else:
                _show_once(console, name, part, check)
                console.say(f"{name}: component {i + 1} KCV {check.hex().upper()}")
            custodians.append(Custodian(name, check))
    finally:
        for p in parts:
            zeroize(p)
    console.say(f"LMK KCV {lmk_kcv.hex().upper()}: the {n} components restore it with `ceremony lmk restore`.")
    record.write("lmk.backup", backend, **_detail(custodians, lmk_kcv))
    return custodians
