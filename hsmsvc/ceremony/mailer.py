"""Component mailers: one sealed sheet per custodian, as text and as PDF.

The mailer is the one place a clear component is written down (ISO 11568-2
clause 5: components in separate tamper-evident envelopes, one per custodian).
Each names its ceremony, officer, custodian and envelope, and has lines for the
custodian's and the officer's signatures, which the ceremony log records with
the envelope serial. Files are staged with the ceremony's other outputs
(:mod:`hsmsvc.ceremony.staging`), mode 0600, never overwritten; their names
carry the ceremony id, so two ceremonies' mailers never collide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fpdf import FPDF

from hsmsvc.ceremony.console import group
from hsmsvc.ceremony.staging import Staging
from hsmsvc.errors import InvalidInput

__all__ = ["CUSTODIAN_NAME", "GROUPS_PER_LINE", "Mailer", "component_lines", "stage"]

CUSTODIAN_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""A custodian's (and a label's) name: it names the mailer's files, so the prompt takes the same rule."""
_INSTRUCTIONS = (
    "Keep this mailer sealed, in your own safe, apart from every other custodian's.",
    "Enter the component yourself, unobserved, only when a key ceremony asks for it;",
    "check the component KCV the ceremony shows against the one printed here.",
    "Never copy, photograph, type into any other system, or send this component.",
    "When the key is retired, destroy this mailer under dual control and record it.",
)


@dataclass(frozen=True)
class Mailer:
    """What one custodian's mailer says. ``component`` is the clear value; ``ceremony`` its id."""

    custodian: str
    position: int
    count: int
    label: str
    key_type: str
    algorithm: str
    component: bytes | bytearray
    component_kcv: bytes
    key_kcv: bytes
    ceremony: str
    issued_at: datetime
    officer: str

    @property
    def envelope(self) -> str:
        """The serial written on this mailer's envelope and in the ceremony log."""
        return f"{self.ceremony}/{self.position}"

    @property
    def stem(self) -> str:
        return f"{self.ceremony}-{self.position}-{self.custodian}"

    def lines(self) -> list[str]:
        return [
            "HSMSVC KEY COMPONENT - CONFIDENTIAL",
            f"To be opened only by: {self.custodian}",
            "",
            f"Ceremony:       {self.ceremony}",
            f"Key officer:    {self.officer}",
            f"Envelope:       {self.envelope}",
            f"Issued (UTC):   {self.issued_at.strftime('%Y-%m-%d %H:%M:%S')}",
            f"Key:            {self.label} ({self.key_type}, {self.algorithm})",
            f"Component:      {self.position} of {self.count}",
            "",
            *(f"  {line}" for line in component_lines(self.component)),
            "",
            f"Component KCV:  {self.component_kcv.hex().upper()}",
            f"Key KCV:        {self.key_kcv.hex().upper()}  (all {self.count} components combined)",
            "",
            *_INSTRUCTIONS,
            "",
            f"Received and sealed in envelope {self.envelope}:",
            "",
            "Custodian signature:    ________________________  Date: ____________",
            "",
            "Key officer signature:  ________________________  Date: ____________",
        ]


GROUPS_PER_LINE = 8
"""Groups of four hex digits on one printed line: 39 characters, which fit an A4 page in
14 pt Courier (8.4 pt a character) with its margins; an AES-256 component takes two lines."""


def component_lines(component: bytes | bytearray) -> list[str]:
    """The component in groups of four hex digits, at most :data:`GROUPS_PER_LINE` to a line."""
    groups = group(component).split(" ")
    return [" ".join(groups[i : i + GROUPS_PER_LINE]) for i in range(0, len(groups), GROUPS_PER_LINE)]


def _pdf(m: Mailer) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(f"Key component {m.position} of {m.count}")
    pdf.set_creator("hsmsvc")
    pdf.add_page()
    pdf.set_font("Courier", size=11)
    for i, line in enumerate(m.lines()):
        if i == 0 or line.startswith("  "):
            pdf.set_font("Courier", style="B", size=13 if i == 0 else 14)
        pdf.cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Courier", size=11)
    return bytes(pdf.output())


def stage(staging: Staging, directory: Path, m: Mailer) -> tuple[Path, Path]:
    """``<ceremony>-<position>-<custodian>.txt`` and ``.pdf`` in ``directory``, staged with the
    ceremony's other outputs; nothing is visible until the ceremony publishes them all."""
    for name in (m.custodian, m.label, m.officer):
        if not CUSTODIAN_NAME.fullmatch(name):
            raise InvalidInput("name", "1-64 of A-Z a-z 0-9 . _ - (it names the mailer's files)")
    stem = directory / m.stem
    txt = staging.add(stem.with_suffix(".txt"), ("\n".join(m.lines()) + "\n").encode())
    pdf = staging.add(stem.with_suffix(".pdf"), _pdf(m))
    return txt, pdf
