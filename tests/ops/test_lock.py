"""requirements/test.lock: every requirement of the two distributions (the server's with its test
extra, the client's) pinned there to a version that satisfies it, each pin with its hashes, and
the lock regenerated whenever a requirement changes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "test.lock"
LOCAL = {"hsmsvc", "hsmsvc-client"}


def _pins() -> dict[str, list[tuple[str, Marker | None, int]]]:
    """Each locked name: its (version, marker, number of hashes) entries (a name may fork by Python version)."""
    pins: dict[str, list[tuple[str, Marker | None, int]]] = {}
    for entry in re.split(r"\n(?=\S)", LOCK.read_text()):
        head = entry.split(" \\", 1)[0]
        if not head or head.startswith("#"):
            continue
        req = Requirement(head)
        (spec,) = req.specifier
        assert spec.operator == "==", head
        pins.setdefault(canonicalize_name(req.name), []).append(
            (spec.version, req.marker, entry.count("--hash=sha256:")))
    return pins


def _requirements() -> list[Requirement]:
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    client = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in (*server["dependencies"], *server["optional-dependencies"]["test"],
                                     *client["dependencies"])]


def test_every_pin_carries_hashes_and_the_command_that_made_it() -> None:
    text = LOCK.read_text()
    assert "uv pip compile requirements/test.in" in text.split("\n", 2)[1] and "--generate-hashes" in text
    pins = _pins()
    assert not LOCAL & set(pins), "the local packages install from the checkout, not the lock"
    assert all(n > 0 for entries in pins.values() for _, _, n in entries)
    assert {"pip", "setuptools"} <= set(pins), "make builds the local packages with the locked setuptools"


def test_every_requirement_is_locked_at_a_version_it_accepts() -> None:
    pins, missing = _pins(), []
    for python in ("3.11", "3.12", "3.13"):
        env = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
               "platform_python_implementation": "CPython", "extra": ""}
        for req in _requirements():
            name = canonicalize_name(req.name)
            if name in LOCAL or (req.marker and not req.marker.evaluate(env)):
                continue
            versions = [v for v, marker, _ in pins.get(name, []) if marker is None or marker.evaluate(env)]
            if len(versions) != 1 or not req.specifier.contains(versions[0], prereleases=True):
                missing.append(f"{req} on Python {python}: locked {versions or 'nowhere'}")
    assert not missing, "regenerate requirements/test.lock (command at its top):\n" + "\n".join(missing)
