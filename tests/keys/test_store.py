"""Key store and hierarchy on SQLite and PostgreSQL: binding, state, audit chain."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from hsmsvc.errors import KeyNotFound, KeyStateError, KeyUsageViolation
from hsmsvc.hsm.backend import KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.hsm.backend import Backend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.schema import pin_attempts as attempts_t
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import Algorithm, KeyState, KeyType, KeyUsage, MacAlgorithm, Padding, PinBlockFormat


def zpk(key_id: str) -> KeySpec:
    return KeySpec(key_id, 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)


def test_round_trip_and_state_machine(store: KeyStore, backend: Backend) -> None:
    km = KeyManager(store, backend, "officer-a")
    made = km.generate(zpk("zpk-a"), alias="zone-1-zpk")
    got = store.get("zpk-a")
    assert got.cryptogram == made.cryptogram and got.state is KeyState.ACTIVE and got.alias == "zone-1-zpk"
    assert km.for_use("zpk-a", Operation.PIN_ENCRYPT).version == 1
    with pytest.raises(KeyUsageViolation):
        km.for_use("zpk-a", Operation.MAC_GENERATE)
    km.change_state("zpk-a", 1, KeyState.SUSPENDED)
    with pytest.raises(KeyStateError):
        km.for_use("zpk-a", Operation.PIN_ENCRYPT)
    km.change_state("zpk-a", 1, KeyState.ACTIVE)
    km.revoke("zpk-a", 1, "compromise drill")
    with pytest.raises(KeyStateError):
        km.change_state("zpk-a", 1, KeyState.ACTIVE)
    with pytest.raises(KeyNotFound):
        store.get("nope")
    assert store.verify_audit().ok


def _raw(url: str):  # type: ignore[no-untyped-def]
    return create_engine(url).begin()


def test_editing_a_stored_row_makes_the_key_unusable(store: KeyStore, backend: Backend, store_url: str) -> None:
    km = KeyManager(store, backend, "officer-a")
    a = km.generate(zpk("zpk-1"))
    b = km.generate(zpk("zpk-2"))
    km.generate(KeySpec("mak-1", 1, KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG1))
    with _raw(store_url) as c:  # the type column edited from ZPK to MAK
        c.execute(text("UPDATE keys SET key_type='MAK', usage='M1' WHERE key_id='zpk-1'"))
    edited = store.get("zpk-1")
    with pytest.raises(KeyUsageViolation):
        backend.generate_mac(edited.cryptogram, b"x", MacAlgorithm.ISO9797_ALG1, Padding.METHOD_1)
    with _raw(store_url) as c:  # swap the cryptograms (and KCVs) of two ZPK rows
        c.execute(text("UPDATE keys SET key_type='ZPK', usage='P0' WHERE key_id='zpk-1'"))
        c.execute(text("UPDATE keys SET cryptogram=:c, kcv=:k WHERE key_id='zpk-1'"),
                  {"c": b.cryptogram.blob, "k": b.cryptogram.kcv.hex().upper()})
    swapped = store.get("zpk-1")
    with pytest.raises(KeyUsageViolation):
        backend.kcv(swapped.cryptogram)
    blob = bytearray(a.cryptogram.blob)
    blob[5:7] = b"M1"  # the key block header's usage field
    with _raw(store_url) as c:
        c.execute(text("UPDATE keys SET cryptogram=:c, kcv=:k WHERE key_id='zpk-1'"),
                  {"c": bytes(blob), "k": a.cryptogram.kcv.hex().upper()})
    with pytest.raises(Exception) as e:
        backend.kcv(store.get("zpk-1").cryptogram)
    assert type(e.value).__name__ in ("InvalidKeyBlock", "KeyUsageViolation")


def _tamper(url: str, sql: str) -> None:
    with _raw(url) as c:
        for statement in sql.split(";"):
            c.execute(text(statement))


@pytest.mark.parametrize(
    "attack,sql,expect",
    [
        ("deleted", "DELETE FROM audit WHERE seq = 2", "missing"),
        ("edited", "UPDATE audit SET actor = 'mallory' WHERE seq = 3", "does not match its hash"),
        ("reordered", "UPDATE audit SET seq = 1000 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; "
         "UPDATE audit SET seq = 3 WHERE seq = 1000", "does not chain"),
        ("newest deleted", "DELETE FROM audit WHERE seq >= 4", "newest rows were deleted"),
    ],
)
def test_audit_verify_detects(store: KeyStore, backend: Backend, store_url: str,
                              attack: str, sql: str, expect: str) -> None:
    km = KeyManager(store, backend, "officer-a")
    for i in range(5):
        km.generate(zpk(f"z{i}"))
    assert store.verify_audit().ok and store.verify_audit().rows == 5
    _tamper(store_url, sql)
    report = store.verify_audit()
    assert not report.ok
    assert any(expect in p for p in report.problems), report.problems


def test_audit_rows_hold_no_secret(store: KeyStore, backend: Backend) -> None:
    km = KeyManager(store, backend, "officer-a")
    parts = [bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes.fromhex("1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A")]
    km.form(zpk("formed"), parts)
    dump = " ".join(str(r) for r in store.audit_rows()).upper()
    for p in parts:
        assert p.hex().upper() not in dump
    assert "1C3E587A94B6D0F2D5F791B35D7F193B" not in dump  # the combined key
    assert "COMPONENT_1_KCV" in dump


def test_a_key_in_use_is_refused_in_translation_after_revocation(store: KeyStore, backend: Backend) -> None:
    km = KeyManager(store, backend, "svc")
    tpk = km.generate(KeySpec("tpk", 1, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION))
    km.generate(zpk("zpk"))
    block = bytes(8)
    km.revoke("zpk", 1)
    with pytest.raises(KeyStateError):
        dst = km.for_use("zpk", Operation.PIN_ENCRYPT)
        backend.translate_pin(block, tpk.cryptogram, PinBlockFormat.ISO_0, dst.cryptogram, PinBlockFormat.ISO_0, "4012345678909")


def test_failures_are_counted_per_subject_and_age_out_with_the_window(store: KeyStore) -> None:
    from datetime import timedelta

    from hsmsvc.keys.model import AuditEvent

    day = timedelta(hours=24)
    assert store.failures([], day) == {} and store.failures(["pan:a"], day) == {}
    for _ in range(2):
        store.record_failure(["principal:p", "pan:a"], day, AuditEvent("p", "pin.verify.failed"))
    store.record_failure(["principal:p", "pan:b"], day, AuditEvent("p", "pin.verify.failed"))
    assert store.failures(["principal:p", "pan:a"], day) == {"principal:p": 3, "pan:a": 2}
    assert store.failures(["pan:b", "pan:c"], day) == {"pan:b": 1}
    assert store.failures(["principal:p"], timedelta(0)) == {}  # the window has passed
    assert store.failures(["principal:p", "pan:a", "pan:b"], day) == {"principal:p": 3, "pan:a": 2, "pan:b": 1}
    store.clear_failures("pan:a")
    assert store.failures(["principal:p", "pan:a"], day) == {"principal:p": 3}
    # A read's mark (no BEGIN on SQLite) and its autocommit (PostgreSQL) never stay with the
    # pooled connection for a writer: a write rolled back is gone.
    with store._engine.connect() as conn:
        assert "single_read" not in conn.info
        assert conn.get_isolation_level() != "AUTOCOMMIT"
    with pytest.raises(RuntimeError), store._writer() as conn, conn.begin():
        conn.execute(attempts_t.insert().values(subject="pan:z", failures=9, window_start=datetime.now(timezone.utc)))
        raise RuntimeError
    assert store.failures(["pan:z"], day) == {}


def test_connections_the_database_dropped_are_replaced(pg_url: str, tmp_path: Path) -> None:
    """No ping at each checkout (it doubled the attempt read): a connection idle a while is
    pinged, and a read or write on one dropped meanwhile goes again on a new one, unless the
    write had reached COMMIT, whose outcome is not known: that answers UNAVAILABLE."""
    import time
    from datetime import timedelta

    import psycopg

    from hsmsvc.errors import BackendUnavailable
    from hsmsvc.hsm.soft.backend import SoftBackend
    from hsmsvc.keys import store as store_module
    from hsmsvc.keys.model import AuditEvent
    from tests import pg
    from tests.hsm.components_env import LMK

    backend = SoftBackend(LMK, anchor_path=tmp_path / "lmk.anchor")
    store = KeyStore(pg_url, backend)
    store.migrate()
    day = timedelta(hours=24)
    name = pg_url.rsplit("/", 1)[1]

    def drop_connections() -> int:
        with psycopg.connect(pg.PG_ADMIN, autocommit=True) as c:
            return len(c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall())

    def backends() -> set[int]:
        with psycopg.connect(pg.PG_ADMIN, autocommit=True) as c:
            return {r[0] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))}

    try:
        store.record_failure(["principal:p", "pan:a"], day, AuditEvent("p", "pin.verify.failed"))
        assert store.failures(["principal:p", "pan:a"], day) == {"principal:p": 1, "pan:a": 1}
        # Busy: no ping. The read meets the dropped connection and goes again on a new one.
        before = backends()
        assert drop_connections() >= 1
        assert store.failures(["principal:p", "pan:a"], day) == {"principal:p": 1, "pan:a": 1}
        assert backends().isdisjoint(before)
        now = backends()
        for _ in range(5):  # the thread's reader is kept, not checked out per read
            store.failures(["principal:p", "pan:a"], day)
        assert backends() == now
        # A write meeting one before COMMIT goes again on a new one, and counts once.
        store.record_failure(["pan:b"], day, AuditEvent("p", "pin.verify.failed"))  # the pool's, just used
        drop_connections()
        store.record_failure(["pan:b"], day, AuditEvent("p", "pin.verify.failed"))
        assert store.failures(["pan:b"], day) == {"pan:b": 2}
        store.record_failure(["pan:c"], day, AuditEvent("p", "pin.verify.failed"))
        drop_connections()
        store.clear_failures("pan:c")  # so do writes without an audit row
        assert store.failures(["pan:c"], day) == {}
        drop_connections()
        with pytest.raises(KeyNotFound):  # not UNAVAILABLE: the second try reached the table
            store.reserve_uses("no-such-key", 1, 5)
        # Dropped at COMMIT, the outcome is not known: UNAVAILABLE, not a second try.
        def drop_at_commit(_conn: object) -> None:
            drop_connections()

        event.listen(store._engine, "commit", drop_at_commit, once=True)
        with pytest.raises(BackendUnavailable):
            store.record_failure(["pan:b"], day, AuditEvent("p", "pin.verify.failed"))
        assert store.failures(["pan:b"], day) == {"pan:b": 2}
        # Idle past the limit: the checkout pings, finds it dropped and takes a new one; the write goes.
        drop_connections()
        time.sleep(store_module._PING_AFTER + 0.2)
        store.record_failure(["pan:b"], day, AuditEvent("p", "pin.verify.failed"))
        assert store.failures(["pan:b"], day) == {"pan:b": 3}
        assert store.verify_audit().ok
        store.close()
        deadline = time.monotonic() + 5
        while backends():  # closing the store closes its readers too
            assert time.monotonic() < deadline, backends()
            time.sleep(0.05)
    finally:
        store.close()
        backend.close()


def test_every_read_goes_again_after_a_drop_and_no_database_error_escapes(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each read path, its connection dropped by the server just before it: the same answer, from a
    new connection. A database that is gone, or a fault that is not a drop, is UNAVAILABLE (logged
    here at WARN without the statement's values); a value the database cannot hold is INVALID_ARGUMENT."""
    import logging
    from datetime import timedelta

    import psycopg

    from hsmsvc.errors import BackendUnavailable, InvalidInput
    from hsmsvc.hsm.soft.backend import SoftBackend
    from hsmsvc.keys.model import AuditEvent, SyncState
    from tests import pg
    from tests.hsm.components_env import LMK

    backend = SoftBackend(LMK, anchor_path=tmp_path / "lmk.anchor")
    store = KeyStore(pg_url, backend)
    store.migrate()
    name = pg_url.rsplit("/", 1)[1]

    def drop_connections() -> int:
        with psycopg.connect(pg.PG_ADMIN, autocommit=True) as c:
            return len(c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall())

    km = KeyManager(store, backend, "officer-a")
    made = km.generate(zpk("zpk-r"), alias="zpk-r-alias")
    store.change_keys(AuditEvent("p", "sync"), sync=(SyncState("z", "core", 1, "SENT", "d", "{}", made.created_at), 0))
    store.record_failure(["pan:r"], timedelta(hours=1), AuditEvent("p", "pin.verify.failed"))
    def reads(s: KeyStore) -> dict[str, Any]:
        return {
            "get": lambda: s.get("zpk-r").cryptogram,
            "get_by_alias": lambda: s.get_by_alias("zpk-r-alias", 1).cryptogram,
            "next_activation": lambda: s.next_activation("zpk-r"),
            "list_keys": lambda: [k.key_id for k in s.list_keys()],
            "versions": lambda: [k.version for k in s.versions("zpk-r")],
            "next_version": lambda: s.next_version("zpk-r"),
            "sync_state": lambda: s.sync_state("z", "core"),
            "ceremony_parts": lambda: s.ceremony_parts("none"),
            "all_keys": lambda: [k.key_id for k in s.all_keys(None, 10)],
            "audit_head": s.audit_head,
            "audit_rows": lambda: len(list(s.audit_rows())),
            "failures": lambda: s.failures(["pan:r"], timedelta(hours=1)),
            "ping": s.ping,
        }

    try:
        expected = {n: read() for n, read in reads(store).items()}
        assert expected["get"] == made.cryptogram and expected["audit_head"] == 3
        for n, read in reads(store).items():
            assert drop_connections() >= 1, n
            assert read() == expected[n], n
        drop_connections()
        with pytest.raises(KeyNotFound):  # found missing on the second try, not UNAVAILABLE
            store.ceremony("none")
        with pytest.raises(InvalidInput):  # PostgreSQL text holds no NUL
            store.get("zpk\x00r")
        # A fault that is not a drop (here the table is gone): UNAVAILABLE, logged at WARN.
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as c:
            c.execute("ALTER TABLE keys RENAME TO keys_away")
        caplog.set_level(logging.DEBUG, "hsmsvc.store")
        with pytest.raises(BackendUnavailable, match="database error"):
            store.get("zpk-r")
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert warned and warned[-1].sqlstate == "42P01"  # type: ignore[attr-defined]
        assert "zpk-r" not in caplog.text
    finally:
        store.close()
    # The database gone: every read and write is UNAVAILABLE, no SQLAlchemy error escapes.
    gone = KeyStore("postgresql+psycopg://postgres@127.0.0.1:1/none", backend)
    try:
        for n, read in reads(gone).items():
            with pytest.raises(BackendUnavailable, match="unreachable"):
                read()
        with pytest.raises(BackendUnavailable):
            gone.reserve_uses("zpk-r", 1, 1)
    finally:
        gone.close()
        backend.close()
