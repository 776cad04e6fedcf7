"""What an operator gets wrong in a config is one line naming the file and the key, exit 2, no traceback."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hsmsvc.api import config as api_config
from hsmsvc.cli import main
from hsmsvc.errors import InvalidInput
from tests.api.conftest import PASSPHRASE, POLICY, seal_lmk

GOOD = """store = "sqlite:///keys.db"
policy = "policy.toml"
[tls]
cert = "tls/server.pem"
key = "tls/server.key"
client_ca = "tls/ca.pem"
[backend]
sealed_lmk = "lmk.sealed"
passphrase_env = "P"
"""


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *, files: bool = False) -> str:
    """``hsmsvc config check`` on ``text``: its one line of error (exit 2 required)."""
    f = tmp_path / "hsmsvc.toml"
    f.write_text(text)
    assert main(["config", "check", str(f), *([] if files else ["--no-files"])]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.splitlines()) == 1, out
    return out.err.strip()


@pytest.mark.parametrize("text,line", [
    ('listen_adress = "127.0.0.1:1"\n' + GOOD, "listen_adress: unknown key"),
    ("shutdown_grace_second = 3\n" + GOOD, "shutdown_grace_second: unknown key"),
    (GOOD.replace("client_ca =", "client_ca_typo ="), "[tls] client_ca_typo: unknown key"),
    (GOOD.replace('key = "tls/server.key"\n', ""), "[tls] key: required"),
    (GOOD.replace("[backend]", "[backned]"), "[backned]: unknown table"),
    ('log_level = "verbose"\n' + GOOD, "log_level: DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ('workers = "4"\n' + GOOD, "workers: an integer, not a string"),
    (GOOD.replace("[backend]\n", '[backend]\nkind = "pool"\n') + '[[backend.members]]\nsealed_lmkk = "x"\n',
     "[[backend.members]] 1 sealed_lmkk: unknown key"),
    (GOOD + "[rotation.ZPK]\nmax_use = 5\n", "[rotation.ZPK] max_use: unknown key"),
    (GOOD + "[peers.east]\naddres = \"h:1\"\n", "[peers.east] addres: unknown key"),
    ("listen = \n", "not valid TOML"),
])
def test_a_mistake_is_one_line_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   text: str, line: str) -> None:
    assert check(tmp_path, text, capsys).startswith(f"{tmp_path / 'hsmsvc.toml'}: {line}")


def test_a_policy_mistake_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "policy.toml"
    f.write_text(POLICY.replace('name = "auditor"\nroles', 'name = "auditor"\nrols', 1))
    assert main(["policy", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert err == f"{f}: [[principals]] 4 rols: unknown key\n"
    f.write_text("[[principal]]\nname = \"x\"\n")
    assert main(["policy", "check", str(f)]) == 2
    assert capsys.readouterr().err == f"{f}: [[principal]]: unknown table\n"


def test_unreadable_files_are_named_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path, GOOD, capsys, files=True) == (
        f"{tmp_path / 'policy.toml'}: cannot be read (no such file or directory)")
    (tmp_path / "policy.toml").write_text(POLICY)
    assert check(tmp_path, GOOD, capsys, files=True) == (
        f"tls.cert {tmp_path / 'tls/server.pem'}: cannot be read (no such file or directory)")
    no_tls = GOOD.replace('[tls]\ncert = "tls/server.pem"\nkey = "tls/server.key"\nclient_ca = "tls/ca.pem"\n', "")
    assert check(tmp_path, no_tls, capsys, files=True).endswith(": tls: required: mTLS, or --insecure-dev for "
                                                                 "development")
    (tmp_path / "tls").mkdir()
    for n in ("server.pem", "server.key", "ca.pem"):
        (tmp_path / "tls" / n).write_text("x")
    assert check(tmp_path, GOOD, capsys, files=True) == (
        f"sealed_lmk {tmp_path / 'lmk.sealed'}: cannot be read (no such file or directory)")


def test_paths_resolve_against_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hsmsvc.toml").write_text('audit_checkpoints = "var/cp"\n' + GOOD)
    monkeypatch.chdir("/")
    cfg = api_config.load(str(tmp_path / "etc" / "hsmsvc.toml"), environ={})
    etc = tmp_path / "etc"
    assert cfg.policy == str(etc / "policy.toml") and cfg.store == f"sqlite:///{etc / 'keys.db'}"
    assert cfg.tls is not None and cfg.tls.key == str(etc / "tls/server.key")
    assert cfg.audit_checkpoints == str(etc / "var/cp")
    assert cfg.backend.members[0].sealed_lmk == str(etc / "lmk.sealed")  # type: ignore[union-attr]
    # Given on the command line or in the environment, a path is the caller's: relative to the working directory.
    cfg = api_config.load(str(etc / "hsmsvc.toml"), {"policy": "p.toml"}, environ={"HSMSVC_STORE": "sqlite:///k.db"})
    assert cfg.policy == "p.toml" and cfg.store == "sqlite:///k.db"


def test_environment_overrides_are_checked_and_named(tmp_path: Path) -> None:
    f = tmp_path / "hsmsvc.toml"
    f.write_text(GOOD)
    for env, line in (({"HSMSVC_LOG_LEVEL": "verbose"}, "HSMSVC_LOG_LEVEL: log_level: DEBUG, INFO"),
                      ({"HSMSVC_WORKERS": "four"}, "HSMSVC_WORKERS: a whole number"),
                      ({"HSMSVC_WORKERS": "99"}, "HSMSVC_WORKERS: workers: 1 to 64"),
                      ({"HSMSVC_AUTO_MIGRATE": "maybe"}, "HSMSVC_AUTO_MIGRATE: 1, true or yes")):
        with pytest.raises(InvalidInput) as e:
            api_config.load(str(f), environ=env)
        assert str(e.value).startswith(line)
    assert api_config.load(str(f), environ={"HSMSVC_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert api_config.load(str(f), environ={"HSMSVC_AUTO_MIGRATE": "1"}).auto_migrate
    assert not api_config.load(str(f), environ={}).auto_migrate
    dev = {"insecure_dev": True, "backend": {"sealed_lmk": "l", "passphrase_env": "P"}}
    assert api_config.load(None, dev, environ={}).auto_migrate  # development: on by default


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
           config: Path | None = None) -> subprocess.Popen[str]:
    """``hsmsvc serve`` from ``config``, or in development mode on a SQLite store of its own in ``tmp_path``
    (runs in parallel: two migrating one file would race)."""
    how = ["--config", str(config)] if config else [
        "--insecure-dev", "--sealed", str(tmp_path / "lmk.sealed"), "--passphrase-env", "HSMSVC_TEST_LMK_PASSPHRASE",
        "--store", f"sqlite:///{tmp_path / f'keys-{secrets.token_hex(4)}.db'}"]
    return subprocess.Popen(
        [sys.executable, "-m", "hsmsvc", "serve", *how, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {}), "HSMSVC_TEST_LMK_PASSPHRASE": PASSPHRASE})


def _refused(proc: subprocess.Popen[str]) -> str:
    """The one ``hsmsvc:`` error line of a serve that must refuse (exit 2), with nothing else gone wrong."""
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "Event loop is closed" not in err and "add_port" not in err, err
    errors = [line for line in err.splitlines() if "insecure-dev" not in line]
    assert len(errors) == 1, err
    return errors[0]


def test_busy_ports_a_bad_level_and_a_missing_certificate_are_one_line(tmp_path: Path) -> None:
    seal_lmk(tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    (tmp_path / "tls").mkdir()
    for n in ("server.key", "ca.pem"):
        (tmp_path / "tls" / n).write_text("x")
    production = tmp_path / "hsmsvc.toml"
    production.write_text('listen = "127.0.0.1:0"\nmetrics_listen = ""\nauto_migrate = true\n' + GOOD.replace(
        'passphrase_env = "P"', 'passphrase_env = "HSMSVC_TEST_LMK_PASSPHRASE"'))
    with socket.socket() as grpc_port, socket.socket() as metrics_port:
        for s in (grpc_port, metrics_port):
            s.bind(("127.0.0.1", 0))
            s.listen()
        g, m = (f"127.0.0.1:{s.getsockname()[1]}" for s in (grpc_port, metrics_port))
        runs = [_serve(tmp_path, "--listen", g, "--metrics-listen", "127.0.0.1:0"),
                _serve(tmp_path, "--listen", "127.0.0.1:0", "--metrics-listen", m),
                _serve(tmp_path, "--listen", "127.0.0.1:0", env={"HSMSVC_LOG_LEVEL": "verbose"}),
                _serve(tmp_path, config=production)]
        lines = [_refused(p) for p in runs]
    assert lines == [f"hsmsvc: listen {g}: address already in use",
                     f"hsmsvc: metrics_listen {m}: address already in use",
                     "hsmsvc: HSMSVC_LOG_LEVEL: log_level: DEBUG, INFO, WARNING, ERROR or CRITICAL",
                     f"hsmsvc: tls.cert {tmp_path / 'tls/server.pem'}: cannot be read (no such file or directory)"]

