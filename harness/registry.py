"""Name look-ups shared by spec validation and the trainer: models, teachers, datasets.

Models are timm's registry plus the harness's tiny 32-px models (`harness/tiny_models.py`, which
`harness/models.py` registers in timm); datasets are the trainer's dataset registry
(`harness/trainer/datasets.py`). Each look-up fails with the valid names. Validating a spec must not cost a
`harness` command the seconds that importing timm and torch take, so the names are known here without
importing either: the harness's own from their data table, the datasets as constants (a test keeps them in
step with the registry), timm's from a list cached once per timm version.

A lab's own models and datasets come from the modules a spec lists under `imports:`: `import_modules` imports
them (and remembers each one's source files and their SHA-256, which `harness.provenance` records with every
run); a model they register with timm's `@register_model`, or a dataset with `harness.datasets.register`, is
then a known name like the built-in ones.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import os
import sys
from pathlib import Path
from typing import Iterable

from harness import datasets
from harness.tiny_models import TINY_MODELS

# the models harness/models.py registers in timm
HARNESS_MODELS = tuple(TINY_MODELS)
# the keys of harness.trainer.datasets.DATASETS
DATASET_NAMES = ("digits", "fashion_mnist", "imagefolder", "synthetic")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deit-harness"


def timm_model_names() -> frozenset[str]:
    """Every model name timm registers, read from a per-version cache that the first call writes."""
    version = importlib.metadata.version("timm")
    # "timm-only": timm's own models, never those a lab's module registered in the process that wrote the cache
    cache = _cache_dir() / f"timm-{version}-timm-only-models.txt"
    try:
        return frozenset(cache.read_text().split())
    except OSError:
        pass
    import timm

    names = sorted(name for name in timm.list_models()
                   if timm.models.model_entrypoint(name).__module__.startswith("timm."))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text("\n".join(names) + "\n")
        partial.replace(cache)
    except OSError:  # a read-only home only costs the next call the import
        pass
    return frozenset(names)


# module name -> {source file: SHA-256} of each module `import_modules` imported in this process
_IMPORTED: dict[str, dict[str, str]] = {}


class ImportFailed(ImportError):
    """A module of a spec's `imports:` that cannot be imported; the message is one line naming it."""


def import_modules(names: Iterable[str]) -> None:
    """Import a lab's own modules by name (they register models and datasets as they are imported)."""
    for name in names:
        if name in _IMPORTED:
            continue
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any error inside the lab's module is its author's to read, in one line
            lines = str(exc).strip().splitlines()
            hint = " (is it installed, or on PYTHONPATH?)" if isinstance(exc, ModuleNotFoundError) else ""
            raise ImportFailed(f"cannot import '{name}': {type(exc).__name__}: "
                               f"{lines[0] if lines else ''}{hint}") from None
        _IMPORTED[name] = _sources(module.__name__)


def imported() -> dict[str, dict[str, str]]:
    """The modules imported through `import_modules` in this process, each with its source files' SHA-256."""
    return {name: dict(files) for name, files in _IMPORTED.items()}


def _sources(name: str) -> dict[str, str]:
    """{file: SHA-256} of the module and of every submodule of it loaded now (a package's own modules)."""
    out = {}
    for module_name, module in sorted(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (module_name == name or module_name.startswith(name + ".")):
            try:
                out[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                pass
    return out


def _lab_models() -> set[str]:
    """Models registered in timm by a lab's modules imported here (none before any is imported)."""
    timm = sys.modules.get("timm")
    if not _IMPORTED or timm is None:
        return set()
    return {name for name in timm.list_models()
            if not timm.models.model_entrypoint(name).__module__.startswith(("timm.", "harness."))}


def _registered_in_timm(architecture: str) -> bool:
    """A model a lab's module registered with timm's `@register_model` (timm is imported by then)."""
    timm = sys.modules.get("timm")
    return bool(_IMPORTED) and timm is not None and bool(timm.is_model(architecture))


def check_model(name: str) -> str:
    # a pretrained tag (deit_base_patch16_224.fb_in1k) names weights, not another architecture
    architecture = name.split(".", 1)[0]
    if architecture in HARNESS_MODELS or architecture in timm_model_names() or _registered_in_timm(architecture):
        return name
    known = sorted(timm_model_names() | set(HARNESS_MODELS) | _lab_models())
    close = difflib.get_close_matches(architecture, known, n=5)
    hint = f"; did you mean: {', '.join(close)}" if close else "; see timm.list_models()"
    raise KeyError(f"unknown model '{name}'{hint}")


def twin_name(name: str) -> str | None:
    """The name of a DeiT-style model's distillation-token twin (deit_tiny_patch16_224 ->
    deit_tiny_distilled_patch16_224; a twin is its own), unchecked; None for a name without '_patch'."""
    if "_distilled_" in name:
        return name
    twin = name.replace("_patch", "_distilled_patch", 1)
    return None if twin == name else twin


def distilled_twin(name: str) -> str:
    """The distillation-token twin of a DeiT-style model name, checked against the known models."""
    twin = twin_name(name)
    if twin is None:
        raise KeyError(f"model '{name}' has no distillation-token twin (only DeiT-style '_patch' models have one)")
    if twin == name:
        return check_model(name)
    try:
        return check_model(twin)
    except KeyError:
        raise KeyError(f"model '{name}' has no distillation-token twin (looked for '{twin}')") from None


def dataset_names() -> list[str]:
    return sorted(set(DATASET_NAMES) | set(datasets.REGISTERED))


def check_dataset(name: str) -> str:
    if name not in DATASET_NAMES and name not in datasets.REGISTERED:
        raise KeyError(f"unknown dataset '{name}'; known datasets: {', '.join(dataset_names())}")
    return name
