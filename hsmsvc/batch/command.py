"""``hsmsvc reencrypt``: the batch job that moves a table's stored PINs to a new key."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from hsmsvc.batch import keyset, preflight
from hsmsvc.batch.keyset import Crypto
from hsmsvc.batch.model import JobSpec, Mode, Mover, Plan, Progress
from hsmsvc.batch.progress import ProgressLine
from hsmsvc.batch.reencrypt import Job
from hsmsvc.batch.stop import Interrupted, Stopper
from hsmsvc.batch.table import Encoding, PinTable, Tables
from hsmsvc.batch.workers import Outcome, Workers
from hsmsvc.errors import InvalidInput
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.store import KeyStore

__all__ = ["add_arguments", "run"]

Audit = Callable[[AuditEvent], None]
GRACE = 30.0
"""Seconds the chunks in flight have to finish after a stop signal, by default."""
PROGRESS_EVERY = 10.0
"""Seconds between progress lines off a terminal, by default."""


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
    r.add_argument("--dry-run", action="store_true",
                   help="do the crypto and count, writing nothing anywhere (not the table, the key store, the audit)")
    r.add_argument("--verify-sample", type=int, default=0, metavar="K",
                   help="after the run, re-decipher K random moved rows and compare with their old values")
    r.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    r.add_argument("--progress-every", type=float, default=PROGRESS_EVERY, metavar="SECONDS",
                   help=f"off a terminal, a progress line every SECONDS (default {PROGRESS_EVERY:g})")
    r.add_argument("--grace", type=float, default=GRACE, metavar="SECONDS",
                   help=f"after SIGTERM or SIGINT, how long the chunks in flight have to finish before they are "
                        f"abandoned and roll back (default {GRACE:g})")
    r.add_argument("--officer", default=os.environ.get("USER") or "batch", help="who runs the job (audit)")


def run(args: argparse.Namespace, open_backend: keyset.OpenBackend, out: TextIO | None = None) -> int:
    """The job, start to summary; the exit code (128 + the signal's number when a signal stopped it)."""
    out = out or sys.stdout
    mode = Mode(args.mode)
    pins = PinTable(args.table, args.pk_column, args.account_column, args.pin_column, args.version_column,
                    Encoding(args.encoding))
    if not 1 <= args.workers <= 64:
        raise InvalidInput("--workers", "1 to 64")
    if not 0 <= args.grace <= 3600:
        raise InvalidInput("--grace", "0 to 3600 seconds")
    if not 0 < args.progress_every <= 86400:
        raise InvalidInput("--progress-every", "more than 0 seconds, at most a day")
    with Stopper(args.grace, _note) as stopper:
        try:
            return _open(args, open_backend, out=out, mode=mode, pins=pins, stopper=stopper)
        except Interrupted as e:
            print(f"hsmsvc: stopped by {e.signal.name} before this run took a chunk; nothing was left half-done",
                  file=sys.stderr)
            return 128 + e.signal
        except SQLAlchemyError as e:  # the customer database: the store answers its own faults
            raise preflight.database_error(e) from None


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _open(args: argparse.Namespace, open_backend: keyset.OpenBackend, *, out: TextIO, mode: Mode, pins: PinTable,
          stopper: Stopper) -> int:
    """Check the databases, then open the backend and the keys; nothing is created before all are there."""
    if not args.server and not args.store:
        raise InvalidInput("--store", "the key store URL (or --server to use a running hsmsvc)")
    remote = keyset.remote(args, mode) if args.server else None  # its options checked before any connection
    engine = preflight.open_table_db(args.db)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        tables = Tables(engine, pins)
        audit: Audit | None = None
        mover: Mover | None
        if remote is not None:
            crypto = remote
            assert crypto.open_mover is not None
            mover, close = crypto.open_mover()
            stack.callback(close)
        else:
            preflight.check_store(args.store)
            if mode is Mode.LMK and args.from_store:
                preflight.check_store(args.from_store, "--from-store")
            backend = open_backend(args)
            stack.callback(backend.close)
            store = KeyStore(args.store, backend)
            stack.callback(store.close)
            crypto, mover = keyset.local(args, mode, open_backend, backend, store)
            audit = store.audit
        spec = JobSpec(args.job or f"{pins.name}:{crypto.source}->{crypto.target}", mode, crypto.source,
                       crypto.target, args.chunk)
        job = Job(engine, tables, spec)
        print(f"job      {spec.name}\nmode     {mode.value}: rows under {crypto.source} -> {crypto.target}"
              f"{' (source under the old LMK)' if crypto.old_lmk else ''}"
              f"{f' (crypto at {args.server})' if args.server else ''}", file=out)
        if args.dry_run:
            return _dry_run(job, crypto, mover, out=out, audited=audit is not None)
        assert mover is not None
        return _execute(args, job, crypto, mover, out=out, engine=engine, audit=audit, stopper=stopper)


def _dry_run(job: Job, crypto: Crypto, mover: Mover | None, *, out: TextIO, audited: bool) -> int:
    """What the job would do, said line by line; nothing is written anywhere."""
    spec, rc = job.spec, 0
    for would in crypto.would:
        print(f"dry run  {would}", file=out)
    if mover is None:
        rows = job.remaining()
        print(f"dry run  {rows:,} rows under {spec.source} would move to {spec.target} (not deciphered: "
              f"a key it needs is not in the store yet, so no crypto was tried)", file=out)
    else:
        d = job.dry_run(mover)
        rows = d.rows
        rate = d.rows / d.crypto_seconds if d.crypto_seconds else 0.0
        print(f"dry run  {d.rows:,} rows under {spec.source}: {d.would_move:,} would move to {spec.target}, "
              f"{d.would_reject:,} would be refused; crypto {rate:,.0f} rows/s", file=out)
        rc = 0 if d.would_reject == 0 else 1
    plan = job.planned()
    if plan is None:
        chunks = max(-(-rows // spec.chunk_rows), 1)
        print(f"dry run  would plan job {spec.name}: {chunks:,} chunk{'s' if chunks > 1 else ''} of up to "
              f"{spec.chunk_rows:,} rows in the checkpoint tables beside {job.table_name}"
              f"{', audited as pins.reencrypt.start' if audited else ''}", file=out)
    else:
        p = job.progress()
        print(f"dry run  would resume job {spec.name}: {p.chunks - p.chunks_done:,} of {p.chunks:,} chunks left",
              file=out)
    print("dry run  nothing written: not the table, not the checkpoint tables, not the key store or its audit",
          file=out)
    return rc


def _execute(args: argparse.Namespace, job: Job, crypto: Crypto, mover: Mover, *, out: TextIO, engine: Engine,
             audit: Audit | None, stopper: Stopper) -> int:
    spec = job.spec
    plan, created = job.plan()
    key_id, version = crypto.target_key
    if created and audit is not None:
        audit(AuditEvent(args.officer, "pins.reencrypt.start", key_id, version, _detail(job, plan.total_rows)))
    start_moved = job.progress().moved
    samples = -(-args.verify_sample // max(plan.chunks, 1)) if args.verify_sample else 0
    started = time.monotonic()
    workers = Workers(args, crypto, spec, job.pins, samples) if args.workers > 1 else None
    outcome = Outcome(0, 0)
    try:
        # The work phase from before the fork: a signal from here on stops the workers, never orphans them.
        with stopper.work(in_process=workers is None):
            if workers is not None:
                workers.start()  # before the progress thread: a fork copies no thread
            line = None if args.no_progress else ProgressLine(job, plan.total_rows, sys.stderr,
                                                              every=args.progress_every)
            with line or nullcontext():
                stopper.note = line.note if line is not None else _note
                try:
                    if workers is None:
                        job.work(mover, f"{socket.gethostname()}:{os.getpid()}", samples, args.max_chunks,
                                 stop=lambda: stopper.asked)
                    else:
                        outcome = workers.wait(stopper)
                finally:
                    stopper.note = _note
    except Interrupted:
        engine.dispose()  # the chunk it interrupted rolled back; the report reads on new connections
    except BaseException:
        if workers is not None:
            workers.terminate(args.grace)  # the parent failed: its workers do not go on alone
        raise
    elapsed = time.monotonic() - started
    p = job.progress()
    _summary(job, p, start_moved=start_moved, elapsed=elapsed, total=plan.total_rows, out=out)
    if stopper.signal is not None and p.chunks_done < p.chunks:
        return _stopped(args, job, p, plan, outcome, out=out, audit=audit, stopper=stopper, target=crypto.target_key)
    if outcome.failed:
        raise InvalidInput("--workers", f"{outcome.failed} worker(s) failed; run again to resume")
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
                         (*_detail(job, plan.total_rows), ("outcome", "completed"), ("moved", str(p.moved)),
                          ("refused", str(p.rejected)))))
    print(f"left     {job.remaining():,} rows still under {spec.source}", file=out)
    return 0 if p.rejected == 0 and bad == 0 else 1


def _summary(job: Job, p: Progress, *, start_moved: int, elapsed: float, total: int, out: TextIO) -> None:
    this_run = p.moved - start_moved
    print(f"rows     {total:,} planned; {p.moved:,} moved; {p.rejected:,} refused"
          + (f" (table {job.rejects_table}: {', '.join(map(str, job.rejects(5)))}{', …' if p.rejected > 5 else ''})"
             if p.rejected else ""),
          file=out)
    print(f"this run {this_run:,} rows in {elapsed:.1f} s: {this_run / elapsed if elapsed else 0:,.0f} rows/s end "
          f"to end; crypto {p.crypto_seconds:.2f} s in all "
          f"({p.moved / p.crypto_seconds if p.crypto_seconds else 0:,.0f} rows/s)", file=out)


def _stopped(args: argparse.Namespace, job: Job, p: Progress, plan: Plan, outcome: Outcome, *, out: TextIO,
             audit: Audit | None, stopper: Stopper, target: tuple[str, int]) -> int:
    """A run a signal stopped: said on stdout and stderr, and audited as the run's end."""
    sig = stopper.signal
    assert sig is not None
    if not stopper.hurried:
        how = "the chunks in flight finished" if args.workers > 1 else "the chunk in flight finished"
    elif outcome.killed:
        how = f"{outcome.killed} worker(s) killed, their chunks rolled back"
    else:
        how = "the chunk in flight was abandoned and rolled back"
    left = p.chunks - p.chunks_done
    print(f"stopped  by {sig.name}: {how}; {left} of {p.chunks} chunks ({job.remaining():,} rows) left; "
          f"run the same command again to resume", file=out)
    if outcome.failed:
        print(f"workers  {outcome.failed} failed (see stderr)", file=out)
    if audit is not None:
        # The run's finish row, as every run that started ends with one; "outcome" tells a stopped
        # run (to be resumed) from the run that completed the job.
        audit(AuditEvent(args.officer, "pins.reencrypt.finish", *target,
                         (*_detail(job, plan.total_rows), ("outcome", "stopped"), ("signal", sig.name),
                          ("moved", str(p.moved)), ("refused", str(p.rejected)), ("chunks_left", str(left)))))
    print(f"hsmsvc: stopped by {sig.name}; {left} of {p.chunks} chunks left: run the same command again to resume",
          file=sys.stderr)
    return 128 + sig


def _detail(job: Job, rows: int) -> tuple[tuple[str, str], ...]:
    s = job.spec
    return (("job", s.name), ("mode", s.mode.value), ("table", job.table_name), ("from", s.source),
            ("to", s.target), ("rows", str(rows)))
