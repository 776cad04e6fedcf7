"""``--workers N``: forked worker processes, and the parent's wait for them under :class:`Stopper`."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from hsmsvc.batch import preflight
from hsmsvc.batch.keyset import Crypto
from hsmsvc.batch.model import JobSpec
from hsmsvc.batch.reencrypt import Job
from hsmsvc.batch.stop import STOP_SIGNALS, Stopper, WorkerStop
from hsmsvc.batch.table import PinTable, Tables, connect
from hsmsvc.errors import HsmsvcError

__all__ = ["Outcome", "Workers"]

_POLL: Final = 0.2
"""Seconds between the parent's looks at its stopper while it waits for the workers."""


@dataclass(frozen=True)
class Outcome:
    failed: int
    """Workers that exited with an error (each said why on stderr)."""
    killed: int
    """Workers killed when the run was hurried; their chunks rolled back."""


class Workers:
    """N forked workers of one job; each opens its own mover and connections (nothing is shared across fork)."""

    def __init__(self, args: argparse.Namespace, crypto: Crypto, spec: JobSpec, pins: PinTable,
                 samples: int) -> None:
        self._args, self._crypto, self._spec, self._pins, self._samples = args, crypto, spec, pins, samples
        self._procs: list[BaseProcess] = []

    def start(self) -> None:
        """Fork the workers. The stop signals are blocked across the fork, so a worker takes none
        before it has its own handlers (it unblocks them then, and a pending one arrives)."""
        ctx = multiprocessing.get_context("fork")
        parent = os.getpid()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            for _ in range(self._args.workers):
                proc = ctx.Process(target=self._run, args=(parent,), daemon=False)
                proc.start()
                self._procs.append(proc)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def wait(self, stopper: Stopper) -> Outcome:
        """Until every worker has exited: forward a stop to them, and kill them if the stop is hurried."""
        forwarded = killed = False
        while live := [p for p in self._procs if p.is_alive()]:
            if stopper.asked and not forwarded:
                forwarded = True
                self._signal(live, signal.SIGTERM)
            deadline = stopper.deadline
            if deadline is not None and time.monotonic() >= deadline and not stopper.hurried:
                stopper.hurry(f"the {stopper.grace:g} s grace period is over")
            if stopper.hurried and not killed:
                killed = True
                self._signal(live, signal.SIGKILL)
            wait([p.sentinel for p in live], timeout=_POLL)
        for proc in self._procs:
            proc.join()
        codes = [p.exitcode for p in self._procs]
        return Outcome(failed=sum(1 for c in codes if c not in (0, -signal.SIGKILL)),
                       killed=sum(1 for c in codes if c == -signal.SIGKILL))

    def terminate(self, grace: float) -> None:
        """Stop every worker after its chunk, killing those still at it after ``grace`` seconds."""
        live = [p for p in self._procs if p.is_alive()]
        self._signal(live, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in live:
            proc.join(max(deadline - time.monotonic(), 0))
        self._signal([p for p in live if p.is_alive()], signal.SIGKILL)
        for proc in live:
            proc.join()

    @staticmethod
    def _signal(procs: list[BaseProcess], sig: signal.Signals) -> None:
        for proc in procs:
            if proc.pid is not None:
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    pass  # it exited meanwhile

    def _run(self, parent: int) -> None:
        """One worker process's life: its stop, its own connections, one line on stderr if it fails."""
        stop = WorkerStop(parent)
        stop.install()
        if stop():
            return
        args = self._args
        try:
            assert self._crypto.open_mover is not None  # a dry run forks no workers
            mover, close = self._crypto.open_mover()
            engine = connect(args.db)
            try:
                job = Job(engine, Tables(engine, self._pins), self._spec)
                job.work(mover, f"{socket.gethostname()}:{os.getpid()}", self._samples, args.max_chunks, stop)
            finally:
                engine.dispose()
                close()
        except SQLAlchemyError as e:
            self._fail(preflight.database_error(e))
        except HsmsvcError as e:
            self._fail(e)
        except Exception as e:
            from hsmsvc_client import ClientError

            if not isinstance(e, ClientError):
                raise  # a bug: its traceback is the report
            print(f"hsmsvc: worker {os.getpid()}: the server refused: {e.code.name}: {e.details}", file=sys.stderr)
            sys.exit(2)

    @staticmethod
    def _fail(e: HsmsvcError) -> None:
        print(f"hsmsvc: worker {os.getpid()}: {e}", file=sys.stderr)
        sys.exit(2)
