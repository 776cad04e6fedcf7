"""Key store and hierarchy on SQLite and PostgreSQL: binding, state, audit chain."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from hsmsvc.errors import KeyNotFound, KeyStateError, KeyUsageViolation
from hsmsvc.hsm.commands import GenerateMac, Kcv, TranslatePin
from hsmsvc.hsm.model import KeySpec, LegacyForm, PinBlock
from hsmsvc.hsm.policy import Operation
from hsmsvc.hsm.backend import Backend
from hsmsvc.keys.hierarchy import KeyManager
from hsmsvc.keys.schema import pin_attempts as attempts_t
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.store import KeyStore
from hsmsvc.types import (
    Algorithm, Exportability, KeyState, KeyType, KeyUsage, MacAlgorithm, ModeOfUse, Padding, PinBlockFormat,
)


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
        backend.execute(GenerateMac(key=edited.cryptogram, data=b"x", algorithm=MacAlgorithm.ISO9797_ALG1,
                                    padding=Padding.METHOD_1))
    with _raw(store_url) as c:  # swap the cryptograms (and KCVs) of two ZPK rows
        c.execute(text("UPDATE keys SET key_type='ZPK', usage='P0' WHERE key_id='zpk-1'"))
        c.execute(text("UPDATE keys SET cryptogram=:c, kcv=:k WHERE key_id='zpk-1'"),
                  {"c": b.cryptogram.blob, "k": b.cryptogram.kcv.hex().upper()})
    swapped = store.get("zpk-1")
    with pytest.raises(KeyUsageViolation):
        backend.execute(Kcv(key=swapped.cryptogram))
    blob = bytearray(a.cryptogram.blob)
    blob[5:7] = b"M1"  # the key block header's usage field
    with _raw(store_url) as c:
        c.execute(text("UPDATE keys SET cryptogram=:c, kcv=:k WHERE key_id='zpk-1'"),
                  {"c": bytes(blob), "k": a.cryptogram.kcv.hex().upper()})
    with pytest.raises(Exception) as e:
        backend.execute(Kcv(key=store.get("zpk-1").cryptogram))
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
        backend.execute(TranslatePin(pin=PinBlock(block, PinBlockFormat.ISO_0, "4012345678909"),
                                     src=tpk.cryptogram, dst=dst.cryptogram, dst_format=PinBlockFormat.ISO_0))


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
    # A read's autocommit (PostgreSQL, keys/store/rawread.py) never stays with a pooled connection
    # for a writer: a write rolled back is gone.
    with store._engine.connect() as conn:
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
    from hsmsvc.keys.store import engine as store_module
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


# -- anchor and checkpoints: the insider who can write the LMK's directory or token -----------


def _anchor_bytes(backend: Backend, store: KeyStore) -> bytes | None:
    return backend._anchor_load(store.store_id)  # type: ignore[attr-defined,no-any-return]


def _put_anchor(backend: Backend, store: KeyStore, data: bytes) -> None:
    backend._anchor_store(data, store.store_id)  # type: ignore[attr-defined]


def _delete_anchor(backend: Backend, store: KeyStore) -> None:
    if isinstance(backend, SoftBackend):
        backend._anchor_file(store.store_id).unlink()  # type: ignore[union-attr]
    else:
        for obj in backend._anchor_objects(store.store_id):  # type: ignore[attr-defined]
            obj.destroy()


def _generate(store: KeyStore, backend: Backend, first: int, count: int) -> None:
    km = KeyManager(store, backend, "officer-a")
    for i in range(first, first + count):
        km.generate(zpk(f"z{i}"))


@pytest.mark.parametrize(
    "attack,expect",
    [
        ("anchor deleted", "the anchor is missing"),
        ("anchor deleted, table truncated", "no audit row and no anchor"),
        ("every row deleted", "anchored head seq 5 is missing"),
        ("anchor and table rolled back", "checkpointed seq 5 is missing"),
        ("older checkpoint file restored, table rolled back", "newest rows were deleted"),
        ("checkpoint lines edited, table rolled back", "checkpointed seq 3 is missing"),
        ("checkpoint file replaced by another store's", "no checkpoint names this store"),
    ],
)
def test_audit_verify_detects_anchor_attacks(store_url: str, backend: Backend, tmp_path: Path,
                                             attack: str, expect: str) -> None:
    sink = tmp_path / "checkpoints"
    store = KeyStore(store_url, backend, checkpoints=sink)
    store.migrate()
    try:
        _generate(store, backend, 0, 3)
        old_anchor, old_sink = _anchor_bytes(backend, store), sink.read_bytes()
        _generate(store, backend, 3, 2)
        report = store.verify_audit(sink)
        assert report.ok and report.rows == 5, report.problems
        if attack == "anchor deleted":
            _delete_anchor(backend, store)
        elif attack == "anchor deleted, table truncated":
            _delete_anchor(backend, store)
            _tamper(store_url, "DELETE FROM audit")
        elif attack == "every row deleted":
            _tamper(store_url, "DELETE FROM audit")
        elif attack == "anchor and table rolled back":
            assert old_anchor is not None
            _put_anchor(backend, store, old_anchor)
            _tamper(store_url, "DELETE FROM audit WHERE seq > 3")
            assert store.verify_audit().ok  # without the checkpoints this is undetectable
        elif attack == "older checkpoint file restored, table rolled back":
            sink.write_bytes(old_sink)
            _tamper(store_url, "DELETE FROM audit WHERE seq > 3")
        elif attack == "checkpoint lines edited, table rolled back":
            sink.write_text(sink.read_text().replace("seq=4 ", "seq=1 ").replace("seq=5 ", "seq=2 "))
            _put_anchor(backend, store, old_anchor or b"")
            _tamper(store_url, "DELETE FROM audit WHERE seq > 2")
        else:
            sink.write_text(sink.read_text().replace(store.store_id, "ab" * 16))
        report = store.verify_audit(sink)
        assert not report.ok
        assert any(expect in p for p in report.problems), report.problems
        if "edited" in attack:
            assert any("2 checkpoint lines do not verify" in n for n in report.notes), report.notes
    finally:
        store.close()


def test_one_lmk_anchors_two_stores_apart(backend: Backend, tmp_path: Path) -> None:
    stores = [KeyStore(f"sqlite:///{tmp_path}/{n}.db", backend) for n in ("a", "b")]
    try:
        for s in stores:
            s.migrate()
        assert stores[0].store_id != stores[1].store_id
        _generate(stores[0], backend, 0, 4)
        _generate(stores[1], backend, 0, 1)
        assert all(s.verify_audit().ok for s in stores), [s.verify_audit().problems for s in stores]
    finally:
        for s in stores:
            s.close()


def test_reanchoring_after_a_restore_needs_two_officers_and_is_audited(
        store_url: str, backend: Backend, tmp_path: Path) -> None:
    from hsmsvc.errors import PermissionDenied
    from hsmsvc.keys.reanchor import reanchor

    sink = tmp_path / "checkpoints"
    store = KeyStore(store_url, backend, checkpoints=sink)
    store.migrate()
    try:
        _generate(store, backend, 0, 5)
        _tamper(store_url, "DELETE FROM audit WHERE seq > 3")  # the audit table as an older backup has it
        assert not store.verify_audit(sink).ok
        with pytest.raises(PermissionDenied):
            reanchor(store, backend, first_officer="officer-a", second_officer="officer-a", reason="restore")
        old = store.store_id
        done = reanchor(store, backend, first_officer="officer-a", second_officer="officer-b",
                        reason="CHG-1 restore", checkpoints=sink)
        assert (done.old_store, done.restored_rows, done.anchored_seq) == (old, 3, 5)
        report = store.verify_audit(sink)
        assert report.ok and report.rows == 4, report.problems
        assert any("officer-a,officer-b" in n and old in n for n in report.notes), report.notes
        _generate(store, backend, 10, 1)
        assert store.verify_audit(sink).ok
        _tamper(store_url, "UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        with pytest.raises(PermissionDenied):  # tampered rows are never re-anchored
            reanchor(store, backend, first_officer="officer-a", second_officer="officer-b", reason="x")
    finally:
        store.close()


def test_rotating_a_k0_kek_keeps_its_legacy_opt_in(store: KeyStore, backend: Backend) -> None:
    """A rotated K0 ZMK still carries ZPKs in the partner's form (issue 30: rotation dropped it)."""
    km = KeyManager(store, backend, "officer")
    spec = KeySpec("zmk-k0", 1, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK)
    km.generate(spec, legacy_types=frozenset({KeyType.ZPK}), legacy_form=LegacyForm.X917_ECB)
    km.rotate("zmk-k0")
    newest = store.versions("zmk-k0")[-1]
    assert (newest.version, newest.legacy_types, newest.legacy_form) == (
        2, frozenset({KeyType.ZPK}), LegacyForm.X917_ECB)


