"""LMK shares at the ceremony console (issue 29): sealing the soft LMK under custodians' shares, and
opening it with k of them.

* :class:`ShareSealedTarget`: ``ceremony lmk create|restore --threshold K --share-holder NAME …``
  forms the LMK as before and seals it under a random key split k-of-n
  (``hsm/soft/sharesealed.py``); each share is shown once to its holder.
* :func:`reseal`: ``ceremony lmk reseal`` puts an existing LMK (passphrase- or share-sealed)
  under new shares; the file it replaces is kept beside it until the officer destroys it.
* :func:`enter_shares`: k holders, each named, type their share (hidden) to open the LMK for
  ``lmk backup`` and the other offline commands; fewer than k open nothing.

A new file is written whole or not at all: staged in its directory (0600, fsynced), checked to
open with the shares just made, and only then are the shares shown; it takes its name only
after every holder has seen theirs, so a ceremony stopped half-way leaves no file that too few
people can open.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hsmsvc.ceremony.console import Console, zeroize
from hsmsvc.ceremony.staging import Staging
from hsmsvc.crypto import components
from hsmsvc.errors import AlreadyExists, InvalidInput, PermissionDenied
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.soft import sealed, shares, sharesealed
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.types import Algorithm

__all__ = ["KEPT_SUFFIX", "Entered", "ShareSealedTarget", "enter_shares", "open_at_console", "reseal", "write"]

KEPT_SUFFIX = ".previous"
"""``lmk.sealed.previous``: the file a reseal replaced, kept until the officer destroys it."""
TRIES = 3
"""Mistyped shares (check digits) one holder may retype before the ceremony stops."""


def show_once(console: Console, share: shares.Share, *, holder: str, header: sharesealed.SealHeader) -> None:
    """One share on screen for its holder alone, then screen and scrollback cleared (``ceremony/lmk.py``)."""
    console.ask(f"{holder}: make sure only you can see the screen, then press Enter. ")
    try:
        console.say(f"  share  {shares.text(seal=share.seal, index=share.index, value=share.value)}")
        console.say(f"  share {share.index} of {header.count} of LMK seal {header.prefix}; "
                    f"any {header.threshold} open it")
        console.ask("Write it down for your envelope, then press Enter to clear the screen. ")
    finally:
        console.clear()  # on Ctrl-C or a closed input too: the share leaves the screen first


def _staged(path: Path, blob: bytes) -> Path:
    """``blob`` in a fresh 0600 file beside ``path``, fsynced: ready to take ``path``'s name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _sync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(console: Console, path: Path, lmk: bytes | bytearray, *, algorithm: Algorithm, threshold: int,
          holders: Sequence[str],
          keep: Path | None = None) -> sharesealed.SealHeader:
    """Seal ``lmk`` under new shares into ``path``, showing each share once to its holder.

    Without ``keep``, ``path`` must not exist (an LMK is never overwritten). With it, the file at
    ``path`` is first hard-linked to ``keep`` (which must not exist), then replaced in one rename:
    at every instant ``path`` holds the old file or the new one.
    """
    if keep is None and path.exists():
        raise InvalidInput("sealed", "file exists; an LMK is never overwritten")
    if keep is not None and (keep.exists() or not path.exists()):
        raise InvalidInput("sealed", f"{keep.name} exists: destroy it first (it is the file an earlier reseal "
                                     "replaced), or there is no file to reseal")
    blob, header = sealed_and_shown(console, lmk, algorithm=algorithm, threshold=threshold, holders=holders)
    tmp = _staged(path, blob)
    try:
        if keep is None:
            os.link(tmp, path)  # fails if the name was taken meanwhile: never an overwrite
            tmp.unlink()
        else:
            os.link(path, keep)
            os.replace(tmp, path)
        _sync_dir(path)
    finally:
        tmp.unlink(missing_ok=True)
    return header


