"""The deployment kit in deploy/: the systemd unit checked by systemd's own tools, the server run under
the memory protection the unit asks for, and the Helm chart rendered, linted and decoded by kubectl."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hsmsvc_client import Client
from tests import pg
from tests.api.conftest import PASSPHRASE, seal_lmk
from tests.hsm.components_env import require_or_skip

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "hsmsvc"


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    require_or_skip(path is not None, tool, f"apt-get install -y {package}")
    assert path is not None
    return path


def _run(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


# -- systemd -------------------------------------------------------------------------------------

def _unit_root(tmp_path: Path) -> Path:
    """A root holding the unit, systemd's own units and a stand-in for /opt/hsmsvc/bin/hsmsvc."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(DEPLOY / "systemd/hsmsvc.service", root / "etc/systemd/system/")
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    exe = root / "opt/hsmsvc/bin/hsmsvc"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def test_systemd_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    tool = _need("systemd-analyze", "systemd")
    root = _unit_root(tmp_path)
    r = _run(tool, "verify", f"--root={root}", "hsmsvc.service")
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    # A misspelt key is a warning only: the empty output above is what catches it.
    unit = root / "etc/systemd/system/hsmsvc.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    assert "Unknown key 'NoNewPrivilege'" in _run(tool, "verify", f"--root={root}", "hsmsvc.service").stderr


def test_systemd_unit_is_hardened(tmp_path: Path) -> None:
    text = (DEPLOY / "systemd/hsmsvc.service").read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Za-z]+=", line))
    for key, value in {"User": "hsmsvc", "Type": "exec", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
                       "MemoryDenyWriteExecute": "yes", "StateDirectory": "hsmsvc",
                       "ExecStart": "/opt/hsmsvc/bin/hsmsvc serve --config /etc/hsmsvc/hsmsvc.toml"}.items():
        assert settings.get(key) == value, key
    assert "LoadCredential=lmk-passphrase:" in text and "passphrase_credential = \"lmk-passphrase\"" in text
    assert "sd_notify" in text  # Type=exec because the server sends none: say so where it is chosen
    assert not re.search(r"sd_notify|NOTIFY_SOCKET", "".join(p.read_text() for p in (ROOT / "hsmsvc").rglob("*.py")))
    tool = _need("systemd-analyze", "systemd")
    r = _run(tool, "security", "--offline=true", f"--root={_unit_root(tmp_path)}", "hsmsvc.service")
    score = re.search(r"Overall exposure level for hsmsvc.service: ([0-9.]+)", r.stdout)
    assert score is not None, r.stdout + r.stderr
    print(f"systemd-analyze security --offline=true: exposure {score.group(1)}")
    assert float(score.group(1)) <= 2.0  # "OK" on systemd's scale; 1.4 when written


def test_sysusers_and_tmpfiles_make_the_user_and_an_append_only_checkpoint_file(tmp_path: Path) -> None:
    sysusers = _need("systemd-sysusers", "systemd")
    tmpfiles = _need("systemd-tmpfiles", "systemd")
    root = tmp_path / "root"
    (root / "etc/sysusers.d").mkdir(parents=True)
    (root / "etc/tmpfiles.d").mkdir(parents=True)
    shutil.copy(DEPLOY / "systemd/hsmsvc.sysusers", root / "etc/sysusers.d/hsmsvc.conf")
    shutil.copy(DEPLOY / "systemd/hsmsvc.tmpfiles", root / "etc/tmpfiles.d/hsmsvc.conf")
    assert _run(sysusers, f"--root={root}").returncode == 0
    user = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                if line.startswith("hsmsvc:"))
    assert user[5:] == ["/var/lib/hsmsvc", "/usr/sbin/nologin"]
    uid = int(user[2])
    checkpoints = root / "var/lib/hsmsvc/audit-checkpoints"
    try:
        r = _run(tmpfiles, f"--root={root}", "--create")
        assert r.returncode == 0, r.stderr
        state = (root / "var/lib/hsmsvc").stat()
        assert (state.st_uid, state.st_mode & 0o777) == (uid, 0o700)
        assert (root / "etc/credstore").stat().st_mode & 0o777 == 0o700
        if shutil.which("lsattr"):
            assert "a" in _run("lsattr", str(checkpoints)).stdout.split()[0]
    finally:
        if shutil.which("chattr") and checkpoints.exists():
            _run("chattr", "-a", str(checkpoints))  # or pytest cannot remove it


# -- MemoryDenyWriteExecute: the server under the kernel's own W^X rule ---------------------------

_PR_SET_MDWE, _MDWE_REFUSE_EXEC_GAIN = 65, 1


