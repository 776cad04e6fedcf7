"""Issue 29: the rules a ceremony applies are applied when they can still be met.

A custodian's name is checked at the prompt by the rule the mailer's file names need, and
asked again; the passphrase minimum is checked when it is typed, before any component; the
journal, which names custodians and KCVs, is created 0600.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hsmsvc.ceremony import entry, lmk
from hsmsvc.ceremony.record import Record
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm
from tests.ceremony import scripted


def test_a_name_the_mailer_would_refuse_is_asked_again_at_the_prompt() -> None:
    part = "00" * 32
    console = scripted(["ann:1", "ann", part, "bob", part.replace("00", "11")])
    parts, custodians = entry.collect(console, 2, Algorithm.AES_256, may_generate=False, need_kcv=False)
    assert [c.name for c in custodians] == ["ann", "bob"]
    assert "again" in console.out.getvalue()  # type: ignore[attr-defined]


def test_three_refused_names_stop_the_ceremony_before_any_component() -> None:
    console = scripted(["a:b", "a b", "a/b"])
    with pytest.raises(InvalidInput, match="custodian"):
        entry.collect(console, 2, Algorithm.AES_256, may_generate=False, need_kcv=False)


def test_a_short_passphrase_is_refused_when_typed(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="at least 12 bytes"):
        lmk.SealedTarget(tmp_path / "lmk.sealed", b"too short")
    assert not (tmp_path / "lmk.sealed").exists()


def test_the_journal_is_created_0600(tmp_path: Path) -> None:
    journal = tmp_path / "ceremonies" / "journal.jsonl"
    Record("olga", journal).line("lmk-create-x", "lmk.create", custodians="ann,bob")
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert json.loads(journal.read_text())["action"] == "lmk.create"
