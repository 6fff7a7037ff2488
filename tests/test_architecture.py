"""The import rules of ARCHITECTURE.md, read from the source: which package may import which; and its module
table, which names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "harness"
ARCHITECTURE = HARNESS.parent / "ARCHITECTURE.md"

# package -> prefixes of modules it must never import (at the top of a file or inside a function)
FORBIDDEN = {
    "spec": ("harness.store", "harness.launch", "harness.trainer", "harness.report", "harness.cli", "torch", "timm",
             "sqlalchemy"),
    # nor the top-level modules that load the catalog or the pandas face (the store sits below them)
    "store": ("harness.launch", "harness.trainer", "harness.report", "harness.cli", "harness.spec", "torch", "timm",
              "harness.provenance", "harness.registry", "harness.weights", "harness.results"),
    "trainer": ("harness.store", "harness.launch", "harness.report", "harness.cli", "harness.spec", "sqlalchemy"),
    "report": ("harness.launch", "harness.trainer", "harness.cli", "torch", "timm"),
    # launch asks the store through its typed methods: it builds no filter nodes (harness.store.where)
    "launch": ("harness.report", "harness.cli", "harness.store.where"),
    # an export reads the store through its functions, like the report
    "export": ("harness.launch", "harness.trainer", "harness.cli", "harness.spec", "torch", "timm"),
}
# the top-level modules of harness/ (a file name -> prefixes it must never import). Most sit below every package
# (the text helpers, dotted keys, paths, states and the config import no package at all); the catalog, provenance
# and weights sit beside the spec (torch-free: the trainer, the spec and the launch import them); results is the
# pandas face of the store, and imports nothing above it
PACKAGES = ("harness.spec", "harness.store", "harness.launch", "harness.trainer", "harness.report", "harness.cli",
            "harness.export")
HEAVY = ("torch", "timm", "torchvision", "sqlalchemy", "pandas", "matplotlib")
TOP_LEVEL = {
    "words.py": ("harness.",) + HEAVY,
    "dotted.py": ("harness.",) + HEAVY,
    "paths.py": ("harness.",) + HEAVY,
    "states.py": ("harness.",) + HEAVY,
    "config.py": ("harness.",) + HEAVY,
    "registry.py": tuple(p for p in PACKAGES if p != "harness.trainer") + (
        "harness.provenance", "harness.weights", "harness.results", "sqlalchemy", "pandas", "matplotlib"),
    "provenance.py": PACKAGES + HEAVY + ("harness.weights", "harness.results"),
    "weights.py": PACKAGES[1:] + HEAVY + ("harness.provenance", "harness.registry", "harness.results"),
    # `harness plan` joins a table's comparisons (report) with the cost of runs (launch): above both, below the CLI
    "plan.py": ("harness.trainer", "harness.cli", "harness.store", "torch", "timm"),
    "results.py": ("harness.spec", "harness.launch", "harness.trainer", "harness.report", "harness.cli",
                   "harness.export", "torch", "timm", "harness.registry", "harness.provenance", "harness.weights"),
}
# ... and what a top-level module may import only inside a function, deferred until a caller needs it: the
# catalog's built-in datasets build with the trainer (torch); the trainer imports weights, which reads a spec
# file only for `harness weights fetch`
DEFERRED = {
    "registry.py": ("harness.trainer", "torch", "timm"),
    "weights.py": ("harness.spec",),
}


def test_every_top_level_module_has_its_rule():
    actual = {p.name for p in HARNESS.glob("*.py") if not p.name.startswith("__")}
    assert sorted(actual ^ set(TOP_LEVEL)) == []


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_a_top_level_module_imports_only_what_its_place_allows(name):
    path = HARNESS / name
    broken = [f"harness/{name}:{line} imports {module}" for line, module in imports(path)
              if module.startswith(TOP_LEVEL[name]) and module != name.removesuffix(".py")]
    broken += [f"harness/{name}:{line} imports {module} when it is imported" for line, module in module_imports(path)
               if module.startswith(DEFERRED.get(name, ()))]
    assert broken == []


def module_imports(path: Path, package: str = "harness") -> list[tuple[int, str]]:
    """The imports a module runs when it is imported (at its top level, in an `if` or `try` there), not those
    inside a function or class."""
    inside = {(line, name) for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
              for line, name in _imports_in(node, package)}
    return [found for found in imports(path, package) if found not in inside]


def _imports_in(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node.module, node.level, package)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def test_module_imports_leave_out_those_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\ntry:\n    import torch\nexcept ImportError:\n    pass\n\n"
                      "def late():\n    import timm\n\nclass A:\n    import pandas\n")
    assert [name for _, name in module_imports(sample)] == ["os", "torch"]


# outside the store, SQLAlchemy only parses URLs and names its exceptions: no engines, sessions or queries
SQL_OUTSIDE_STORE = ("sqlalchemy.engine", "sqlalchemy.exc")


def imports(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, however it is spelled: `import a.b as c`, `from a import b`
    (both `a` and `a.b`: b may be a module), and relative imports resolved against the file's `package` (by
    default, where the file sits under harness/)."""
    package = package if package is not None else package_of(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node.module, node.level, package)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def package_of(path: Path) -> str:
    """The dotted package a file of harness/ belongs to (an __init__.py: its own package)."""
    parts = path.resolve().relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1])


