"""The two keys of a re-encryption job: looked up (or made) in the store, or named for a server.

Errors name the option the operator typed (``--from``, ``--to``, ``--zmk``), so a
wrong key id says which one. A dry run looks keys up and makes none: a target
``--generate-to`` would make, or a legacy key ``--legacy-key`` would import, is
reported as what would happen, and the dry run then counts rows without crypto.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from hsmsvc.batch.model import BackendMover, Mode, Mover, label
from hsmsvc.crypto import compare
from hsmsvc.errors import AlreadyExists, InvalidInput, KeyNotFound, KeyStateError, KeyUsageViolation
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.model import KeyRef, StoredKey
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyState, KeyType, KeyUsage, ModeOfUse

__all__ = ["Crypto", "local", "parse_ref", "remote"]

OpenBackend = Callable[[argparse.Namespace], Backend]
T = TypeVar("T")


def parse_ref(text: str, option: str) -> KeyRef:
    key_id, _, version = text.partition(":")
    try:
        return KeyRef(key_id, version=int(version) if version else None)
    except (ValueError, InvalidInput):
        raise InvalidInput(option, "KEY_ID[:VERSION]") from None


@dataclass(frozen=True)
class Crypto:
    """Where a job's crypto happens: the keys' labels, and how a process gets its own mover.

    ``open_mover`` is None in a dry run whose key is not there yet (it would be made): rows are
    then counted, not deciphered.
    """

    source: str
    target: str
    old_lmk: bool
    open_mover: Callable[[], tuple[Mover, Callable[[], None]]] | None
    """A fresh mover and its closer: each worker process opens its own backend or channel."""
    would: tuple[str, ...] = ()
    """What a dry run would have made in the key store first."""

    @property
    def target_key(self) -> tuple[str, int]:
        key_id, _, version = self.target.rpartition(":")
        return key_id, int(version)


def local(args: argparse.Namespace, mode: Mode, open_backend: OpenBackend,
          backend: Backend, store: KeyStore) -> tuple[Crypto, Mover | None]:
    """The job's keys from ``store``, and a mover on ``backend`` for this process (None: see :class:`Crypto`)."""
    keys = _Lookup(args, mode, store, backend)
    source = keys.source()
    target = keys.target(keys.operation())
    old_lmk = mode is Mode.LMK
    if isinstance(source, str) or isinstance(target, str):  # a dry run: a key it would make is not there
        would = tuple(w for w in (source, target) if isinstance(w, str))
        source_label = source if isinstance(source, str) else label(source.cryptogram)
        if isinstance(source, str):
            source_label = f"{parse_ref(args.source, '--from').key_id}:1"
        target_label = target if isinstance(target, str) else label(target.cryptogram)
        if isinstance(target, str):
            ref = parse_ref(args.target, "--to")
            target_label = f"{ref.key_id}:{ref.version or 1}"
        return Crypto(source_label, target_label, old_lmk, None, would), None
    if mode in (Mode.PSK, Mode.LMK) and target.cryptogram.spec.usage is not KeyUsage.PIN_ENCRYPTION:
        raise KeyUsageViolation("--to", f"{mode.value} mode moves PINs to an enciphering PSK; use --mode digest")
    s, t = source.cryptogram, target.cryptogram

    def open_mover() -> tuple[Mover, Callable[[], None]]:
        b = open_backend(args)
        return BackendMover(b, s, t, old_lmk), b.close

    return Crypto(label(s), label(t), old_lmk, open_mover), BackendMover(backend, s, t, old_lmk)


