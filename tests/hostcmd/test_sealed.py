"""The host-command door of a server started on a share-sealed LMK: status answers, every command
that needs the LMK gets 13, until two custodians' shares open it (over gRPC); then it serves."""

from __future__ import annotations

import secrets
import ssl
from pathlib import Path

from hsmsvc.hsm.soft import shares, sharesealed
from hsmsvc.types import Algorithm
from hsmsvc_client import Client, ClientTls
from hsmsvc_client.v1 import ceremony_service_pb2 as cer_pb
from tests.api.conftest import POLICY, launch, stop
from tests.hostcmd.client import HostClient
from tools.bench.pki import ThrowawayCA as TestCA


def test_a_sealed_server_answers_status_and_13_until_unsealed(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    ids = {n: ca.issue(n) for n in ("custodian-1", "custodian-2", "core-banking")}
    srv = ca.issue("hsmsvc-server", server=True)
    (tmp_path / "policy.toml").write_text(POLICY)
    sealed_file = tmp_path / "lmk.sealed"
    blob, _, made = sharesealed.seal(Algorithm.AES_256, secrets.token_bytes(32), threshold=2,
                                     holders=["alice", "bob", "carol"])
    sealed_file.write_bytes(blob)
    texts = [shares.text(seal=s.seal, index=s.index, value=s.value) for s in made]
    proc, info = launch(tmp_path, f"sqlite:///{tmp_path / 'keys.db'}", sealed_file, srv, ca,
                        backend=f'[backend]\nkind = "soft"\nsealed_lmk = "{sealed_file}"\n',
                        extra='[hostcommands]\nlisten = "127.0.0.1:0"\n')
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca.ca_file)
        ctx.load_cert_chain(ids["core-banking"].cert, ids["core-banking"].key)
        with HostClient(info["host_port"], tls=ctx) as c:
            assert c.call(b"NO00").error == b"00"
            assert c.call(b"NC").error == b"13"
            assert c.call(b"CA" + b"L05zpk-1" * 2 + b"12" + b"0" * 16 + b"0101" + b"0" * 12).error == b"13"
            for name, text in (("custodian-1", texts[0]), ("custodian-2", texts[1])):
                me = ids[name]
                with Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, me.cert, me.key, "localhost"),
                            retries=0) as g:
                    g.ceremony.SubmitUnsealShare(cer_pb.SubmitUnsealShareRequest(share=text.encode()))
            r = c.call(b"NC")
            assert (r.code, r.error) == (b"ND", b"00")
    finally:
        if proc.poll() is None:
            stop(proc, tmp_path / "server.log")
