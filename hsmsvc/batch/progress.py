"""A running job's progress on stderr, read from the checkpoint table: it counts every worker on every machine.

On a terminal it is one line that redraws itself (tqdm, which pads each redraw over
the last, so no stale characters are left). Off a terminal (a pipe, a file, the
journal under systemd, mail from cron) it is one plain line every ``every`` seconds,
and nothing at the end: the summary on stdout follows.
"""

from __future__ import annotations

import threading
import time
from typing import Final, Never, TextIO

from tqdm import tqdm

from hsmsvc.batch.reencrypt import Job

__all__ = ["ProgressLine"]

_REDRAW: Final = 0.5
"""Seconds between redraws on a terminal."""


class ProgressLine:
    """The progress display for the length of a ``with`` block; :meth:`note` prints a line beside it."""

    def __init__(self, job: Job, total: int, out: TextIO, *, every: float) -> None:
        self._job, self._total, self._out, self._every = job, total, out, every
        self._tty = out.isatty()
        self._stop = threading.Event()
        self._start = time.monotonic()
        first = job.progress()
        self._base = first.moved
        self._bar: tqdm[Never] | None = None
        if self._tty:
            self._bar = tqdm(total=total, initial=first.moved + first.rejected, file=out, unit=" rows",
                             unit_scale=True, dynamic_ncols=True, mininterval=0, smoothing=0.3, leave=True,
                             postfix=f"chunks {first.chunks_done}/{first.chunks}")
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def __enter__(self) -> ProgressLine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._bar is not None:
            self._redraw()
            self._bar.close()

    def note(self, text: str) -> None:
        """One line on the same stream, above a terminal's bar rather than through it."""
        if self._bar is not None:
            tqdm.write(text, file=self._out)
        else:
            print(text, file=self._out, flush=True)

    def _loop(self) -> None:
        while not self._stop.wait(_REDRAW if self._tty else self._every):
            try:
                self._redraw() if self._tty else self._plain()
            except Exception:  # the line is a nicety; the job reports its own errors
                pass

    def _redraw(self) -> None:
        assert self._bar is not None
        p = self._job.progress()
        self._bar.set_postfix_str(f"chunks {p.chunks_done}/{p.chunks}", refresh=False)
        self._bar.update(p.moved + p.rejected - self._bar.n)

    def _plain(self) -> None:
        p = self._job.progress()
        done = p.moved + p.rejected
        elapsed = time.monotonic() - self._start
        rate = (p.moved - self._base) / elapsed if elapsed > 0 else 0.0
        left = max(self._total - done, 0)
        eta = tqdm.format_interval(left / rate) if rate > 0 else "-"
        share = f" ({100 * done / self._total:.0f}%)" if self._total else ""
        self.note(f"progress {done:,}/{self._total:,} rows{share}; {rate:,.0f} rows/s; ETA {eta}; "
                  f"chunks {p.chunks_done}/{p.chunks}; {tqdm.format_interval(elapsed)} elapsed")