def sealed_and_shown(console: Console, lmk: bytes | bytearray, *, algorithm: Algorithm, threshold: int,
                     holders: Sequence[str]) -> tuple[bytes, sharesealed.SealHeader]:
    """``lmk`` sealed under new shares, each shown once to its holder; returns the file's bytes.

    The file must open with the shares just made (its KCV checked) before anyone writes one down.
    """
    blob, header, made = sharesealed.seal(algorithm, lmk, threshold=threshold, holders=holders)
    try:
        sharesealed.unseal(blob, made[:threshold])
        for share, holder in zip(made, holders):
            show_once(console, share, holder=holder, header=header)
            console.say(f"{holder}: share {share.index} of {header.count} given")
    finally:
        for s in made:
            s.wipe()
    return blob, header


@dataclass(frozen=True)
class Entered:
    """Holders who typed a share at the console: the names the ceremony recorded for their indices."""

    header: sharesealed.SealHeader
    holders: tuple[sharesealed.Holder, ...]


def _ask_share(console: Console, name: str, header: sharesealed.SealHeader) -> shares.Share:
    for _ in range(TRIES):
        raw = console.secret(f"{name}, your share (hidden): ")
        try:
            share = shares.parse(raw)
        except InvalidInput as e:
            console.say(f"  {e.reason}; again")
            continue
        finally:
            zeroize(raw)
        if share.seal != header.prefix:
            share.wipe()
            console.say(f"  that share is of LMK seal {share.seal}, not {header.prefix}: is it the right envelope?")
            continue
        return share
    raise InvalidInput("share", shares.MISTYPED)


def enter_shares(console: Console, blob: bytes, names: Sequence[str] = ()) -> tuple[list[shares.Share], Entered]:
    """k of the holders each name themselves and type their share, hidden. The caller wipes the shares.

    Input that ends (or Ctrl-C) before k shares are in stops here, with the shares typed so far wiped.
    """
    header = sharesealed.read_header(blob)
    console.say(f"The LMK is share-sealed (seal {header.prefix}): {header.threshold} of its {header.count} "
                "holders open it, each typing their own share.")
    console.say("Holders: " + ", ".join(f"{h.index} {h.name}" for h in header.holders))
    given: list[shares.Share] = []
    who: list[sharesealed.Holder] = []
    try:
        for i in range(header.threshold):
            name = names[i] if i < len(names) else console.ask(
                f"Share holder {i + 1} of {header.threshold}, your name: ")
            holder = next((h for h in header.holders if h.name == name), None)
            if holder is None:
                raise InvalidInput("share_holder", "not a holder of this seal's shares (see the list above)")
            if holder in who:
                raise PermissionDenied("share_holder", f"{name} already gave a share (one each)")
            share = _ask_share(console, name, header)
            given.append(share)
            if share.index != holder.index:
                raise InvalidInput("share", f"that is share {share.index}; {name} holds share {holder.index}")
            who.append(holder)
            console.say(f"{name}: share {share.index} entered ({i + 1} of {header.threshold})")
        return given, Entered(header, tuple(who))
    except BaseException as e:
        for s in given:
            s.wipe()
        if isinstance(e, InvalidInput) and e.field == "input":
            raise InvalidInput("shares", f"{len(who)} of {header.threshold} shares entered: the LMK stays sealed "
                                         "and nothing was written") from None
        raise


def open_at_console(console: Console, path: Path, names: Sequence[str] = ()) -> tuple[SoftBackend, Entered]:
    """The soft backend on a share-sealed LMK, opened by k holders at this console."""
    try:
        blob = Path(path).read_bytes()
    except OSError:
        raise InvalidInput("sealed", "file cannot be read") from None
    given, entered = enter_shares(console, blob, names)
    try:
        return SoftBackend.from_shares(path, given, blob), entered
    finally:
        for s in given:
            s.wipe()


