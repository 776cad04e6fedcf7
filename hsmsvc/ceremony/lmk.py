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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from hsmsvc.ceremony import mailer
from hsmsvc.ceremony.console import Console, zeroize
from hsmsvc.ceremony.entry import Custodian, check_custodians, collect, person, show_once
from hsmsvc.ceremony.record import Record
from hsmsvc.ceremony.staging import Staging
from hsmsvc.crypto import compare, components, kcv
from hsmsvc.errors import (
    AlreadyExists,
    InvalidInput,
    PermissionDenied,
    VerificationFailed,
)
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import LmkComponents
from hsmsvc.types import Algorithm

__all__ = [
    "Custodian", "Record", "SealedTarget", "Target", "TokenTarget", "backup", "check_custodians", "create",
    "restore",
]

TOKEN_LMK = Algorithm.AES_256
"""A token's LMK: PKCS#11 v2.40/3.0 define no SM4 mechanism, and SoftHSM2 has none."""


class Target(Protocol):
    """Where an LMK lives: a sealed file (soft) or a token (PKCS#11).

    Forming one is two steps, so that a ceremony publishes all of its outputs
    or none: :meth:`prepare` stages what can be staged (a sealed file) and
    returns the KCV; :meth:`commit` runs once every output is published (a
    token, which cannot be staged, is written then; if it refuses, the
    published mailers are taken back).
    """

    @property
    def algorithm(self) -> Algorithm:
        """The LMK's algorithm: AES_256, or SM4 for a national-only deployment (soft backend)."""
        ...

    def check_free(self) -> None:
        """Refuse before anyone types anything if an LMK is already here."""
        ...

    def prepare(self, parts: Sequence[bytes | bytearray], staging: Staging) -> bytes: ...

    def commit(self, parts: Sequence[bytes | bytearray], lmk_kcv: bytes) -> None: ...

    def uncommit(self, lmk_kcv: bytes) -> None:
        """Undo :meth:`commit` (the journal or the audit failed after it)."""
        ...

    def open(self) -> Backend: ...

    def describe(self) -> str: ...


def install(target: Target, parts: Sequence[bytes | bytearray], ceremony: str) -> bytes:
    """Form an LMK outside a ceremony session (``hsmsvc lmk init``); returns its KCV."""
    staging = Staging(ceremony)
    try:
        lmk_kcv = target.prepare(parts, staging)
        staging.publish()
        target.commit(parts, lmk_kcv)
    except BaseException:
        staging.discard()
        raise
    return lmk_kcv


@dataclass(frozen=True)
class SealedTarget:
    path: Path
    passphrase: bytes = field(repr=False)
    scrypt_log2_n: int = 17
    algorithm: Algorithm = Algorithm.AES_256

    def __post_init__(self) -> None:
        # The sealed file's own rule, checked when the passphrase is typed, before any custodian
        # enters a component (it was checked only when the LMK was sealed, after all of them).
        from hsmsvc.hsm.soft import sealed

        sealed.check_passphrase(self.passphrase)
        if self.algorithm not in sealed.LMK_ALGORITHMS:
            raise InvalidInput("algorithm", "AES_256 or SM4 for an LMK")

    def check_free(self) -> None:
        if self.path.exists():
            raise AlreadyExists("sealed", f"{self.path} exists; an LMK is never overwritten")

    def prepare(self, parts: Sequence[bytes | bytearray], staging: Staging) -> bytes:
        from hsmsvc.hsm.soft import sealed

        self.check_free()
        lmk = components.combine(self.algorithm, parts)
        blob = sealed.seal(self.algorithm, lmk, self.passphrase, sealed.ScryptParams(log2_n=self.scrypt_log2_n))
        staging.add(self.path, blob)
        return kcv.kcv(self.algorithm, lmk)

    def commit(self, parts: Sequence[bytes | bytearray], lmk_kcv: bytes) -> None:
        return None  # published with the ceremony's other files

    def uncommit(self, lmk_kcv: bytes) -> None:
        return None  # a published file is taken back with the others

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

    @property
    def algorithm(self) -> Algorithm:
        return TOKEN_LMK

    def check_free(self) -> None:
        return None  # the token refuses a second LMK at commit, before the journal says anything

    def prepare(self, parts: Sequence[bytes | bytearray], staging: Staging) -> bytes:
        return kcv.kcv(TOKEN_LMK, components.combine(TOKEN_LMK, parts))

    def commit(self, parts: Sequence[bytes | bytearray], lmk_kcv: bytes) -> None:
        from hsmsvc.hsm.pkcs11.backend import provision_lmk

        made = provision_lmk(self.module, self.token, self.pin, [bytes(p) for p in parts])
        if not compare.bytes_eq(made, lmk_kcv):
            raise VerificationFailed("token", "the LMK formed in the token has another KCV")

    def uncommit(self, lmk_kcv: bytes) -> None:
        """Take back the LMK :meth:`commit` formed, when a later step of its ceremony failed."""
        from hsmsvc.hsm.pkcs11.backend import remove_lmk

        remove_lmk(self.module, self.token, self.pin, lmk_kcv)

    def open(self) -> Backend:
        from hsmsvc.hsm.pkcs11.backend import Pkcs11Backend

        return Pkcs11Backend(self.module, self.token, self.pin)

    def describe(self) -> str:
        return f"token {self.token!r}"


