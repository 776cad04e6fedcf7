"""``hsmsvc reencrypt``: the batch job of :mod:`hsmsvc.batch.command`, with the backend options."""

from __future__ import annotations

import argparse

from hsmsvc.cli import backend

LAZY = True  # its options import the batch job and SQLAlchemy: described only when chosen
HELP = "move a table's stored PINs to a new key: resumable, parallel (batch)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hsmsvc.batch import command

    backend.add_arguments(p)
    command.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    from hsmsvc.batch import command

    return command.run(args, backend.open_backend)