def _mdwe() -> None:
    """In the child before exec: refuse writable+executable memory from here on (kept across exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_MDWE, _MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE")


def test_server_serves_with_no_writable_executable_memory(tmp_path: Path) -> None:
    """systemd's MemoryDenyWriteExecute forbids W+X mappings; Linux 6.3's PR_SET_MDWE is the same rule.
    The server, on PostgreSQL, translates a PIN and makes a MAC under it (README's demo keys)."""
    probe = _run(sys.executable, "-c", "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)",
                 preexec_fn=_mdwe) if hasattr(os, "fork") else None
    if probe is None or "PR_SET_MDWE" in probe.stderr:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or later)")
    assert probe.returncode != 0 and "Permission denied" in probe.stderr  # the rule holds
    env = {**os.environ, "HSMSVC_LMK_PASSPHRASE": PASSPHRASE}
    lmk = ["--sealed", str(seal_lmk(tmp_path)), "--passphrase-env", "HSMSVC_LMK_PASSPHRASE"]
    cli = [sys.executable, "-m", "hsmsvc"]
    with pg.throwaway_db() as url:
        r = _run(*cli, "dev", "seed", "--insecure-dev", *lmk, "--store", url, env=env)
        assert r.returncode == 0, r.stderr
        ready, log = tmp_path / "ready.json", tmp_path / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*cli, "serve", "--insecure-dev", *lmk, "--store", url,
                                     "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                     "--ready-file", str(ready)],
                                    stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_mdwe)
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            info = json.loads(ready.read_text())
            with Client.insecure(f"127.0.0.1:{info['port']}") as c:
                pin = c.translate_pin("demo-zpk-a", "demo-zpk-b", bytes.fromhex("C03D21CDBCB0C58B"),
                                      pan="4012345678909")
                mac = c.generate_mac("demo-mak", b"0200|4012345678909|000000012345")
            assert (pin.hex(), mac.hex()) == ("db4e8a3837546251", "d132332cc0b683e5")
            with urllib.request.urlopen(f"http://127.0.0.1:{info['metrics_port']}/readyz", timeout=5) as resp:
                assert resp.status == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log.read_text()[-3000:]


# -- Helm chart ----------------------------------------------------------------------------------

def _yaml_python() -> str:
    """The interpreter yamllint runs on: Debian's python3 with python3-yaml, which render.py needs."""
    yamllint = _need("yamllint", "yamllint")
    first = Path(yamllint).read_text(errors="replace").splitlines()[0]
    return first[2:].split()[0] if first.startswith("#!") else "/usr/bin/python3"


def _render(*args: str) -> subprocess.CompletedProcess[str]:
    return _run(_yaml_python(), str(DEPLOY / "helm/render.py"), str(CHART), "--name", "pay", *args)


def test_yamllint_passes_on_deploy_and_on_the_rendered_chart() -> None:
    yamllint = _need("yamllint", "yamllint")
    config = str(DEPLOY / ".yamllint")
    r = _run(yamllint, "--strict", "-c", config, str(DEPLOY))
    assert r.returncode == 0, r.stdout + r.stderr
    rendered = _render()
    assert rendered.returncode == 0, rendered.stderr
    r = _run(yamllint, "--strict", "-c", config, "-", input=rendered.stdout)
    assert r.returncode == 0, r.stdout + r.stderr


def test_render_refuses_what_needs_helm(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates/extra.yaml").write_text("x: {{ .Values.replicas | quote }}\n")
    r = _run(_yaml_python(), str(DEPLOY / "helm/render.py"), str(chart))
    assert r.returncode != 0 and "needs Helm" in r.stderr
    (chart / "templates/extra.yaml").write_text("x: {{ .Values.nothing.here }}\n")
    r = _run(_yaml_python(), str(DEPLOY / "helm/render.py"), str(chart))
    assert r.returncode != 0 and "no value .Values.nothing.here" in r.stderr


def _objects(*args: str) -> dict[str, dict[str, Any]]:
    r = _render("--json", *args)
    assert r.returncode == 0, r.stderr
    return {o["kind"]: o for o in json.loads(r.stdout)}


def test_chart_renders_stateless_non_root_replicas_with_probes_secrets_and_a_budget(tmp_path: Path) -> None:
    objs = _objects("--set", "replicas=4")
    assert set(objs) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    dep = objs["Deployment"]["spec"]
    assert dep["replicas"] == 4 and dep["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = dep["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    main = pod["containers"][0]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert set(main["resources"]) == {"requests", "limits"}
    assert main["env"] == [{"name": "HSMSVC_STORE",
                            "valueFrom": {"secretKeyRef": {"name": "hsmsvc-database", "key": "url"}}}]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"tls": "hsmsvc-tls", "lmk": "hsmsvc-lmk"}
    assert pod["terminationGracePeriodSeconds"] > 10 + 5  # drain plus the preStop pause
    svc = objs["Service"]["spec"]
    assert svc["clusterIP"] == "None" and {p["name"] for p in svc["ports"]} == {"grpc", "metrics"}
    assert objs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == dep["selector"]["matchLabels"]
    toml = objs["ConfigMap"]["data"]["hsmsvc.toml"]
    assert 'passphrase_file = "/etc/hsmsvc/lmk/passphrase"' in toml  # a mounted Secret's file, not a value
    _check_config(toml, tmp_path)


def _check_config(toml: str, tmp_path: Path) -> None:
    """The ConfigMap's hsmsvc.toml is one the server loads (paths as mounted in the pod)."""
    from hsmsvc.api import config

    path = tmp_path / "hsmsvc.toml"
    path.write_text(toml)
    cfg = config.load(str(path), environ={"HSMSVC_STORE": "postgresql+psycopg://hsmsvc@db/hsmsvc"})
    assert cfg.listen == "0.0.0.0:8443" and cfg.metrics_listen == "0.0.0.0:9464"
    assert cfg.tls is not None and cfg.tls.key == "/etc/hsmsvc/tls/tls.key"
    assert cfg.policy == "/etc/hsmsvc/policy/policy.toml" and cfg.store.startswith("postgresql+psycopg://")


def test_kubectl_decodes_every_rendered_object() -> None:
    """`kubectl create --dry-run=client` needs the API server's discovery even with --validate=false
    (it maps kinds to resources first); `--local` decodes each object with no server at all."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not in Debian 12; install it from the Kubernetes project to run this")
    rendered = _render()
    r = _run(kubectl, "annotate", "--local", "--dry-run=client", "-f", "-", "checked=yes", "-o", "name",
             input=rendered.stdout)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["configmap/pay-config", "deployment.apps/pay",
                                        "poddisruptionbudget.policy/pay", "service/pay"]
