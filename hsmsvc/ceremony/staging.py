"""All or nothing for a ceremony's files: staged privately, published together.

Each output (a sealed LMK, every mailer) is written to a private directory
beside its destination (mode 0700, on the same file system), fsynced, and
only when every one of them is written are they linked into place together.
``os.link`` refuses an existing name, so publishing never overwrites; if one
link fails, those already made are removed. Until then nothing is visible,
and :meth:`Staging.discard` overwrites and removes what was staged: a
ceremony that fails at its last mailer leaves no file holding a component.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hsmsvc.errors import AlreadyExists, InvalidInput

__all__ = ["Staging", "shred"]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def shred(path: Path) -> None:
    """Overwrite a file with random bytes, flush it to disk, then unlink it (gone already: nothing).

    A symbolic link is removed, never followed: one planted among the mailers (or put in
    place of a published one) would otherwise have the target, say the sealed LMK, overwritten.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO: refused, not waited on
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise InvalidInput("file", f"{path.name} cannot be overwritten: {e.strerror}") from None
        path.unlink(missing_ok=True)  # a symbolic link: the name goes, its target is left alone
        return
    with os.fdopen(fd, "wb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput("file", f"{path.name} is not a regular file")
        size = os.fstat(fd).st_size
        f.write(secrets.token_bytes(size))
        f.flush()
        os.fsync(fd)
    path.unlink(missing_ok=True)


@dataclass
class Staging:
    """The outputs of one ceremony, ``ceremony`` naming its private directories."""

    ceremony: str
    _files: list[tuple[Path, Path]] = field(default_factory=list)  # (staged, destination)
    _made: list[Path] = field(default_factory=list)  # directories this ceremony created
    _published: list[Path] = field(default_factory=list)

    def _private(self, directory: Path, mode: int) -> Path:
        if not directory.exists():
            missing = [p for p in (directory, *directory.parents) if not p.exists()]
            directory.mkdir(parents=True, mode=mode)
            self._made.extend(missing)  # deepest first: removed in this order
        private = directory / f".{self.ceremony}.staging"
        if private in self._made:
            return private
        try:
            private.mkdir(mode=0o700)  # this ceremony's own, or none: never one another process made
        except FileExistsError:
            raise AlreadyExists("file", f"{private} exists and is not this ceremony's: a racing process made "
                                        "it, or a ceremony killed there left it (it may hold clear components: "
                                        "shred it); nothing was written") from None
        self._made.insert(0, private)
        return private

    def add(self, destination: Path, data: bytes, *, directory_mode: int = 0o700) -> Path:
        """Stage ``data`` for ``destination`` (mode 0600); refuses a destination that exists."""
        if destination.exists() or any(d == destination for _, d in self._files):
            raise AlreadyExists("file", f"{destination} exists; a ceremony never overwrites")
        staged = self._private(destination.parent, directory_mode) / destination.name
        try:
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise InvalidInput("file", f"{destination.parent} cannot be written: {e.strerror}") from None
        self._files.append((staged, destination))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise InvalidInput("file", f"{destination.name} cannot be written: {e.strerror}") from None
        return destination

    @property
    def destinations(self) -> list[Path]:
        return [d for _, d in self._files]

    @property
    def published(self) -> list[Path]:
        return list(self._published)

    def publish(self) -> None:
        """Link every staged file into place, or none; then remove the staging directories."""
        try:
            for staged, destination in self._files:
                os.link(staged, destination)
                self._published.append(destination)
        except FileExistsError as e:
            self.unpublish()
            raise AlreadyExists("file", f"{e.filename} appeared during the ceremony; nothing was published") \
                from None
        except OSError as e:
            self.unpublish()
            raise InvalidInput("file", f"cannot publish: {e.strerror}; nothing was published") from None
        for directory in {d.parent for d in self._published}:
            _fsync_dir(directory)
        for staged, _ in self._files:
            staged.unlink()  # the published link keeps the data
        self._files.clear()
        self._made = [d for d in self._made if d.name.endswith(".staging")]
        self._remove_dirs()

    def unpublish(self) -> None:
        """Remove what :meth:`publish` linked (a later step of the ceremony failed)."""
        for destination in self._published:
            try:
                destination.unlink()
            except FileNotFoundError:
                pass
        self._published.clear()

    def discard(self) -> None:
        """Overwrite and remove everything staged or published, and the directories this ceremony made."""
        for destination in list(self._published):
            shred(destination)
        self._published.clear()
        for staged, _ in self._files:
            shred(staged)
        self._files.clear()
        self._remove_dirs()

    def _remove_dirs(self) -> None:
        for d in self._made:
            try:
                d.rmdir()  # only if empty: a journal written there keeps it
            except OSError:
                pass
        self._made.clear()
