"""The import rules of ARCHITECTURE.md, read from the source: which package may import which."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "harness"

# package -> prefixes of modules it must never import (at the top of a file or inside a function)
FORBIDDEN = {
    "spec": ("harness.store", "harness.launch", "harness.trainer", "harness.report", "harness.cli", "torch", "timm",
             "sqlalchemy"),
    "store": ("harness.launch", "harness.trainer", "harness.report", "harness.cli", "harness.spec", "torch", "timm"),
    "trainer": ("harness.store", "harness.launch", "harness.report", "harness.cli", "harness.spec", "sqlalchemy"),
    "report": ("harness.launch", "harness.trainer", "harness.cli", "harness.models", "torch", "timm"),
    "launch": ("harness.report", "harness.cli"),
    # an export reads the store through its functions, like the report
    "export": ("harness.launch", "harness.trainer", "harness.cli", "harness.spec", "harness.models", "torch", "timm"),
}
# outside the store, SQLAlchemy only parses URLs and names its exceptions: no engines, sessions or queries
SQL_OUTSIDE_STORE = ("sqlalchemy.engine", "sqlalchemy.exc")


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def modules(package: str | None = None) -> list[Path]:
    root = HARNESS / package if package else HARNESS
    return sorted(p for p in root.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_its_layer_allows(package):
    broken = [f"{path.relative_to(HARNESS.parent)}:{line} imports {name}"
              for path in modules(package) for line, name in imports(path)
              if name.startswith(FORBIDDEN[package])]
    assert broken == []


def test_only_the_store_speaks_sql():
    broken = [f"{path.relative_to(HARNESS.parent)}:{line} imports {name}"
              for path in modules() if "store" not in path.relative_to(HARNESS).parts[:1]
              for line, name in imports(path)
              if name.startswith("sqlalchemy") and not name.startswith(SQL_OUTSIDE_STORE)]
    assert broken == []


def test_the_rules_see_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef late():\n    from harness.store import open_store\n")
    assert (4, "harness.store") in imports(sample)