def _detail(custodians: Sequence[Custodian], lmk_kcv: bytes, **extra: str) -> dict[str, str]:
    return {"custodians": ",".join(c.name for c in custodians),
            **{f"component_{i + 1}_kcv": c.kcv.hex().upper() for i, c in enumerate(custodians)},
            "lmk_kcv": lmk_kcv.hex().upper(), **extra}


def _audit_under(record: Record, target: Target) -> Callable[[str, dict[str, str]], None]:
    """The audit row is MACed under the LMK just formed, opened once it is published."""
    def audit(action: str, detail: dict[str, str]) -> None:
        backend = target.open()
        try:
            record.audit(action, backend, **detail)
        finally:
            backend.close()
    return audit


def create(
    console: Console, *, n: int, target: Target, record: Record, names: Sequence[str] = (),
    mailer_dir: Path | None = None,
) -> bytes:
    """Form a new LMK from ``n`` custodians' components into ``target``; returns its KCV.

    All or nothing: the sealed LMK and every mailer are staged and published
    together at the end, with the journal line; any failure leaves none of
    them and journals the abandonment.
    """
    check_custodians(n)
    target.check_free()
    with record.session("lmk-create") as session:
        console.say(f"LMK ceremony {session.id}: create, {n} custodians, into {target.describe()}")
        drawn: list[tuple[int, str, bytearray, bytes]] = []

        def keep(i: int, name: str, part: bytearray, check: bytes) -> None:
            drawn.append((i, name, part, check))

        parts, custodians = collect(console, n, target.algorithm, names, may_generate=True, need_kcv=False,
                                    on_generated=keep if mailer_dir is not None else None)
        try:
            lmk_kcv = target.prepare(parts, session.staging)
            envelopes: dict[str, str] = {}
            if mailer_dir is not None:
                now = datetime.now(timezone.utc)
                for i, name, part, check in drawn:
                    m = mailer.Mailer(name, i + 1, n, "lmk", "LMK", target.algorithm.value, part, check, lmk_kcv,
                                      session.id, now, record.officer)
                    mailer.stage(session.staging, mailer_dir, m)
                    envelopes[f"envelope_{i + 1}"] = m.envelope
            detail = _detail(custodians, lmk_kcv, target=target.describe(), algorithm=target.algorithm.value)
            session.complete("lmk.create", {**detail, **envelopes},
                             then=lambda: target.commit(parts, lmk_kcv), undo=lambda: target.uncommit(lmk_kcv),
                             audit=_audit_under(record, target))
        finally:
            for p in parts:
                zeroize(p)
    if mailer_dir is not None:
        for path in session.staging.published:
            console.say(f"  mailer {path}")
    console.say(f"LMK KCV {lmk_kcv.hex().upper()}: record it in the ceremony log; every restore checks it.")
    session.report(console.say)
    return lmk_kcv


