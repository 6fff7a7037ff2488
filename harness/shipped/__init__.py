"""What the package ships beside its code: the paper's table definitions and numbers, and the ablation specs.

The repository's top-level `reports/` and `ablations/` are their only copy; `setup.py` maps them into the package
as `harness.shipped.reports` and `harness.shipped.ablations`, so `importlib.resources` finds them in an installed
wheel, in an editable install and in a checkout alike, and `harness report` or `harness run distillation` work
from any folder.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from harness.spec.errors import SpecError

SPEC_SUFFIXES = (".yaml", ".yml")


def _folder(package: str) -> Path:
    found = files(package)
    # a wheel installs into a folder (never a zip: pip unpacks it), where a Traversable is a real Path; the spec
    # loader, the YAML reader and the store's recorded spec path all need one
    if not isinstance(found, Path):
        raise RuntimeError(f"{package} is not a folder on disk ({found!r}): install the harness unpacked")
    return found


def reports_dir() -> Path:
    """The table definitions (`tables/`), the paper's numbers (`paper/`) and the model aliases (`models.yaml`)."""
    return _folder("harness.shipped.reports")


def ablations_dir() -> Path:
    """The shipped ablation specs, one YAML file each."""
    return _folder("harness.shipped.ablations")


def spec_names() -> list[str]:
    """The shipped specs' names (their file names without `.yaml`), sorted."""
    return sorted(p.stem for p in ablations_dir().iterdir() if p.suffix in SPEC_SUFFIXES)


def spec_file(spec: str | Path) -> Path:
    """The file a spec argument names: a path as given, else a shipped spec's name (`distillation`).

    A file on disk wins over a shipped name, so a lab's own `distillation` file is never shadowed; a path that
    is not there comes back as it is, for the spec loader to report.
    """
    path = Path(spec)
    if path.exists() or path.suffix in SPEC_SUFFIXES or len(path.parts) > 1:
        return path
    shipped = ablations_dir() / f"{path.name}.yaml"
    if not shipped.is_file():
        raise SpecError(str(spec), None, f"no such spec file, nor a shipped spec of that name "
                                         f"(shipped: {', '.join(spec_names())})")
    return shipped
