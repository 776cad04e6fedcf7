"""Re-anchoring the audit chain at the console (``hsmsvc audit reanchor``): the chain as it
stands is shown, and each of two key officers confirms in person before
:func:`hsmsvc.keys.reanchor.reanchor` accepts it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hsmsvc.ceremony.console import Console
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.backend import Backend
from hsmsvc.keys import reanchor as keys_reanchor
from hsmsvc.keys.store import KeyStore

__all__ = ["check_officers", "reanchor"]


def check_officers(officers: Sequence[str]) -> tuple[str, str]:
    """Two distinct officers, refused before anything is opened."""
    if len(officers) != 2 or officers[0] == officers[1]:
        raise InvalidInput("officer", "two distinct officers (dual control)")
    return officers[0], officers[1]


def reanchor(console: Console, *, store: KeyStore, backend: Backend, officers: tuple[str, str], reason: str,
             checkpoints: Path | None) -> keys_reanchor.Reanchored:
    report = store.verify_audit(checkpoints)
    console.say(f"store {store.store_id}: {report.rows} audit rows")
    for p in report.problems:
        console.say(f"  {p}")
    console.say("Re-anchoring accepts this chain as the store's whole history from now on.")
    # Each officer answers in person: a name typed at the console, not taken from the command line.
    for officer in officers:
        if console.ask(f"{officer}: type your name to confirm: ") != officer:
            raise InvalidInput("officer", f"{officer} did not confirm; nothing re-anchored")
    done = keys_reanchor.reanchor(store, backend, first_officer=officers[0], second_officer=officers[1],
                                  reason=reason, checkpoints=checkpoints)
    console.say(f"re-anchored: store {done.old_store} -> {done.new_store}; {done.restored_rows} rows kept, "
                f"anchor seq {done.anchored_seq} given up")
    return done
