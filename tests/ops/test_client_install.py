"""A client-only install: the hsmsvc-client wheel alone in a fresh virtual environment brings
grpcio, protobuf and their own dependencies, nothing of the server's, and runs the README's
example against a real server (``hsmsvc serve --insecure-dev`` as ``make run`` starts it).

The wheel is built once, from a copy of clients/python by this environment's locked setuptools.
The fresh environment is made without pip (ensurepip took 35 s of the test's time here) and this
environment's pip installs into it (``pip --python``), taking grpcio and protobuf from the
package index: without the index the tests skip, and under CI=true they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASS_ENV = "HSMSVC_CLIENT_INSTALL_PASSPHRASE"
# The server's dependencies that a client install pulled before hsmsvc-client was its own distribution.
SERVER_ONLY = frozenset({"hsmsvc", "sqlalchemy", "alembic", "psycopg", "python-pkcs11", "fpdf2", "pillow",
                         "gmssl", "cryptography", "pycryptodome", "grpcio-health-checking", "prometheus-client"})
# Run in the fresh environment: every installed distribution, and each one's requirements (extras left out).
_INVENTORY = """
import importlib.metadata as md, json, re
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
print(json.dumps({norm(d.metadata["Name"]): [norm(re.split(r"[\\s;<>=!~\\[(]", r, maxsplit=1)[0])
                                           for r in (d.requires or []) if "extra ==" not in r]
                  for d in md.distributions()}))