def resolve(module: str | None, level: int, package: str) -> str:
    """The absolute name of `from <dots><module> import ...` written in `package`."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    if level - 1 >= len(parts):
        raise ValueError(f"a relative import of level {level} leaves the package {package}")
    base = parts[:len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def modules(package: str | None = None) -> list[Path]:
    root = HARNESS / package if package else HARNESS
    return sorted(p for p in root.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_its_layer_allows(package):
    broken = [f"{path.relative_to(HARNESS.parent)}:{line} imports {name}"
              for path in modules(package) for line, name in imports(path)
              if name.startswith(FORBIDDEN[package])]
    assert broken == []


# the trainer's entry points for code outside it: `train` (harness.trainer), a step to time and the builders of a
# run's models for the memory plan (trainer.probe)
TRAINER_ENTRY_POINTS = ("harness.trainer", "harness.trainer.probe", "harness.trainer.RunStopped",
                        "harness.trainer.train", "harness.trainer.probe.training_step",
                        "harness.trainer.probe.create_model", "harness.trainer.probe.student_name")


def test_launch_reaches_the_trainer_only_through_its_entry_points():
    broken = [f"{path.relative_to(HARNESS.parent)}:{line} imports {name}"
              for path in modules("launch") for line, name in imports(path)
              if name.startswith("harness.trainer") and name not in TRAINER_ENTRY_POINTS]
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
    assert (4, "harness.store") in imports(sample, "x")


# each spelling of "the spec package imports the store", and what the rule sees of it
SPELLINGS = {
    "from harness import store\n": "harness.store",
    "from ..store import open_store\n": "harness.store",
    "from ..store.store import Store\n": "harness.store.store",
    "from .. import store\n": "harness.store",
    "import harness.store.claims as claims\n": "harness.store.claims",
    "def late():\n    from .. import trainer\n": "harness.trainer",
}


@pytest.mark.parametrize("source", sorted(SPELLINGS))
def test_the_rules_see_every_spelling_of_an_import(tmp_path, source):
    """A synthetic module of harness.spec: each spelling is seen as the module it names, and the spec rule
    refuses it."""
    sample = tmp_path / "sample.py"
    sample.write_text(source)
    names = [name for _, name in imports(sample, "harness.spec")]
    assert SPELLINGS[source] in names, names
    assert any(name.startswith(FORBIDDEN["spec"]) for name in names)


def test_relative_imports_resolve_against_the_files_package():
    assert resolve(None, 1, "harness.launch") == "harness.launch"  # from . import y
    assert resolve("logs", 1, "harness.launch") == "harness.launch.logs"
    assert resolve("store", 2, "harness.launch") == "harness.store"
    assert package_of(HARNESS / "launch" / "job.py") == "harness.launch"
    assert package_of(HARNESS / "launch" / "__init__.py") == "harness.launch"
    with pytest.raises(ValueError):
        resolve("x", 3, "harness")


def documented_modules() -> set[str]:
    """Every module ARCHITECTURE.md's table names, as a path under harness/ ("launch/job.py", "weights.py")."""
    named = set()
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`harness/"):
            continue
        where = cells[0].strip("`")
        if where.endswith("/"):  # a package: its modules are the second cell's backquoted names, outside brackets
            named |= {where.removeprefix("harness/") + name + ".py"
                      for name in re.findall(r"`([a-z_0-9]+)`", re.sub(r"\([^)]*\)", "", cells[1]))}
        else:  # top-level modules, listed in the first cell
            named |= {name.removeprefix("harness/") for name in re.findall(r"`([a-z_/0-9]+\.py)`", cells[0])}
    return named


def test_the_module_table_names_every_module():
    actual = {str(p.relative_to(HARNESS)) for p in modules() if not p.name.startswith("__")}
    assert sorted(actual - documented_modules()) == [], "modules the table of ARCHITECTURE.md does not name"
    assert sorted(documented_modules() - actual) == [], "modules the table of ARCHITECTURE.md names that are gone"


# string constants that equal a state's name but are no run state, each with why (path under harness/ -> values)
NOT_STATES: dict[str, dict[str, str]] = {}


def bare_states(path: Path) -> list[tuple[int, str]]:
    """Where a module spells a run state as a bare string instead of naming it through harness/states.py."""
    from harness.states import STATUSES

    return [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATUSES]


def test_states_are_named_only_through_the_states_module():
    """`RunState` members and the named sets of harness/states.py, never "failed" spelled again: a renamed or
    regrouped state then changes in one place. The migrations (frozen history) keep their own strings."""
    broken = [f"{path.relative_to(HARNESS.parent)}:{line} spells the state '{value}'"
              for path in modules() if path != HARNESS / "states.py"
              for line, value in bare_states(path)
              if value not in NOT_STATES.get(str(path.relative_to(HARNESS)), {})]
    assert broken == []


def test_the_state_rule_sees_every_spelling(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""running: a docstring is prose."""\nA = "failed"\nB = {\'queued\': 1}\n'
                      'def f(s="cancelled"):\n    return s in ("pending", "done")\n')
    assert sorted(bare_states(sample)) == [(2, "failed"), (3, "queued"), (4, "cancelled"), (5, "pending")]