def test_one_value_may_not_be_imported_as_two_types_in_an_ecb_form(store: KeyStore, backend: Backend) -> None:
    """An ECB form binds no type: the ZPK a ZMK gave out, imported again as a MAK, would MAC (that
    is, encipher) chosen PIN blocks (issue 36's reviews). The same binding again is a re-import; a
    broader exportability, or a value revoked, is refused; two imports racing on one value cannot
    both pass; and a refusal is audited."""
    import threading

    from hsmsvc.errors import Unsupported
    from hsmsvc.hsm.model import Command
    from tests.hsm.helpers import clear_key
    from tests import reference as ind

    try:
        backend.capabilities.require(Command.IMPORT_KEY)
    except Unsupported:
        pytest.skip("the PKCS#11 backend imports no keys under a KEK (hsm/pkcs11/backend.py says why)")
    km = KeyManager(store, backend, "officer")
    zmk_clear = clear_key(Algorithm.TDES_2KEY)
    km.form(KeySpec("zmk-x", 1, KeyType.ZMK, Algorithm.TDES_2KEY, KeyUsage.KEK), [bytes(16), zmk_clear],
            legacy_types=frozenset({KeyType.ZPK, KeyType.MAK, KeyType.DEK, KeyType.PVK}),
            legacy_form=LegacyForm.X917_ECB)
    zmk = store.get("zmk-x")

    def offer(spec: KeySpec, value: bytes) -> None:
        km.import_with(kek=zmk, wrapped=ind.tdes_ecb(zmk_clear, value), spec=spec, kcv=ind.tdes_kcv(value)[:3])

    mak = KeySpec("mak-twin", 1, KeyType.MAK, Algorithm.TDES_2KEY, KeyUsage.MAC_ISO9797_ALG3,
                  ModeOfUse.MAC_GENERATE_VERIFY)
    value = clear_key(Algorithm.TDES_2KEY)
    offer(zpk("zpk-a"), value)
    offer(zpk("zpk-again"), value)  # the same binding: a re-import
    for refused in (mak, KeySpec("zpk-wider", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION,
                                 exportability=Exportability.EXPORTABLE)):
        with pytest.raises(KeyUsageViolation) as e:
            offer(refused, value)
        assert "another binding" in str(e.value)
        with pytest.raises(KeyNotFound):
            store.get(refused.key_id)
    assert any(r.action == "key.import_refused" and r.key_id == "mak-twin" for r in store.audit_rows())
    km.revoke("zpk-a", 1, "compromised")
    km.revoke("zpk-again", 1, "compromised")
    with pytest.raises(KeyUsageViolation):
        offer(zpk("zpk-reborn"), value)  # a revoked value does not come back as a fresh key
    offer(mak, clear_key(Algorithm.TDES_2KEY))  # another value: taken
    pvk_value = clear_key(Algorithm.TDES_2KEY)

    def pvk(key_id: str, table: str, zone: str = "") -> KeySpec:
        return KeySpec(key_id, 1, KeyType.PVK, Algorithm.TDES_2KEY, KeyUsage.PIN_VERIFICATION_IBM3624,
                       ModeOfUse.MAC_GENERATE_VERIFY, zone=zone, decimalization_table=table)

    offer(pvk("pvk-a", "0123456789012345"), pvk_value)
    for other in (pvk("pvk-table", "0123456789012354"), pvk("pvk-zone", "0123456789012345", zone="other")):
        with pytest.raises(KeyUsageViolation):  # a swapped table would leak a natural PIN's digits
            offer(other, pvk_value)

    raced = clear_key(Algorithm.TDES_2KEY)
    outcomes: list[str] = []

    def race(spec: KeySpec) -> None:
        try:
            offer(spec, raced)
            outcomes.append("stored")
        except KeyUsageViolation:
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(spec,)) for spec in (
        zpk("zpk-race"), KeySpec("dek-race", 1, KeyType.DEK, Algorithm.TDES_2KEY, KeyUsage.DATA))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["refused", "stored"], outcomes

    # The fourth review's interleaving: the first import pauses after its check, the second runs
    # whole meanwhile. Without a lock both committed on PostgreSQL (each read its own snapshot).
    import time

    original, paused = store._one_binding, threading.Event()

    def slow(conn: Any, key: Any) -> None:
        original(conn, key)
        if not paused.is_set():
            paused.set()
            time.sleep(0.5)

    store._one_binding = slow  # type: ignore[method-assign]
    raced, outcomes[:] = clear_key(Algorithm.TDES_2KEY), []
    first = threading.Thread(target=race, args=(zpk("zpk-paused"),))
    first.start()
    assert paused.wait(10)
    race(KeySpec("dek-paused", 1, KeyType.DEK, Algorithm.TDES_2KEY, KeyUsage.DATA))
    first.join(30)
    store._one_binding = original  # type: ignore[method-assign]
    assert sorted(outcomes) == ["refused", "stored"], outcomes
