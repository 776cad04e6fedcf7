"""Issue 27's hardening: each finding of the "Low" list, against a real server where it is a server's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsmsvc.api import config as api_config
from hsmsvc.errors import InvalidInput

_BACKEND = '[backend]\nsealed_lmk = "lmk.sealed"\npassphrase_env = "HSMSVC_UNUSED"\n'
_TLS = '[tls]\ncert = "c.pem"\nkey = "k.pem"\nclient_ca = "ca.pem"\n'


def _serve_refuses(tmp_path: Path, config: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``hsmsvc serve`` on ``config`` exits 2 before it binds anything; its stderr."""
    f = tmp_path / "hsmsvc.toml"
    f.write_text(config)
    r = subprocess.run([sys.executable, "-m", "hsmsvc", "serve", "--config", str(f), *args],
                       capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    assert r.returncode == 2, r.stderr
    return r.stderr


# -- 1. insecure-dev only for a development config on loopback ------------------------------------

def test_insecure_dev_variable_refuses_a_config_holding_tls(tmp_path: Path) -> None:
    err = _serve_refuses(tmp_path, 'store = "sqlite:///x.db"\n' + _TLS + _BACKEND, env={"HSMSVC_INSECURE_DEV": "1"})
    assert "insecure_dev" in err and "[tls]" in err


def test_insecure_dev_flag_refuses_a_config_naming_a_policy(tmp_path: Path) -> None:
    err = _serve_refuses(tmp_path, 'store = "sqlite:///x.db"\npolicy = "p.toml"\n' + _BACKEND, "--insecure-dev")
    assert "policy" in err


@pytest.mark.parametrize("listen", ["0.0.0.0:8443", "[::]:8443", "10.1.2.3:8443", "db.example:8443", "8443"])
def test_insecure_dev_refuses_a_non_loopback_address(tmp_path: Path, listen: str) -> None:
    err = _serve_refuses(tmp_path, 'store = "sqlite:///x.db"\n' + _BACKEND, "--insecure-dev", "--listen", listen)
    assert "loopback" in err


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.0.0.2:9", "[::1]:8443", "localhost:8443"])
def test_insecure_dev_accepts_loopback(tmp_path: Path, listen: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text('store = "sqlite:///x.db"\n' + _BACKEND)
    assert api_config.load(str(f), {"listen": listen}, environ={"HSMSVC_INSECURE_DEV": "1"}).insecure_dev
    with pytest.raises(InvalidInput, match="loopback"):
        api_config.load(str(f), {"listen": "0.0.0.0:1"}, environ={"HSMSVC_INSECURE_DEV": "1"})

