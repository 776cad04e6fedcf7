"""Issue 31: an audit checkpoint that cannot be written is counted for the alert rules
(``hsmsvc_audit_write_failures_total{stage}``), on a real store, backend and a full device."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from hsmsvc.api.metrics import Metrics
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.keys.model import AuditEvent
from hsmsvc.keys.store import KeyStore
from tests.hsm.components_env import LMK


def test_a_failed_checkpoint_write_is_counted(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full to fill")
    backend = SoftBackend(LMK, anchor_path=tmp_path / "lmk.anchor")
    store = KeyStore(f"sqlite:///{tmp_path}/keys.db", backend, checkpoints=Path("/dev/full"))
    try:
        store.migrate()
        m = Metrics()
        m.count_audit_failures(store.chain.failures)
        text = generate_latest(m.registry).decode()
        assert 'hsmsvc_audit_write_failures_total{stage="checkpoint"} 0.0' in text
        with pytest.raises(OSError):
            store.audit(AuditEvent("tester", "metrics-test"))
        text = generate_latest(m.registry).decode()
        assert 'hsmsvc_audit_write_failures_total{stage="checkpoint"} 1.0' in text
        assert 'hsmsvc_audit_write_failures_total{stage="anchor"} 0.0' in text
        assert store.audit_head() == 1  # the row is in; its checkpoint is what is missing
    finally:
        store.close()
        backend.close()