def restore(
    console: Console, *, n: int, target: Target, record: Record, expect_kcv: bytes | None,
    names: Sequence[str] = (),
) -> bytes:
    """Re-create an LMK from its backup (or creation) components, each checked by its KCV first."""
    check_custodians(n)
    target.check_free()
    with record.session("lmk-restore") as session:
        console.say(f"LMK ceremony {session.id}: restore, {n} custodians, into {target.describe()}")
        if expect_kcv is None:
            typed = console.ask("The LMK KCV from the ceremony record: ").replace(" ", "")
            try:
                expect_kcv = bytes.fromhex(typed)
            except ValueError:
                raise InvalidInput("lmk_kcv", "hex digits") from None
        if len(expect_kcv) < 2:
            raise InvalidInput("lmk_kcv", "at least 2 bytes (4 hex digits)")
        parts, custodians = collect(console, n, target.algorithm, names, may_generate=False, need_kcv=True)
        try:
            combined = kcv.kcv(target.algorithm, components.combine(target.algorithm, parts))
            if not compare.bytes_eq(combined[: len(expect_kcv)], expect_kcv):
                raise VerificationFailed("lmk_kcv", f"the components give {combined.hex().upper()}, not "
                                                    f"{expect_kcv.hex().upper()}; nothing was changed")
            lmk_kcv = target.prepare(parts, session.staging)
            session.complete("lmk.restore", _detail(custodians, lmk_kcv, target=target.describe()),
                             then=lambda: target.commit(parts, lmk_kcv), undo=lambda: target.uncommit(lmk_kcv),
                             audit=_audit_under(record, target))
        finally:
            for p in parts:
                zeroize(p)
    console.say(f"LMK restored into {target.describe()}; KCV {lmk_kcv.hex().upper()}")
    session.report(console.say)
    return lmk_kcv


def backup(
    console: Console, *, backend: Backend, n: int, record: Record, names: Sequence[str] = (),
    mailer_dir: Path | None = None,
) -> list[Custodian]:
    """The LMK as ``n`` fresh random components, each shown to (or mailed for) one custodian.

    With mailers, all of them are published together or none is.
    """
    check_custodians(n)
    lmk_kcv, algorithm = backend.lmk_kcv(), backend.capabilities.lmk
    with record.session("lmk-backup") as session:
        console.say(f"LMK ceremony {session.id}: backup, {n} custodians")
        custodians: list[Custodian] = []
        envelopes: dict[str, str] = {}
        parts = [bytearray(p) for p in backend.execute(LmkComponents(n=n))]
        try:
            now = datetime.now(timezone.utc)
            for i, part in enumerate(parts):
                name = person(console, f"Custodian {i + 1} of {n}, your name: ",
                              names[i] if i < len(names) else None, "custodian")
                if any(c.name == name for c in custodians):
                    raise PermissionDenied("custodian", f"{name} already holds a component (one each)")
                check = kcv.kcv(algorithm, bytes(part))
                if mailer_dir is not None:
                    m = mailer.Mailer(name, i + 1, n, "lmk", "LMK", algorithm.value, part, check, lmk_kcv, session.id,
                                      now, record.officer)
                    mailer.stage(session.staging, mailer_dir, m)
                    envelopes[f"envelope_{i + 1}"] = m.envelope
                else:
                    show_once(console, name, part, check)
                console.say(f"{name}: component {i + 1} KCV {check.hex().upper()}")
                custodians.append(Custodian(name, check))
        finally:
            for p in parts:
                zeroize(p)
        session.complete("lmk.backup", {**_detail(custodians, lmk_kcv), **envelopes},
                         audit=lambda action, detail: record.audit(action, backend, **detail))
    for path in session.staging.published:
        console.say(f"  mailer {path}")
    console.say(f"LMK KCV {lmk_kcv.hex().upper()}: the {n} components restore it with `ceremony lmk restore`.")
    session.report(console.say)
    return custodians
