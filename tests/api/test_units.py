"""The API's parts on their own: generated code freshness, enum tables, policy and config parsing."""

from __future__ import annotations

import filecmp
import importlib.util
import sys
from pathlib import Path

import pytest

from hsmsvc.api import config as api_config
from hsmsvc.api import convert as cv
from hsmsvc.api.status import CODES
from hsmsvc.errors import HsmsvcError, InvalidInput, PermissionDenied
from hsmsvc.redact import mask_pan
from hsmsvc.service.authz import Policy, Role
from hsmsvc.types import KeyType

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    """CI fails when proto/ changed and `make proto` was not run."""
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "tools" / "gen_proto.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.generate(tmp_path)
    fresh, committed = tmp_path, ROOT / "clients" / "python" / "hsmsvc_client" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names == sorted(p.name for p in committed.iterdir() if p.is_file() and p.suffix in (".py", ".pyi"))
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not errors, f"stale generated code: {mismatch}; run `make proto`"


@pytest.mark.parametrize("table", [cv.ALGORITHM, cv.KEY_TYPE, cv.KEY_STATE, cv.PIN_FORMAT, cv.MAC_ALGORITHM,
                                   cv.CIPHER_MODE, cv.DATA_PADDING, cv.MAC_PADDING])
def test_enum_tables_are_total_and_reject_unspecified(table: cv.EnumTable) -> None:  # type: ignore[type-arg]
    domain = type(next(iter(table.to_pb)))
    # The LMK never crosses the API.
    assert set(table.to_pb) == set(domain) - {KeyType.LMK}
    with pytest.raises(InvalidInput, match="required"):
        table.get(0, "f")
    with pytest.raises(InvalidInput, match="unknown value"):
        table.get(999, "f")


def test_every_error_class_has_a_code() -> None:
    classes = {c for c in vars(sys.modules["hsmsvc.errors"]).values()
               if isinstance(c, type) and issubclass(c, HsmsvcError) and c is not HsmsvcError}
    mapped = {c for c, _ in CODES}
    assert all(any(issubclass(c, m) for m in mapped) for c in classes - {sys.modules["hsmsvc.errors"].AlreadyFinalized})


def test_policy_separation_of_duties() -> None:
    with pytest.raises(InvalidInput, match="separate duties"):
        Policy.from_dict({"principals": [{"name": "a", "roles": ["auditor", "manager"], "keys": ["*"]}]})
    with pytest.raises(InvalidInput, match="separate duties"):
        Policy.from_dict({"principals": [{"name": "a", "roles": ["operator", "auditor"]}]})
    with pytest.raises(InvalidInput, match="roles"):
        Policy.from_dict({"principals": [{"name": "a", "roles": ["root"]}]})
    p = Policy.from_dict({"principals": [
        {"name": "branch", "roles": ["operator"], "keys": ["branch.*"], "methods": ["PinService.TranslatePin"]}]})
    b = p.principal("branch")
    assert b.roles == frozenset({Role.OPERATOR})
    assert b.may_call("PinService.TranslatePin") and not b.may_call("PinService.VerifyPin")
    assert not b.may_call("KeyService.ExportKey")
    with pytest.raises(PermissionDenied):
        p.principal("nobody")


def test_config_requires_tls_unless_insecure_dev(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('store = "sqlite:///x.db"\n[backend]\nsealed_lmk = "l"\npassphrase_env = "P"\n')
    with pytest.raises(InvalidInput, match="tls"):
        api_config.load(str(f), environ={})
    cfg = api_config.load(str(f), environ={"HSMSVC_INSECURE_DEV": "1", "HSMSVC_LISTEN": "127.0.0.1:9"})
    assert cfg.insecure_dev and cfg.listen == "127.0.0.1:9" and cfg.backend.kind == "soft"
    f.write_text('store = "x"\npolicy = "p.toml"\n[tls]\ncert = "c"\nkey = "k"\nclient_ca = "a"\n'
                 '[backend]\nkind = "pool"\n[[backend.members]]\nkind = "pkcs11"\nmodule = "m"\n'
                 'token_label = "t"\npin_env = "PIN"\n')
    cfg = api_config.load(str(f), environ={})
    assert cfg.backend.kind == "pool" and cfg.policy == str(tmp_path / "p.toml")


@pytest.mark.parametrize("pan,masked", [("4012345678909", "401234***8909"),
                                        ("6222021234567890123", "622202*********0123"), ("1234", "****")])
def test_pan_masking(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked


def test_access_log_lines_are_json_batched_and_escaped() -> None:
    import asyncio
    import io
    import json
    import logging

    from hsmsvc.api.logs import REQUEST_ID, AccessLog

    out = io.StringIO()
    access = AccessLog(out, interval=0.05, limit=10_000)
    logger = logging.getLogger("hsmsvc.access")
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        async def calls() -> None:
            token = REQUEST_ID.set("rq-1")
            for _ in range(3):
                access.write("rpc", "PinService.TranslatePin", 'odd "name"\\', "OK", 0.0001234)
            REQUEST_ID.reset(token)
            assert out.getvalue() == ""  # batched, not written per call
            await asyncio.sleep(0.2)

        asyncio.run(calls())
        lines = out.getvalue().splitlines()
        assert len(lines) == 3
        r = json.loads(lines[0])
        assert r["logger"] == "hsmsvc.access" and r["level"] == "INFO" and r["request_id"] == "rq-1"
        assert r["principal"] == 'odd "name"\\' and r["code"] == "OK" and r["ms"] == 0.123
        assert r["time"].endswith("Z")
        access.write("rpc", "M.N", "p", "OK", 0.0)  # no event loop: written at once
        assert len(out.getvalue().splitlines()) == 4
        logger.setLevel(logging.WARNING)
        assert not access.enabled()
    finally:
        logger.setLevel(old)


def test_client_request_ids_are_kept_only_when_plain() -> None:
    from hsmsvc.api.status import request_id

    assert request_id((("user-agent", "x"), ("x-request-id", "batch-7:item.42"))) == "batch-7:item.42"
    for bad in ('a"b', "a b", "x" * 65, "", "é", "batch-7:item/42"):
        assert request_id((("x-request-id", bad),)) != bad
    assert request_id(()) != request_id(())  # fresh ids of ours


def test_metrics_exposition_counts_and_cumulative_buckets() -> None:
    from prometheus_client import generate_latest

    from hsmsvc.api.metrics import Metrics

    m = Metrics()
    m.record("PinService.TranslatePin", "OK", 0.0003)
    m.record("PinService.TranslatePin", "OK", 0.003)
    m.record("PinService.TranslatePin", "NOT_FOUND", 0.3)
    text = generate_latest(m.registry).decode()
    assert 'hsmsvc_rpc_calls_total{code="OK",method="PinService.TranslatePin"} 2.0' in text
    assert 'hsmsvc_rpc_errors_total{code="NOT_FOUND",method="PinService.TranslatePin"} 1.0' in text
    assert 'hsmsvc_rpc_errors_total{code="OK"' not in text
    assert 'hsmsvc_rpc_duration_seconds_bucket{le="0.0005",method="PinService.TranslatePin"} 1.0' in text
    assert 'hsmsvc_rpc_duration_seconds_bucket{le="0.005",method="PinService.TranslatePin"} 2.0' in text
    assert 'hsmsvc_rpc_duration_seconds_bucket{le="+Inf",method="PinService.TranslatePin"} 3.0' in text
    assert 'hsmsvc_rpc_duration_seconds_count{method="PinService.TranslatePin"} 3.0' in text