class ShareSealedTarget:
    """A new soft LMK sealed under k-of-n custodians' shares (``ceremony lmk create|restore --threshold``)."""

    def __init__(self, path: Path, console: Console, *, threshold: int, holders: Sequence[str],
                 algorithm: Algorithm = Algorithm.AES_256) -> None:
        # Checked now, before any custodian enters a component.
        sharesealed.check_holders(holders, threshold)
        if algorithm not in sharesealed.LMK_ALGORITHMS:
            raise InvalidInput("algorithm", "AES_256 or SM4 for an LMK")
        self.algorithm = algorithm
        self.path = path
        self.console = console
        self.threshold = threshold
        self.holders = tuple(holders)
        self._made: SoftBackend | None = None
        self.check_free()

    def check_free(self) -> None:
        if self.path.exists():
            raise AlreadyExists("sealed", f"{self.path} exists; an LMK is never overwritten")

    def prepare(self, parts: Sequence[bytes | bytearray], staging: Staging) -> bytes:
        """Seal, show each share to its holder, and stage the file; it takes its name only when the
        whole ceremony publishes (a later failure leaves no file, and the shares shown are void)."""
        self.check_free()
        lmk = bytearray(components.combine(self.algorithm, parts))
        try:
            blob, header = sealed_and_shown(self.console, lmk, algorithm=self.algorithm, threshold=self.threshold,
                                            holders=self.holders)
            staging.add(self.path, blob)
            # Kept for one open(): the ceremony's own audit row, without asking the shares back.
            self._made = SoftBackend(bytes(lmk), self.algorithm, anchor_path=Path(str(self.path) + ".anchor"))
        finally:
            zeroize(lmk)
        return header.lmk_kcv

    def commit(self, parts: Sequence[bytes | bytearray], lmk_kcv: bytes) -> None:
        return None  # published with the ceremony's other files

    def uncommit(self, lmk_kcv: bytes) -> None:
        return None  # a published file is taken back with the others

    def open(self) -> Backend:
        made, self._made = self._made, None
        return made if made is not None else open_at_console(self.console, self.path)[0]

    def describe(self) -> str:
        return f"share-sealed file {self.path} ({self.threshold} of {len(self.holders)}: {','.join(self.holders)})"


def reseal(console: Console, *, path: Path, passphrase: bytes | None, threshold: int, holders: Sequence[str],
           names: Sequence[str] = ()) -> tuple[sharesealed.SealHeader, SoftBackend, Path]:
    """Put the LMK in ``path`` under new shares; returns the new header, a backend on the LMK (for the
    record; the caller closes it) and where the replaced file is kept.

    A passphrase-sealed file opens with ``passphrase``; a share-sealed one with k of its holders at the
    console (to change the holders or the threshold).
    """
    keep = path.with_name(path.name + KEPT_SUFFIX)
    if keep.exists() and path.exists() and os.path.samefile(keep, path):
        # A reseal stopped between its two steps left the kept name on the live file itself:
        # shredding "the previous file", as the officer is told to, would destroy the LMK.
        keep.unlink()
        console.say(f"{keep.name} was the live file under a second name (an interrupted reseal); name removed")
    if keep.exists():
        raise InvalidInput("sealed", f"{keep.name} exists: destroy it first (the file an earlier reseal replaced)")
    kind = sharesealed.kind_of(path)
    blob = path.read_bytes()
    if kind is sharesealed.SealKind.PASSPHRASE:
        if passphrase is None:
            raise InvalidInput("passphrase", "the LMK's passphrase")
        algorithm, clear, _ = sealed.unseal(blob, passphrase)
        lmk = bytearray(clear)
    else:
        given, _ = enter_shares(console, blob, names)
        try:
            algorithm, clear, _ = sharesealed.unseal(blob, given)
            lmk = bytearray(clear)
        finally:
            for s in given:
                s.wipe()
    try:
        header = write(console, path, lmk, algorithm=algorithm, threshold=threshold, holders=holders, keep=keep)
        backend = SoftBackend(bytes(lmk), algorithm, anchor_path=Path(str(path) + ".anchor"))
    finally:
        zeroize(lmk)
    return header, backend, keep
