"""Migration 0007 records every K0 KEK that opted in to key types as HSMSVC_VARIANT (issue 30).

Those ZMKs used hsmsvc's own variant table before a form could be chosen, so the upgrade
names that form explicitly and nothing they carry changes; everything else gets NONE.
"""

from __future__ import annotations

from datetime import datetime, timezone
from importlib import resources

import sqlalchemy as sa
from alembic import command
from alembic.config import Config


def _upgrade(conn: sa.Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("hsmsvc.keys") / "migrations"))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)
    conn.commit()


def _row(key_id: str, usage: str, legacy_types: str) -> dict[str, object]:
    return dict(key_id=key_id, version=1, key_type="ZMK", algorithm="TDES_2KEY", usage=usage, mode_of_use="B",
                exportability="N", zone="", state="ACTIVE", cryptogram=b"x", kcv="000000",
                created_at=datetime.now(timezone.utc), use_count=0, legacy_types=legacy_types)


def test_old_k0_zmks_are_recorded_in_the_old_form(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            _upgrade(conn, "0006")
            keys = sa.Table("keys", sa.MetaData(), autoload_with=conn)
            for r in (_row("zmk-old-k0", "K0", "MAK,ZPK"), _row("zmk-k1", "K1", ""), _row("zmk-k0-none", "K0", "")):
                conn.execute(keys.insert().values(**r))
            conn.commit()
            _upgrade(conn, "head")
            got = dict(conn.execute(sa.text("SELECT key_id, legacy_form FROM keys")).all())
    finally:
        engine.dispose()
    assert got == {"zmk-old-k0": "HSMSVC_VARIANT", "zmk-k1": "NONE", "zmk-k0-none": "NONE"}
