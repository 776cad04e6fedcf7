"""No test module imports another: shared helpers live in helper modules (tests/reference.py,
tests/hsm/helpers.py, tests/api/*.py without the test_ prefix), so collecting, running or
changing one test module never drags in another's tests or fixtures."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative: resolve against the importing package
                pkg = path.parent.relative_to(TESTS.parent).parts
                base = ".".join((*pkg[: len(pkg) - node.level + 1], node.module))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def test_no_test_module_imports_another() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for name in _imported_modules(path):
            if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_"):
                offenders.append(f"{path.relative_to(TESTS.parent)} imports {name}")
    assert not offenders, "\n".join(offenders)
