"""The OCI image (deploy/image/build.sh): built from Debian packages and the wheel, with no registry,
then run by podman. Building takes minutes, so it runs only with HSMSVC_TEST_IMAGE=1 (as root, with
debootstrap, umoci and podman installed); docs/operations.md records a run's time and size."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hsmsvc_client import Client

ROOT = Path(__file__).resolve().parents[2]
REF = "localhost/hsmsvc:0.1.0"

pytestmark = pytest.mark.skipif(os.environ.get("HSMSVC_TEST_IMAGE") != "1",
                                reason="builds a Debian image for minutes: set HSMSVC_TEST_IMAGE=1 to run")


@dataclass(frozen=True)
class Built:
    layout: Path
    archive: Path


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Built:
    for tool in ("debootstrap", "umoci"):
        assert shutil.which(tool), f"{tool} missing: apt-get install -y debootstrap umoci"
    out = tmp_path_factory.mktemp("image")
    start = time.monotonic()
    r = subprocess.run([str(ROOT / "deploy/image/build.sh"), str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable}, timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    phases = [line for line in r.stdout.splitlines() if line.startswith("== [")]
    print("\n" + "\n".join(phases) + f"\nimage built in {time.monotonic() - start:.0f} s: {r.stdout.splitlines()[-1]}")
    return Built(out / "oci", out / "hsmsvc-oci.tar")


def _blob(layout: Path, digest: str) -> Any:
    algo, _, hexdigest = digest.partition(":")
    return json.loads((layout / "blobs" / algo / hexdigest).read_text())


def test_image_config_runs_hsmsvc_serve_as_a_non_root_user(image: Built) -> None:
    index = json.loads((image.layout / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == REF
    manifest = _blob(image.layout, entry["digest"])
    config = _blob(image.layout, manifest["config"]["digest"])["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/opt/hsmsvc/bin/hsmsvc"]
    assert config["Cmd"] == ["serve", "--config", "/etc/hsmsvc/hsmsvc.toml"]
    assert set(config["ExposedPorts"]) == {"8443/tcp", "9464/tcp"}
    assert image.archive.stat().st_size < 200 * 1024 * 1024
    print(f"archive {image.archive.stat().st_size / 1e6:.0f} MB")


def _podman_run_args() -> list[str]:
    """What this machine needs (docs/operations.md, "The container image"): runc, since crun refuses
    cgroups in hybrid mode, and limits at or below ours, since there is no CAP_SYS_RESOURCE to raise them."""
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [*runtime, "run", "--ulimit", f"nofile={soft}:{hard}", "--ulimit", "nproc=1000:1000"]


@pytest.fixture(scope="module")
def loaded(image: Built) -> Iterator[str]:
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman missing: apt-get install -y podman")
    r = subprocess.run([podman, "load", "-i", str(image.archive)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and f"Loaded image: {REF}" in r.stdout, r.stdout + r.stderr
    yield podman
    subprocess.run([podman, "rmi", "-f", REF], capture_output=True, timeout=120)


def test_podman_runs_the_server_read_only_and_it_drains_on_sigterm(loaded: str, tmp_path: Path) -> None:
    podman = loaded
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 10001, 10001)
    run = [podman, *_podman_run_args(), "--network", "host", "--read-only", "--tmpfs", "/tmp",
           "-v", f"{state}:/var/lib/hsmsvc", "-e", "HSMSVC_LMK_PASSPHRASE=image-test-passphrase"]
    lmk = ["--sealed", "/var/lib/hsmsvc/lmk.sealed", "--passphrase-env", "HSMSVC_LMK_PASSPHRASE"]
    store = ["--store", "sqlite:////var/lib/hsmsvc/keys.db"]
    for step in (["lmk", "init", *lmk], ["dev", "seed", "--insecure-dev", *lmk, *store]):
        r = subprocess.run([*run, "--rm", REF, *step], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    name = f"hsmsvc-test-{os.getpid()}"
    r = subprocess.run([*run, "-d", "--name", name, REF, "serve", "--insecure-dev", *lmk, *store,
                        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                        "--ready-file", "/var/lib/hsmsvc/ready.json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 120
        while not (state / "ready.json").exists():
            assert time.monotonic() < deadline, subprocess.run([podman, "logs", name], capture_output=True,
                                                               text=True).stderr
            time.sleep(0.2)
        port = json.loads((state / "ready.json").read_text())["port"]
        with Client.insecure(f"127.0.0.1:{port}") as c:
            pin = c.translate_pin("demo-zpk-a", "demo-zpk-b", bytes.fromhex("C03D21CDBCB0C58B"), pan="4012345678909")
        assert pin.hex() == "db4e8a3837546251"
        subprocess.run([podman, "stop", "-t", "20", name], capture_output=True, timeout=60, check=True)
        code = subprocess.run([podman, "inspect", name, "--format", "{{.State.ExitCode}}"],
                              capture_output=True, text=True, timeout=60).stdout.strip()
        assert code == "0"  # SIGTERM drained, not killed
    finally:
        subprocess.run([podman, "rm", "-f", name], capture_output=True, timeout=120)
