"""``hsmsvc reencrypt``: the batch job that moves a table's stored PINs to a new key."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from typing import TextIO

from sqlalchemy import Engine

from hsmsvc.batch.reencrypt import BackendMover, Job, JobSpec, Mode, Mover, label
from hsmsvc.batch.table import Encoding, PinTable, Tables, connect
from hsmsvc.crypto import compare
from hsmsvc.errors import AlreadyExists, InvalidInput, KeyNotFound, KeyStateError, KeyUsageViolation
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.model import KeyCryptogram, KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.model import AuditEvent, KeyRef, StoredKey
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyState, KeyType, KeyUsage, ModeOfUse

__all__ = ["add_arguments", "run"]

OpenBackend = Callable[[argparse.Namespace], Backend]


def add_arguments(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("the table")
    t.add_argument("--db", required=True, help="customer database URL (SQLAlchemy)")
    t.add_argument("--table", required=True)
    t.add_argument("--pk-column", default="id", help="primary key (default id)")
    t.add_argument("--account-column", default="account", help="PAN or account number (default account)")
    t.add_argument("--pin-column", default="pin", help="the PIN cryptogram (default pin)")
    t.add_argument("--version-column", default="pin_key",
                   help="text naming the key each row is under, KEY_ID:VERSION (default pin_key)")
    t.add_argument("--encoding", choices=[e.value for e in Encoding], default="hex",
                   help="hex text (default) or binary")
    k = p.add_argument_group("the keys")
    k.add_argument("--store", help="key store URL: where the PSKs are, and the audit log (not with --server)")
    k.add_argument("--mode", choices=[m.value for m in Mode], required=True,
                   help="psk: PSK rotation; lmk: PSK under the old LMK to one under the new; "
                        "digest: enciphered to keyed digest; legacy: a retiring system's key, imported under a ZMK")
    k.add_argument("--from", dest="source", required=True, help="source PSK, KEY_ID[:VERSION]")
    k.add_argument("--to", dest="target", required=True, help="target PSK (enciphering or digest), KEY_ID[:VERSION]")
    k.add_argument("--generate-to", metavar="ALGORITHM",
                   help="generate the target PSK with this algorithm if it does not exist yet (e.g. TDES_2KEY, "
                        "AES_128; digest mode: AES_256 or SM4)")
    k.add_argument("--old-sealed", help="lmk mode: the old LMK's sealed file (key change storage)")
    k.add_argument("--old-passphrase-env", help="lmk mode: variable holding the old LMK's passphrase")
    k.add_argument("--old-passphrase-file", help="lmk mode: file holding the old LMK's passphrase")
    k.add_argument("--from-store", help="lmk mode: the key store holding the source PSK under the old LMK "
                                         "(default --store)")
    k.add_argument("--legacy-key", help="legacy mode: the retiring system's PIN key under the ZMK, hex "
                                        "(imported as --from, version 1)")
    k.add_argument("--legacy-kcv", help="legacy mode: its KCV, hex")
    k.add_argument("--legacy-algorithm", default="TDES_2KEY", help="legacy mode: its algorithm (default TDES_2KEY)")
    k.add_argument("--zmk", help="legacy mode: the ZMK the legacy key travels under")
    s = p.add_argument_group("remote crypto (instead of a backend here)")
    s.add_argument("--server", help="a running hsmsvc, host:port: the crypto goes through its batch RPCs")
    s.add_argument("--ca", help="CA that signed the server (PEM)")
    s.add_argument("--cert", help="this job's client certificate (PEM); its principal needs PinService")
    s.add_argument("--key", help="its private key (PEM)")
    s.add_argument("--server-name", help="the name in the server's certificate, if not its address")
    s.add_argument("--insecure-server", action="store_true", help="plaintext, to a --insecure-dev server only")
    r = p.add_argument_group("the run")
    r.add_argument("--job", help="job name; a run with the same name resumes it (default: table:from->to)")
    r.add_argument("--chunk", type=int, default=10_000, help="rows per transaction (default 10000)")
    r.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    r.add_argument("--max-chunks", type=int, help="stop after this many chunks per worker (resume later)")
    r.add_argument("--dry-run", action="store_true", help="do the crypto, count, write nothing")
    r.add_argument("--verify-sample", type=int, default=0, metavar="K",
                   help="after the run, re-decipher K random moved rows and compare with their old values")
    r.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    r.add_argument("--officer", default=os.environ.get("USER") or "batch", help="who runs the job (audit)")


def _ref(text: str) -> KeyRef:
    key_id, _, version = text.partition(":")
    try:
        return KeyRef(key_id, version=int(version) if version else None)
    except ValueError:
        raise InvalidInput("key", "KEY_ID[:VERSION]") from None


@dataclass(frozen=True)
class _Keys:
    source: KeyCryptogram
    target: KeyCryptogram
    old_lmk: bool


def _source_state(key: StoredKey) -> None:
    if key.state not in (KeyState.ACTIVE, KeyState.RETIRING):
        raise KeyStateError("from", f"a {key.state.value} PSK is not read")


def _keys(args: argparse.Namespace, mode: Mode, backend: Backend, store: KeyStore, officer: str) -> _Keys:
    """Look up (and in legacy mode import) the two keys, and check they suit the mode."""
    manager = KeyManager(store, backend, officer)
    if mode is Mode.LEGACY and args.legacy_key:
        if not args.zmk:
            raise InvalidInput("zmk", "the ZMK the legacy key arrives under")
        ref = _ref(args.source)
        try:
            alg = Algorithm[args.legacy_algorithm]
            wrapped, kcv = bytes.fromhex(args.legacy_key), bytes.fromhex(args.legacy_kcv or "")
        except (KeyError, ValueError):
            raise InvalidInput("legacy_key", "hex, with a hex KCV and a known algorithm") from None
        spec = KeySpec(ref.key_id, 1, KeyType.PSK, alg, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT)
        try:
            kept = manager.lookup(KeyRef(ref.key_id, version=1))
        except KeyNotFound:
            manager.import_under(kek_id=args.zmk, wrapped=wrapped, spec=spec, kcv=kcv or None,
                                 alias=f"legacy/{ref.key_id}")
        else:
            # A resumed run: the key came in on the first run; it must be the same key.
            if kcv and not compare.bytes_eq(kept.cryptogram.kcv[: len(kcv)], kcv):
                raise AlreadyExists("from", f"{ref.key_id}:1 is another key (its KCV differs)")
    if mode is Mode.LMK:
        if not args.old_sealed:
            raise InvalidInput("old_sealed", "lmk mode reads the source PSK under the old LMK")
        old_store = KeyStore(args.from_store, backend) if args.from_store else store
        try:
            source = KeyManager(old_store, backend, officer).lookup(_ref(args.source))
        finally:
            if old_store is not store:
                old_store.close()
    else:
        source = manager.lookup(_ref(args.source))
    _source_state(source)
    op = Operation.PIN_STORE_ENCRYPT if mode in (Mode.PSK, Mode.LMK) else Operation.PIN_STORE_DIGEST
    if mode is Mode.LEGACY:
        op = Operation.PIN_STORE_DIGEST if _is_digest(manager, args.target) else Operation.PIN_STORE_ENCRYPT
    if args.generate_to:
        _generate(manager, args.target, args.generate_to, op)
    target = manager.for_use(_ref(args.target), op)
    digest_target = target.cryptogram.spec.usage is not KeyUsage.PIN_ENCRYPTION
    if mode in (Mode.PSK, Mode.LMK) and digest_target:
        raise KeyUsageViolation("to", f"{mode.value} mode moves PINs to an enciphering PSK; use --mode digest")
    return _Keys(source.cryptogram, target.cryptogram, mode is Mode.LMK)


def _is_digest(manager: KeyManager, text: str) -> bool:
    try:
        return manager.lookup(_ref(text)).cryptogram.spec.usage is KeyUsage.MAC_HMAC
    except KeyNotFound:
        return False


def _generate(manager: KeyManager, text: str, algorithm: str, op: Operation) -> None:
    ref = _ref(text)
    try:
        manager.lookup(ref)
        return
    except KeyNotFound:
        pass
    try:
        alg = Algorithm[algorithm]
    except KeyError:
        raise InvalidInput("generate_to", "an algorithm name, e.g. TDES_2KEY or AES_256") from None
    if op is Operation.PIN_STORE_DIGEST:
        usage, mode_of_use = KeyUsage.MAC_HMAC, ModeOfUse.MAC_GENERATE_VERIFY
    else:
        usage, mode_of_use = KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT
    try:
        manager.generate(KeySpec(ref.key_id, ref.version or 1, KeyType.PSK, alg, usage, mode_of_use))
    except AlreadyExists:
        pass  # another worker of the same job made it a moment ago


class _ProgressLine:
    """Rows, rate and ETA on stderr, from the checkpoint table, so it counts every worker on every machine."""

    def __init__(self, job: Job, total: int, out: TextIO, every: float = 0.5) -> None:
        self._job, self._total, self._out, self._every = job, total, out, every
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._base = job.progress().moved
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _ProgressLine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._show(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self._show()

    def _show(self, final: bool = False) -> None:
        try:
            p = self._job.progress()
        except Exception:  # the line is a nicety; the job reports its own errors
            return
        done = p.moved + p.rejected
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = (p.moved - self._base) / elapsed
        left = max(self._total - done, 0)
        eta = f"{int(left / rate) // 60:d}:{int(left / rate) % 60:02d}" if rate > 0 and left else "-"
        width = 30
        filled = int(width * min(done / self._total, 1.0)) if self._total else width
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{self._total:,} rows  "
                f"{rate:,.0f} rows/s  ETA {eta}  chunks {p.chunks_done}/{p.chunks}")
        end = "\n" if final or not self._out.isatty() else ""
        self._out.write(("\r" if self._out.isatty() else "") + line + end)
        self._out.flush()


@dataclass(frozen=True)
class _Crypto:
    """Where a job's crypto happens: the keys' labels, and how a process gets its own mover."""

    source: str
    target: str
    old_lmk: bool
    open_mover: Callable[[], tuple[Mover, Callable[[], None]]]
    """A fresh mover and its closer: each worker process opens its own backend or channel."""

    @property
    def target_key(self) -> tuple[str, int]:
        key_id, _, version = self.target.rpartition(":")
        return key_id, int(version)


def _local(args: argparse.Namespace, mode: Mode, open_backend: OpenBackend,
           backend: Backend, store: KeyStore) -> tuple[_Crypto, Mover]:
    keys = _keys(args, mode, backend, store, args.officer)

    def open_mover() -> tuple[Mover, Callable[[], None]]:
        b = open_backend(args)
        return BackendMover(b, keys.source, keys.target, keys.old_lmk), b.close

    crypto = _Crypto(label(keys.source), label(keys.target), keys.old_lmk, open_mover)
    return crypto, BackendMover(backend, keys.source, keys.target, keys.old_lmk)


def _remote(args: argparse.Namespace, mode: Mode) -> _Crypto:
    from hsmsvc.batch.remote import RemoteMover
    from hsmsvc.v1 import types_pb2 as pb

    if mode in (Mode.LMK, Mode.LEGACY):
        raise InvalidInput("server", f"{mode.value} mode runs beside the backend (it needs the old LMK or an "
                                     "import), not through --server")
    refs = []
    for text in (args.source, args.target):
        ref = _ref(text)
        if ref.version is None:
            raise InvalidInput("key", "KEY_ID:VERSION: through --server the rows' labels need the version")
        refs.append(ref)
    source, target = (pb.KeyRef(key_id=r.key_id, version=r.version or 0) for r in refs)

    def open_mover() -> tuple[Mover, Callable[[], None]]:
        from hsmsvc_client import Client, ClientTls

        if args.insecure_server:
            client = Client.insecure(args.server, deadline=60.0)
        else:
            if not (args.ca and args.cert and args.key):
                raise InvalidInput("server", "--ca, --cert and --key (mTLS), or --insecure-server (development)")
            client = Client(args.server, ClientTls(args.ca, args.cert, args.key, args.server_name), deadline=60.0)
        return RemoteMover(client, source, target), client.close

    return _Crypto(f"{refs[0].key_id}:{refs[0].version}", f"{refs[1].key_id}:{refs[1].version}", False, open_mover)


def _worker(args: argparse.Namespace, crypto: _Crypto, spec: JobSpec, pins: PinTable, samples: int) -> None:
    """One worker process: its own mover and connections (nothing is shared across fork)."""
    mover, close = crypto.open_mover()
    engine = connect(args.db)
    try:
        job = Job(engine, Tables(engine, pins), spec)
        job.work(mover, f"{socket.gethostname()}:{os.getpid()}", samples, args.max_chunks)
    finally:
        engine.dispose()
        close()


def run(args: argparse.Namespace, open_backend: OpenBackend, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    mode = Mode(args.mode)
    pins = PinTable(args.table, args.pk_column, args.account_column, args.pin_column, args.version_column,
                    Encoding(args.encoding))
    if not 1 <= args.workers <= 64:
        raise InvalidInput("workers", "1 to 64")
    with ExitStack() as stack:
        audit: Callable[[AuditEvent], None] | None = None
        if args.server:
            crypto = _remote(args, mode)
            mover, close = crypto.open_mover()
            stack.callback(close)
        else:
            if not args.store:
                raise InvalidInput("store", "the key store URL (or --server to use a running hsmsvc)")
            backend = open_backend(args)
            stack.callback(backend.close)
            store = KeyStore(args.store, backend)
            stack.callback(store.close)
            crypto, mover = _local(args, mode, open_backend, backend, store)
            audit = store.audit
        engine = connect(args.db)
        stack.callback(engine.dispose)
        rc = _execute(args, out=out, mode=mode, pins=pins, engine=engine, crypto=crypto, mover=mover, audit=audit)
    return rc


def _execute(args: argparse.Namespace, *, out: TextIO, mode: Mode, pins: PinTable, engine: Engine, crypto: _Crypto,
             mover: Mover, audit: Callable[[AuditEvent], None] | None) -> int:
    source, target = crypto.source, crypto.target
    spec = JobSpec(args.job or f"{pins.name}:{source}->{target}", mode, source, target, args.chunk)
    job = Job(engine, Tables(engine, pins), spec)
    print(f"job      {spec.name}\nmode     {mode.value}: rows under {source} -> {target}"
          f"{' (source under the old LMK)' if crypto.old_lmk else ''}"
          f"{f' (crypto at {args.server})' if args.server else ''}", file=out)
    if args.dry_run:
        d = job.dry_run(mover)
        rate = d.rows / d.crypto_seconds if d.crypto_seconds else 0.0
        print(f"dry run  {d.rows:,} rows under {source}: {d.would_move:,} would move, "
              f"{d.would_reject:,} would be refused; crypto {rate:,.0f} rows/s; nothing written", file=out)
        return 0 if d.would_reject == 0 else 1
    plan, created = job.plan()
    key_id, version = crypto.target_key
    if created and audit is not None:
        audit(AuditEvent(args.officer, "pins.reencrypt.start", key_id, version, _detail(spec, pins, plan.total_rows)))
    start_moved = job.progress().moved
    samples = -(-args.verify_sample // max(plan.chunks, 1)) if args.verify_sample else 0
    started = time.monotonic()
    with nullcontext() if args.no_progress else _ProgressLine(job, plan.total_rows, sys.stderr):
        if args.workers == 1:
            job.work(mover, f"{socket.gethostname()}:{os.getpid()}", samples, args.max_chunks)
        else:
            _fan_out(args, crypto, spec, pins, samples)
    elapsed = time.monotonic() - started
    p = job.progress()
    this_run = p.moved - start_moved
    print(f"rows     {plan.total_rows:,} planned; {p.moved:,} moved; {p.rejected:,} refused"
          + (f" (table {job.rejects_table}: {', '.join(map(str, job.rejects(5)))}{', …' if p.rejected > 5 else ''})"
             if p.rejected else ""),
          file=out)
    print(f"this run {this_run:,} rows in {elapsed:.1f} s: {this_run / elapsed if elapsed else 0:,.0f} rows/s end "
          f"to end; crypto {p.crypto_seconds:.2f} s in all "
          f"({p.moved / p.crypto_seconds if p.crypto_seconds else 0:,.0f} rows/s)", file=out)
    if p.chunks_done < p.chunks:
        print(f"left     {p.chunks - p.chunks_done} of {p.chunks} chunks; run the same command again to resume",
              file=out)
        return 3
    bad = 0
    if args.verify_sample:
        checked, bad = job.verify_sample(mover, args.verify_sample)
        print(f"verify   {checked} sampled rows re-deciphered and compared: {bad} mismatched", file=out)
    if job.finish() and audit is not None:
        audit(AuditEvent(args.officer, "pins.reencrypt.finish", key_id, version,
                         (*_detail(spec, pins, plan.total_rows), ("moved", str(p.moved)),
                          ("refused", str(p.rejected)))))
    left = job.remaining()
    print(f"left     {left:,} rows still under {source}", file=out)
    return 0 if p.rejected == 0 and bad == 0 else 1


def _detail(spec: JobSpec, pins: PinTable, rows: int) -> tuple[tuple[str, str], ...]:
    return (("job", spec.name), ("mode", spec.mode.value), ("table", pins.name), ("from", spec.source),
            ("to", spec.target), ("rows", str(rows)))


def _fan_out(args: argparse.Namespace, crypto: _Crypto, spec: JobSpec, pins: PinTable, samples: int) -> None:
    # fork: the children inherit the parsed arguments and open their own backend (or channel) and connections.
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(args, crypto, spec, pins, samples)) for _ in range(args.workers)]
    for proc in procs:
        proc.start()
    failed = 0
    for proc in procs:
        proc.join()
        failed += proc.exitcode != 0
    if failed:
        raise InvalidInput("workers", f"{failed} worker(s) failed; run again to resume")
