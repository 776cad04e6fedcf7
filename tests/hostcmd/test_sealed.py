"""The host-command door of a server started on a share-sealed LMK: status answers, every command
that needs the LMK gets 13, until two custodians' shares open it (over gRPC); then it serves."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest

import tests.api.test_unseal as unseal
from tests.api.conftest import launch, stop
from tests.hostcmd.client import HostClient


def test_a_sealed_server_answers_status_and_13_until_unsealed(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def with_host(*a: Any, **kw: Any) -> Any:  # test_unseal's sealed server, with the host door on
        kw["extra"] = kw.get("extra", "") + '\n[hostcommands]\nlisten = "127.0.0.1:0"\n'
        return launch(*a, **kw)

    monkeypatch.setattr(unseal, "launch", with_host)
    s = unseal._start_sealed(tmp_path, 600)
    try:
        info = json.loads((tmp_path / "ready.json").read_text())
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.ca.ca_file)
        ctx.load_cert_chain(s.ids["core-banking"].cert, s.ids["core-banking"].key)
        with HostClient(info["host_port"], tls=ctx) as c:
            assert c.call(b"NO00").error == b"00"
            assert c.call(b"NC").error == b"13"
            assert c.call(b"CA" + b"L05zpk-1" * 2 + b"12" + b"0" * 16 + b"0101" + b"0" * 12).error == b"13"
            s.submit("custodian-1", s.shares[0])
            s.submit("custodian-2", s.shares[1])
            r = c.call(b"NC")
            assert (r.code, r.error) == (b"ND", b"00")
    finally:
        if s.proc.poll() is None:
            stop(s.proc, s.log)
