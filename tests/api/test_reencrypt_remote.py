"""`hsmsvc reencrypt --server`: the batch job away from the HSM, its crypto through the real server over mTLS."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from hsmsvc import cli
from hsmsvc.batch.table import connect
from hsmsvc.hsm.model import KeySpec
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from tests.api.conftest import PASSPHRASE, Env, code_of
from tools.batch import gen_pin_table as gen


def test_job_runs_through_the_servers_batch_rpcs(server: Env, tmp_path: Path) -> None:
    backend = SoftBackend.from_sealed(server.log.parent / "lmk.sealed", PASSPHRASE.encode())
    store = KeyStore(server.store_url, backend)
    db = f"sqlite:///{tmp_path / 'bank.db'}"
    try:
        gen.generate(db, store, backend, 3000, seed=11, psk_id="psk-remote-gen")
        KeyManager(store, backend, "test").generate(KeySpec(
            "psk-remote-new", 1, KeyType.PSK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION, ModeOfUse.ENCRYPT_DECRYPT))
    finally:
        store.close()
        backend.close()
    ident = server.ids["pin-reencryptor"]  # the job's principal: the reencryptor role, not an operator
    remote = ["--server", f"127.0.0.1:{server.port}", "--ca", server.ca.ca_file, "--cert", ident.cert,
              "--key", ident.key, "--server-name", "localhost"]
    args = ["reencrypt", *remote, "--db", db, "--table", "customers", "--mode", "psk", "--from", "psk-remote-gen:1",
            "--to", "psk-remote-new:1", "--chunk", "1000", "--no-progress"]
    unversioned = [a if a != "psk-remote-gen:1" else "psk-remote-gen" for a in args]
    assert cli.main(unversioned) == 2  # the rows' labels need versions
    assert cli.main([*args, "--max-chunks", "1"]) == 3
    assert cli.main([*args, "--verify-sample", "60"]) == 0
    engine = connect(db)
    with engine.connect() as conn:
        rows = list(conn.execute(text("SELECT account, pin, pin_key FROM customers ORDER BY id")))
    engine.dispose()
    assert {r[2] for r in rows} == {"psk-remote-new:1"} and {len(r[1]) for r in rows} == {32}  # format 4, AES
    # Every row holds its customer's PIN: the server compares each new value with the one the generator made.
    people = list(gen.customers(11, 3000))
    old = gen.stored_values(people, Algorithm.TDES_2KEY, gen.psk_clear(11, Algorithm.TDES_2KEY))
    client = server.client("pin-reencryptor")
    same: list[bool] = []
    for i in range(0, 3000, 1000):
        r = client.pins.CompareStoredPins(pin_pb.CompareStoredPinsRequest(
            old_psk=pb.KeyRef(key_id="psk-remote-gen", version=1),
            new_psk=pb.KeyRef(key_id="psk-remote-new", version=1),
            accounts=[r[0] for r in rows[i : i + 1000]], old_stored_pins=b"".join(old[i : i + 1000]),
            new_stored_pins=b"".join(bytes.fromhex(r[1]) for r in rows[i : i + 1000])))
        same.extend(r.same)
    assert same == [True] * 3000
    # Neither an auditor nor an operator may run the sample check (issue 27).
    for who in ("auditor", "core-banking"):
        code, _ = code_of(server.client(who).pins.CompareStoredPins, pin_pb.CompareStoredPinsRequest(
            old_psk=pb.KeyRef(key_id="psk-remote-gen", version=1),
            new_psk=pb.KeyRef(key_id="psk-remote-new", version=1),
            accounts=[rows[0][0]], old_stored_pins=old[0], new_stored_pins=bytes.fromhex(rows[0][1])))
        assert code is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("mode", ["lmk", "legacy"])
def test_modes_that_need_the_backend_refuse_server(server: Env, tmp_path: Path, mode: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reencrypt", "--server", f"127.0.0.1:{server.port}", "--insecure-server",
                     "--db", f"sqlite:///{tmp_path / 'x.db'}", "--table", "customers", "--mode", mode,
                     "--from", "a:1", "--to", "b:1"]) == 2
    assert "runs beside the backend" in capsys.readouterr().err
