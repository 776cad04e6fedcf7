"""Issue 29 item 1: every PDF mailer prints its whole component, for every algorithm.

An AES-256 component on one 14 pt line ran off the A4 page (``pdftotext`` ended at
``…5F02 100F 2``). Each mailer is read back here with a real PDF text extractor
(poppler's ``pdftotext``, installed by ``.ci/run``) and must hold the component whole.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hsmsvc.ceremony.mailer import Mailer, stage
from hsmsvc.ceremony.staging import Staging
from hsmsvc.types import Algorithm
from tests.ceremony import mailer_component

ALGORITHMS = [Algorithm.TDES_2KEY, Algorithm.TDES_3KEY, Algorithm.AES_128, Algorithm.AES_256, Algorithm.SM4]


def _pdftotext() -> str:
    tool = shutil.which("pdftotext")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("pdftotext is missing: apt-get install poppler-utils (.ci/run does this)")
        pytest.skip("pdftotext not available: apt-get install poppler-utils")
    return tool


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.value)
def test_the_pdf_and_text_mailers_hold_the_whole_component(tmp_path: Path, algorithm: Algorithm) -> None:
    tool = _pdftotext()
    component = secrets.token_bytes(algorithm.key_length)
    m = Mailer(custodian="ann", position=1, count=3, label="lmk", key_type="LMK", algorithm=algorithm.value,
               component=component, component_kcv=bytes(3), key_kcv=bytes(3),
               ceremony="lmk-create-20261207T000000Z-0a1b", issued_at=datetime(2026, 12, 7, tzinfo=timezone.utc),
               officer="olga")
    staging = Staging(m.ceremony)
    txt, pdf = stage(staging, tmp_path, m)
    staging.publish()
    assert mailer_component(txt) == component
    text = subprocess.run([tool, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    printed = "".join(text.split())
    assert component.hex().upper() in printed, text
    # What the envelope and the ceremony log need, on the page as well as in the text.
    for field in ("lmk-create-20261207T000000Z-0a1b/1", "Key officer:", "olga", "Component: 1 of 3",
                  "Custodian signature:", "Key officer signature:"):
        assert "".join(field.split()) in printed, (field, text)
    assert txt.name == "lmk-create-20261207T000000Z-0a1b-1-ann.txt"
