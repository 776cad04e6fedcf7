"""The schema under the DBA's control: ``hsmsvc db upgrade [--sql]``, ``db current``, and a server whose
database role has no DDL rights (``auto_migrate = false``, the default outside development)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from hsmsvc.cli import main
from hsmsvc.errors import InvalidInput
from hsmsvc.keys.store import revisions
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests import pg
from tests.api.conftest import PASSPHRASE, POLICY, seal_lmk, stop, template
from tests.ops.serving import hsmsvc, start_server
from tools.bench.pki import ThrowawayCA as TestCA

ROOT = Path(__file__).resolve().parents[2]


def test_sql_is_printed_without_a_database_and_applies(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 on loopback: nothing listens, so a connection attempt would fail the command.
    assert main(["db", "upgrade", "--sql", "--store", "postgresql+psycopg://nobody@127.0.0.1:1/none"]) == 0
    sql = capsys.readouterr().out
    for table in ("keys", "audit", "store_meta", "alembic_version"):
        assert f"CREATE TABLE {table} (" in sql
    assert f"UPDATE alembic_version SET version_num='{revisions.head()}'" in sql
    # From a given revision: only what follows it (0007 creates no table).
    nowhere = "postgresql+psycopg://nobody@127.0.0.1:1/n"
    assert main(["db", "upgrade", "--sql", "--from", "0006", "--store", nowhere]) == 0
    since = capsys.readouterr().out
    assert "CREATE TABLE keys" not in since and "CREATE TABLE alembic_version" not in since
    assert "version_num='0007' WHERE alembic_version.version_num = '0006'" in since
    import psycopg

    with pg.throwaway_db() as url:
        # The DBA's review copy is what runs: applied by hand, the store is at head.
        with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(False)) as c:
            c.execute(sql.encode())
        assert main(["db", "current", "--store", url]) == 0
        assert capsys.readouterr().out == f"store: at {revisions.head()}, this version's is {revisions.head()}: " \
                                          "up to date\n"


def test_serving_role_needs_no_ddl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    role = f"hsmsvc_rt_{secrets.token_hex(4)}"
    with pg.throwaway_db() as url:
        admin = make_url(url)
        dsn = admin.set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(dsn, autocommit=True) as c:
            # What a DBA grants the serving role: DML on the tables the owner creates, no DDL.
            c.execute(f"CREATE ROLE {role} LOGIN")
            c.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            c.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
            c.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                      f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}")
            c.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO {role}")
        try:
            served = admin.set(username=role).render_as_string(False)
            ca = TestCA(tmp_path)
            srv = ca.issue("hsmsvc-server", server=True)
            sealed = seal_lmk(tmp_path)
            (tmp_path / "policy.toml").write_text(POLICY)
            config = tmp_path / "hsmsvc.toml"
            config.write_text(f"""listen = "127.0.0.1:0"
metrics_listen = ""
store = "{served}"
policy = "policy.toml"
[tls]
cert = "{srv.cert}"
key = "{srv.key}"
client_ca = "{ca.ca_file}"
[backend]
sealed_lmk = "{sealed}"
passphrase_env = "HSMSVC_TEST_LMK_PASSPHRASE"
""")
            env = {**os.environ, "HSMSVC_TEST_LMK_PASSPHRASE": PASSPHRASE}
            r = hsmsvc("serve", "--config", str(config), env=env)
            assert r.returncode == 2 and r.stderr.strip().splitlines() == [
                f"hsmsvc: store: schema at none (empty database), expected {revisions.head()}: run hsmsvc db upgrade"
            ], r.stderr
            assert main(["db", "upgrade", "--store", url]) == 0  # as the owner
            assert capsys.readouterr().out == f"store: upgraded from empty to {revisions.head()}\n"
            proc, info, log = start_server(config, env=env)
            try:
                ident = ca.issue("key-manager")
                with Client(f"127.0.0.1:{info['port']}",
                            ClientTls(ca.ca_file, ident.cert, ident.key, "localhost")) as mgr:
                    got = mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
                        "no-ddl-dek", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_DATA,
                        pb.MODE_OF_USE_ENCRYPT_DECRYPT)))
                    assert got.key.key_id == "no-ddl-dek"
            finally:
                stop(proc, log)
            # The role really has no DDL: it cannot create a table.
            with psycopg.connect(make_url(served).set(drivername="postgresql").render_as_string(False)) as c:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute("CREATE TABLE t (x int)")
            # Alembic's own command line reads the same revision (its KeyError: 'connection' is gone).
            r = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ROOT / "hsmsvc/keys/migrations/alembic.ini"),
                                "current"], capture_output=True, text=True, env={**os.environ, "HSMSVC_STORE": url},
                               timeout=60)
            assert r.returncode == 0 and r.stdout.strip() == f"{revisions.head()} (head)", r.stderr
        finally:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(f"DROP OWNED BY {role}")
            with psycopg.connect(pg.PG_ADMIN, autocommit=True) as c:
                c.execute(f"DROP ROLE IF EXISTS {role}")


def test_a_later_versions_schema_is_run_on_and_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rolling upgrade: the DBA upgraded for the next version first; this one neither refuses nor touches it."""
    from sqlalchemy import text

    from hsmsvc.keys.store.database import Database

    url = f"sqlite:///{tmp_path / 'keys.db'}"
    assert main(["db", "upgrade", "--store", url]) == 0
    db = Database(url)
    try:
        with db.connect() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_later'"))
            conn.commit()
        assert db.check_schema() is False
        db.migrate()  # auto_migrate on a later schema: nothing done, nothing raised
        assert db.revision() == "9999_later"
        assert main(["db", "upgrade", "--store", url]) == 0
        assert "a later version's schema" in capsys.readouterr().out
        with db.connect() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('0001')"))
            conn.commit()
        with pytest.raises(InvalidInput, match=f"schema at 0001, expected {revisions.head()}: run hsmsvc db upgrade"):
            db.check_schema()
    finally:
        db.close()
    capsys.readouterr()
    assert main(["db", "current", "--store", url]) == 0
    assert capsys.readouterr().out == (f"store: at 0001, this version's is {revisions.head()}: "
                                       "behind: run hsmsvc db upgrade\n")