class _Lookup:
    """One job's key look-ups, each error naming the option it came from."""

    def __init__(self, args: argparse.Namespace, mode: Mode, store: KeyStore, backend: Backend) -> None:
        self.args, self.mode, self.store, self.backend = args, mode, store, backend
        self.manager = KeyManager(store, backend, args.officer)
        self.dry_run: bool = args.dry_run

    @staticmethod
    def check(find: Callable[[], T], option: str, key: str, hint: str = "") -> T:
        """``find()``, its key errors re-raised as the option's (``key``: what the operator named)."""
        try:
            return find()
        except KeyNotFound:
            raise KeyNotFound(option, f"no key {key} in the store{hint}") from None
        except (KeyStateError, KeyUsageViolation) as e:
            raise type(e)(option, e.reason) from None

    def source(self) -> StoredKey | str:
        """The source PSK; in a dry run whose legacy key is not imported yet, what the import would be."""
        args, mode = self.args, self.mode
        if mode is Mode.LEGACY and args.legacy_key:
            would = self._import_legacy()
            if would:
                return would
        if mode is Mode.LMK:
            if not args.old_sealed:
                raise InvalidInput("--old-sealed", "lmk mode reads the source PSK under the old LMK")
            old_store = KeyStore(args.from_store, self.backend) if args.from_store else self.store
            try:
                source = self.check(lambda: KeyManager(old_store, self.backend, args.officer).lookup(
                    parse_ref(args.source, "--from")), "--from", args.source)
            finally:
                if args.from_store:
                    old_store.close()
        else:
            source = self.check(lambda: self.manager.lookup(parse_ref(args.source, "--from")), "--from", args.source)
        if source.state not in (KeyState.ACTIVE, KeyState.RETIRING):
            raise KeyStateError("--from", f"a {source.state.value} PSK is not read")
        return source

    def operation(self) -> Operation:
        if self.mode in (Mode.PSK, Mode.LMK):
            return Operation.PIN_STORE_ENCRYPT
        if self.mode is Mode.DIGEST:
            return Operation.PIN_STORE_DIGEST
        try:
            digest = self.manager.lookup(parse_ref(self.args.target, "--to")).cryptogram.spec.usage
        except KeyNotFound:
            return Operation.PIN_STORE_ENCRYPT
        return Operation.PIN_STORE_DIGEST if digest is KeyUsage.MAC_HMAC else Operation.PIN_STORE_ENCRYPT

    def _import_legacy(self) -> str | None:
        """Import the legacy key as ``--from`` version 1, once; in a dry run, what would be imported."""
        args = self.args
        if not args.zmk:
            raise InvalidInput("--zmk", "the ZMK the legacy key arrives under")
        ref = parse_ref(args.source, "--from")
        try:
            alg = Algorithm[args.legacy_algorithm]
            wrapped, kcv = bytes.fromhex(args.legacy_key), bytes.fromhex(args.legacy_kcv or "")
        except (KeyError, ValueError):
            raise InvalidInput("--legacy-key", "hex, with a hex KCV and a known algorithm") from None
        spec = KeySpec(ref.key_id, 1, KeyType.PSK, alg, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)
        try:
            kept = self.manager.lookup(KeyRef(ref.key_id, version=1))
        except KeyNotFound:
            if self.dry_run:
                self.check(lambda: self.manager.for_use(args.zmk, Operation.KEY_IMPORT_UNDER), "--zmk", args.zmk)
                return f"would import {ref.key_id}:1 ({alg.value}) under the ZMK {args.zmk}, audited as key.import"
            self.check(lambda: self.manager.import_under(
                kek_id=args.zmk, wrapped=wrapped, spec=spec, kcv=kcv or None, alias=f"legacy/{ref.key_id}"),
                "--zmk", args.zmk)
            return None
        # A resumed run: the key came in on the first run; it must be the same key.
        if kcv and not compare.bytes_eq(kept.cryptogram.kcv[: len(kcv)], kcv):
            raise AlreadyExists("--from", f"{ref.key_id}:1 is another key (its KCV differs)")
        return None

    def target(self, op: Operation) -> StoredKey | str:
        """The target, generated first if it is missing and ``--generate-to`` says how; a dry run makes none
        and says what it would generate instead."""
        ref = parse_ref(self.args.target, "--to")
        if not self.args.generate_to:
            return self.check(lambda: self.manager.for_use(ref, op), "--to", self.args.target,
                              hint=" (--generate-to ALGORITHM makes it)")
        try:
            alg = Algorithm[self.args.generate_to]
        except KeyError:
            raise InvalidInput("--generate-to", "an algorithm name, e.g. TDES_2KEY or AES_256") from None
        try:
            self.manager.lookup(ref)
        except KeyNotFound:
            version = ref.version or 1
            if self.dry_run:
                return f"would generate {ref.key_id}:{version} ({alg.value}) as the target, audited as key.generate"
            if op is Operation.PIN_STORE_DIGEST:
                usage, mode_of_use = KeyUsage.MAC_HMAC, ModeOfUse.MAC_GENERATE_VERIFY
            else:
                usage, mode_of_use = KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT
            try:
                self.manager.generate(KeySpec(ref.key_id, version, KeyType.PSK, alg, usage, mode_of_use))
            except AlreadyExists:
                pass  # another worker of the same job made it a moment ago
        return self.check(lambda: self.manager.for_use(ref, op), "--to", self.args.target)


def remote(args: argparse.Namespace, mode: Mode) -> Crypto:
    """The job's keys named for a server's batch RPCs: they are looked up there, per call."""
    from hsmsvc.batch.remote import RemoteMover
    from hsmsvc_client.v1 import types_pb2 as pb

    if mode in (Mode.LMK, Mode.LEGACY):
        raise InvalidInput("--server", f"{mode.value} mode runs beside the backend (it needs the old LMK or an "
                                       "import), not through --server")
    refs = []
    for text, option in ((args.source, "--from"), (args.target, "--to")):
        ref = parse_ref(text, option)
        if ref.version is None:
            raise InvalidInput(option, "KEY_ID:VERSION: through --server the rows' labels need the version")
        refs.append(ref)
    source, target = (pb.KeyRef(key_id=r.key_id, version=r.version or 0) for r in refs)

    def open_mover() -> tuple[Mover, Callable[[], None]]:
        from hsmsvc_client import Client, ClientTls

        if args.insecure_server:
            client = Client.insecure(args.server, deadline=60.0)
        else:
            if not (args.ca and args.cert and args.key):
                raise InvalidInput("--server", "--ca, --cert and --key (mTLS), or --insecure-server (development)")
            client = Client(args.server, ClientTls(args.ca, args.cert, args.key, args.server_name), deadline=60.0)
        return RemoteMover(client, source, target), client.close

    return Crypto(f"{refs[0].key_id}:{refs[0].version}", f"{refs[1].key_id}:{refs[1].version}", False, open_mover)