"""


@dataclass(frozen=True)
class ClientEnv:
    wheel: Path
    python: Path
    installed: dict[str, list[str]]
    """Each distribution in the fresh environment, with the names it requires."""
    seconds: float


def _run(*args: str | Path, timeout: float = 120, cwd: Path | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=cwd, input=stdin)


@pytest.fixture(scope="module")
def client_env(tmp_path_factory: pytest.TempPathFactory) -> ClientEnv:
    d = tmp_path_factory.mktemp("client-install")
    started = time.monotonic()
    src = d / "src"
    shutil.copytree(ROOT / "clients" / "python", src,
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    r = _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
             "-w", d / "dist", src)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (d / "dist").glob("hsmsvc_client-*.whl")
    venv = d / "venv"
    r = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert r.returncode == 0, r.stderr
    python = venv / "bin" / "python"
    r = _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-input", wheel, timeout=180)
    if r.returncode != 0:
        why = "pip could not install hsmsvc-client with grpcio and protobuf from the package index"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} under CI:\n{r.stderr[-3000:]}")
        pytest.skip(f"{why} (offline?): {r.stderr.strip().splitlines()[-1:]}")
    r = _run(python, "-c", _INVENTORY, cwd=d)
    assert r.returncode == 0, r.stderr
    return ClientEnv(wheel, python, json.loads(r.stdout), time.monotonic() - started)


def test_the_wheel_is_typed_licensed_and_needs_only_grpcio_and_protobuf(client_env: ClientEnv) -> None:
    with zipfile.ZipFile(client_env.wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        licence = z.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE")))
    assert "hsmsvc_client/py.typed" in names and "hsmsvc_client/v1/types_pb2.pyi" in names
    assert not [n for n in names if n.startswith("hsmsvc/")]
    assert "License-Expression: Apache-2.0" in meta.splitlines()
    assert licence == (ROOT / "LICENSE").read_bytes() == (ROOT / "clients" / "python" / "LICENSE").read_bytes()
    requires = sorted(line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: "))
    plain = [r for r in requires if "extra ==" not in r]
    assert [re.split(r"[<>=!~]", r, maxsplit=1)[0] for r in plain] == ["grpcio", "protobuf"], requires
    # The one extra, for the two-party SM2 client half (hsmsvc_client.cosign): SM3, scrypt, AES-GCM.
    extras = [r for r in requires if "extra ==" in r]
    assert [re.split(r"[<>=!~;]", r, maxsplit=1)[0] for r in extras] == ["cryptography"], requires
    assert all('extra == "cosign"' in r for r in extras), requires


def test_a_client_only_install_holds_grpcio_protobuf_and_their_own_dependencies(client_env: ClientEnv) -> None:
    installed = client_env.installed
    closure, todo = set(), ["hsmsvc-client"]
    while todo:
        name = todo.pop()
        if name in installed and name not in closure:  # a requirement under a marker may be absent
            closure.add(name)
            todo += installed[name]
    print(f"client-only install in {client_env.seconds:.1f} s: {sorted(installed)}")
    assert set(installed["hsmsvc-client"]) == {"grpcio", "protobuf"}
    assert {"grpcio", "protobuf"} <= set(installed)
    # Made without pip, the environment holds exactly what hsmsvc-client brought.
    assert set(installed) == closure, sorted(set(installed) ^ closure)
    assert not set(installed) & SERVER_ONLY
    # pip's own view agrees.
    r = _run(sys.executable, "-m", "pip", "--python", client_env.python, "list", "--format=json")
    assert r.returncode == 0, r.stderr
    assert {re.sub(r"[-_.]+", "-", p["name"]).lower() for p in json.loads(r.stdout)} == set(installed)


def test_the_server_imports_the_client_stubs_and_has_none_of_its_own() -> None:
    # Two modules generated from one .proto would register it twice in protobuf's default pool.
    assert importlib.util.find_spec("hsmsvc.v1") is None
    from hsmsvc.api import server  # noqa: F401  (imports every servicer and so every stub)
    from hsmsvc_client.v1 import types_pb2
    assert types_pb2.KeyRef.__module__ == "hsmsvc_client.v1.types_pb2"
    assert types_pb2.DESCRIPTOR.name == "hsmsvc/v1/types.proto" and types_pb2.DESCRIPTOR.package == "hsmsvc.v1"


def _hsmsvc(d: Path, *args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "hsmsvc", *args], capture_output=True, text=True, timeout=60,
                       cwd=d, env={**os.environ, PASS_ENV: "client-install-test-passphrase"})
    assert r.returncode == 0, r.stdout + r.stderr


@contextmanager
def _make_run(d: Path) -> Iterator[str]:
    """What ``make run`` does (a development LMK, the demo keys, a plaintext server), on a free port."""
    base = ("--sealed", str(d / "lmk.sealed"), "--passphrase-env", PASS_ENV)
    store = ("--store", f"sqlite:///{d / 'keys.db'}")
    _hsmsvc(d, "lmk", "init", *base, "--scrypt-log2-n", "14")
    _hsmsvc(d, "dev", "seed", *base, *store)
    ready = d / "ready.json"
    with open(d / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hsmsvc", "serve", "--insecure-dev", *base, *store,
                                 "--listen", "127.0.0.1:0", "--metrics-listen", "", "--ready-file", str(ready)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=d,
                                env={**os.environ, PASS_ENV: "client-install-test-passphrase"})
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, (d / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield f"127.0.0.1:{json.loads(ready.read_text())['port']}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, (d / "server.log").read_text()[-3000:]


def test_the_readme_example_runs_on_the_client_alone(client_env: ClientEnv, tmp_path: Path) -> None:
    # The README's own text: the program fed to python, then the answers it shows as comments.
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<<'PY'\n(.*?\n)PY\n((?:# \S+\n)+)", readme, re.S)
    assert m, "README: the client example (python - <<'PY' ... PY, then # answers) is gone"
    program, answers = m.group(1), [line[2:] for line in m.group(2).splitlines()]
    assert "127.0.0.1:8443" in program and "from hsmsvc_client import" in program
    with _make_run(tmp_path) as address:
        # The fresh environment's python, outside the checkout: only the installed wheel is importable.
        r = _run(client_env.python, "-", stdin=program.replace("127.0.0.1:8443", address), cwd=tmp_path,
                 timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == answers
