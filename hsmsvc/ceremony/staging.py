"""All or nothing for a ceremony's files: staged privately, published together.

Each output (a sealed LMK, every mailer) is written unnamed in its
destination's directory (``O_TMPFILE``; where the file system lacks it, in a
private directory beside it), fsynced, and only when every one of them is
written are they linked into place together.
``os.link`` refuses an existing name, so publishing never overwrites; if one
link fails, those already made are removed. Until then nothing is visible,
and :meth:`Staging.discard` overwrites and removes what was staged: a
ceremony that fails at its last mailer leaves no file holding a component.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hsmsvc.errors import AlreadyExists, InvalidInput

__all__ = ["Staging", "shred", "sweep"]


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
class _Staged:
    destination: Path
    fd: int | None = None  # an unnamed O_TMPFILE file in the destination's directory
    path: Path | None = None  # or a named one in a private staging directory (file systems without O_TMPFILE)


_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)


def _wipe_fd(fd: int) -> None:
    size = os.fstat(fd).st_size
    os.pwrite(fd, secrets.token_bytes(size), 0)
    os.fsync(fd)


def sweep(directory: Path) -> list[Path]:
    """Shred what killed ceremonies left in ``directory``: named staging directories no live
    ceremony holds (each holds its ``.lock``); returns them. Unnamed staged files need no sweep:
    the kernel frees them when their process dies, however it dies."""
    swept: list[Path] = []
    for stale in sorted(directory.glob(".*.staging")):
        try:
            lock = os.open(stale / ".lock", os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue  # not a ceremony's, or being made: left alone
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a ceremony still running
            for f in stale.iterdir():
                if f.name != ".lock":
                    shred(f)
            (stale / ".lock").unlink(missing_ok=True)
            stale.rmdir()
            swept.append(stale)
        finally:
            os.close(lock)
    return swept


@dataclass
class Staging:
    """The outputs of one ceremony, ``ceremony`` naming its private directories.

    A file is staged unnamed (``O_TMPFILE``) in its destination's directory and
    linked into place at :meth:`publish`: a ceremony killed by SIGKILL leaves no
    name behind, and the kernel frees the data. Where the file system has no
    ``O_TMPFILE``, a private directory ``.<ceremony>.staging`` holds named files
    instead, locked while the ceremony lives; the next ceremony there shreds
    any such directory whose ceremony is gone (:func:`sweep`), and says so.
    """

    ceremony: str
    unnamed: bool = True
    """Stage with ``O_TMPFILE`` where the file system has it (False: always the named fallback)."""
    swept: list[Path] = field(default_factory=list)
    _files: list[_Staged] = field(default_factory=list)
    _made: list[Path] = field(default_factory=list)  # directories this ceremony created
    _locks: list[int] = field(default_factory=list)
    _published: list[Path] = field(default_factory=list)

    def _directory(self, directory: Path, mode: int) -> None:
        if not directory.exists():
            missing = [p for p in (directory, *directory.parents) if not p.exists()]
            directory.mkdir(parents=True, mode=mode)
            self._made.extend(missing)  # deepest first: removed in this order

    def _private(self, directory: Path) -> Path:
        private = directory / f".{self.ceremony}.staging"
        if private in self._made:
            return private
        self.swept += sweep(directory)
        try:
            private.mkdir(mode=0o700)  # this ceremony's own, or none: never one another process made
        except FileExistsError:
            raise AlreadyExists("file", f"{private} exists and is not this ceremony's: a racing process made "
                                        "it; nothing was written") from None
        self._made.insert(0, private)
        lock = os.open(private / ".lock", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        self._locks.append(lock)
        return private

    def add(self, destination: Path, data: bytes, *, directory_mode: int = 0o700) -> Path:
        """Stage ``data`` for ``destination`` (mode 0600); refuses a destination that exists."""
        if destination.exists() or any(f.destination == destination for f in self._files):
            raise AlreadyExists("file", f"{destination} exists; a ceremony never overwrites")
        self._directory(destination.parent, directory_mode)
        staged = _Staged(destination)
        try:
            try:
                if not self.unnamed:
                    raise OSError(errno.EOPNOTSUPP, "named staging")
                staged.fd = os.open(destination.parent, os.O_TMPFILE | os.O_WRONLY, 0o600)
            except OSError as e:
                if e.errno not in _NO_TMPFILE:
                    raise
                staged.path = self._private(destination.parent) / destination.name
                staged.fd = os.open(staged.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise InvalidInput("file", f"{destination.parent} cannot be written: {e.strerror}") from None
        self._files.append(staged)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(staged.fd, view):]
            os.fsync(staged.fd)
        except OSError as e:
            raise InvalidInput("file", f"{destination.name} cannot be written: {e.strerror}") from None
        return destination

    @property
    def destinations(self) -> list[Path]:
        return [f.destination for f in self._files]

    @property
    def published(self) -> list[Path]:
        return list(self._published)

    def publish(self) -> None:
        """Link every staged file into place, or none; then close and remove the staging."""
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for f in self._files:
                if f.path is None:
                    assert f.fd is not None
                    # linkat(AT_SYMLINK_FOLLOW) through /proc names the unnamed file (open(2),
                    # O_TMPFILE); the dir fd makes CPython call linkat rather than link (bpo-41355).
                    os.link(f"proc/self/fd/{f.fd}", f.destination, src_dir_fd=root, follow_symlinks=True)
                else:
                    os.link(f.path, f.destination)
                self._published.append(f.destination)
        except FileExistsError as e:
            self.unpublish()
            raise AlreadyExists("file", f"{e.filename} appeared during the ceremony; nothing was published") \
                from None
        except OSError as e:
            self.unpublish()
            raise InvalidInput("file", f"cannot publish: {e.strerror}; nothing was published") from None
        finally:
            os.close(root)
        for directory in {d.parent for d in self._published}:
            _fsync_dir(directory)
        for f in self._files:
            if f.path is not None:
                f.path.unlink()  # the published link keeps the data
            if f.fd is not None:
                os.close(f.fd)
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
        for f in self._files:
            if f.fd is not None:
                try:
                    _wipe_fd(f.fd)
                finally:
                    os.close(f.fd)
            if f.path is not None:
                f.path.unlink(missing_ok=True)
        self._files.clear()
        self._remove_dirs()

    def _remove_dirs(self) -> None:
        for d in self._made:
            if d.name.endswith(".staging"):
                (d / ".lock").unlink(missing_ok=True)
            try:
                d.rmdir()  # only if empty: a journal written there keeps it
            except OSError:
                pass
        self._made.clear()
        for lock in self._locks:
            os.close(lock)
        self._locks.clear()
