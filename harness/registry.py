"""The catalog: every name a spec may use (models, datasets, presets) and a spec's `imports:`, one registry per
kind of name, looked up without importing torch or timm.

Each registry is filled by one decorator, for the harness's own entries and a lab's alike (like timm's
`@register_model`), and a look-up of an unknown name lists the valid ones:

- **datasets**: `@register_dataset("name")` on a builder `builder(config) -> DataSplits`. The built-in datasets
  are registered below by builders that import the trainer (and torch) only when a run builds its data;
  a lab's module registers its own the same way (example below).
- **models**: timm's registry. The harness's tiny 32-px models are data here (`MODELS`: their names and
  shapes), built and registered in timm by `harness.trainer.tiny_models`; a lab's module registers its own
  with timm's `@register_model`. timm's own names are read from a list cached once per timm version, so
  that validating a spec does not cost a command the seconds that importing timm and torch take.
- **presets**: the rows of the DeiT paper's Table 8, each a set of config overrides (`PRESETS`). A spec
  variant names them (`presets: [no_mixup]`); expansion merges their overrides before the variant's own
  `set`, so the resolved config holds the values, not the names.
- **imports**: `import_modules` imports the modules a spec lists under `imports:` (so that what they register
  is known like the built-in names) and remembers each one's source files and their SHA-256, which
  `harness.provenance` records with every run.

A lab's dataset, in a module a spec lists under `imports:` (the harness imports it when it validates the spec
and in every job before building anything):

    # mylab/data.py
    import torch
    from harness.registry import register_dataset
    from harness.trainer.datasets import DataSplits, InMemoryImages

    @register_dataset("blobs")
    def blobs(config):
        g = torch.Generator().manual_seed(config.data.split_seed)
        size = config.data.img_size

        def split(n):  # uint8 images (N, 3, H, W) and int64 targets, augmented by the trainer a batch at a time
            targets = torch.randint(0, 4, (n,), generator=g)
            images = (targets * 60).view(n, 1, 1, 1).expand(n, 3, size, size).to(torch.uint8)
            return InMemoryImages(images.contiguous(), targets)

        return DataSplits(train=split(400), val=split(100), num_classes=4, in_memory=True)

A dataset that decodes files instead returns `torch.utils.data.Dataset`s of normalised tensors (for example
torchvision's `ImageFolder` with `harness.trainer.transforms`) and `in_memory=False`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """A name no registry of its kind holds; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """One kind of name: name -> entry, filled by `register` (a decorator) or `add`."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or kind + "s"
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        # registering one name twice keeps the last entry, so that a module imported again (as a job does) is
        # no error
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator: registers what it decorates as `name`."""
        return lambda entry: self.add(name, entry)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} '{name}'; known {self.plural}: {', '.join(self.names())}") \
                from None

    __getitem__ = get

    def check(self, name: str) -> str:
        self.get(name)
        return name


# ---------------------------------------------------------------------------------------------------------------
# datasets: name -> builder(config) -> harness.trainer.datasets.DataSplits

DATASETS: Registry[Callable[[Any], Any]] = Registry("dataset")
register_dataset = DATASETS.register


def _in_trainer(builder: str) -> Callable[[Any], Any]:
    """A built-in dataset's builder in `harness.trainer.datasets`, imported (with torch) only when a run builds
    its data."""
    def build(config: Any) -> Any:
        from harness.trainer import datasets

        return getattr(datasets, builder)(config)

    return build


for _name in ("digits", "fashion_mnist", "imagefolder", "synthetic"):
    register_dataset(_name)(_in_trainer(f"build_{_name}"))


def dataset_names() -> list[str]:
    return DATASETS.names()


def check_dataset(name: str) -> str:
    return DATASETS.check(name)


# ---------------------------------------------------------------------------------------------------------------
# presets: name -> config overrides (Table 8's rows)

PRESETS: Registry[dict[str, Any]] = Registry("preset")
_TABLE_8: dict[str, dict[str, Any]] = {
    "no_randaug": {"augment.auto_augment": None},
    "autoaug": {"augment.auto_augment": "original"},
    "no_mixup": {"augment.mixup": 0.0},
    "no_cutmix": {"augment.cutmix": 0.0},
    "no_mixup_cutmix": {"augment.mixup": 0.0, "augment.cutmix": 0.0},
    "no_erasing": {"augment.random_erasing": 0.0},
    "no_stoch_depth": {"model.drop_path": 0.0},
    "no_repeated_aug": {"augment.repeated_aug": False},
    "dropout": {"model.dropout": 0.1},
    "ema": {"ema.enabled": True},
    # SGD with the usual momentum and a learning rate scaled like AdamW's (0.1 for batch 1024)
    "sgd_pretrain": {"optimizer.name": "sgd", "optimizer.base_lr": 0.05, "optimizer.weight_decay": 1e-4},
    "sgd_finetune": {"optimizer.name": "sgd", "optimizer.base_lr": 0.005, "optimizer.weight_decay": 0.0},
    # the paper's fine-tuning at a higher resolution, as the reference repository's fine-tuning command runs it
    # (its ↑384 rows: 30 epochs, lr 5e-6 at batch 512 held constant by min-lr 5e-6 after the default 5 warm-up
    # epochs from 1e-6, weight decay 1e-8). The one home of this recipe: specs name the preset and pair it with
    # a fine-tune source and data.img_size
    "finetune": {
        "batch_size": 512,
        "schedule.epochs": 30,
        "schedule.warmup_epochs": 5,
        "schedule.warmup_lr": 1e-6,
        "schedule.min_lr": 5e-6,
        "optimizer.base_lr": 5e-6,
        "optimizer.weight_decay": 1e-8,
    },
}
for _name, _overrides in _TABLE_8.items():
    PRESETS.add(_name, _overrides)


def preset_overrides(name: str) -> dict[str, Any]:
    return PRESETS.get(name)


# ---------------------------------------------------------------------------------------------------------------
# models: the harness's tiny 32-px models as data (names follow timm's `_patch` -> `_distilled_patch` twin rule;
# `reports/models.yaml` files each under the paper model it stands in for, and a test checks it names these)


@dataclass(frozen=True)
class TinyViT:
    """A DeiT-style ViT for 32-pixel images (timm's VisionTransformer, or its distillation-token twin)."""

    embed_dim: int
    depth: int
    num_heads: int
    # pixels per patch side: 4 gives an 8x8 token grid at 32 px
    patch_size: int = 4
    # the distillation-token twin (timm's VisionTransformerDistilled)
    distilled: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TinyConvNet:
    """Conv-BN-ReLU stages and a linear classifier: a fast teacher for 32-pixel images."""

    # channels of the stem and of each stride-2 stage
    widths: tuple[int, ...] = (32, 64, 128, 256)
    doc: str = ""


MODELS: Registry[TinyViT | TinyConvNet] = Registry("model")
_TINY: dict[str, Any] = dict(embed_dim=192, depth=4, num_heads=3)
_SMALL: dict[str, Any] = dict(embed_dim=384, depth=6, num_heads=6)
MODELS.add("deit_tiny_patch4_32", TinyViT(**_TINY, doc="DeiT-Ti width (dim 192, 3 heads), patch 4, 4 blocks, 32 px."))
MODELS.add("deit_tiny_distilled_patch4_32",
           TinyViT(**_TINY, distilled=True, doc="The distillation-token twin of deit_tiny_patch4_32."))
MODELS.add("deit_small_patch4_32",
           TinyViT(**_SMALL, doc="DeiT-S width (dim 384, 6 heads), patch 4, 6 blocks, 32 px."))
MODELS.add("deit_small_distilled_patch4_32",
           TinyViT(**_SMALL, distilled=True, doc="The distillation-token twin of deit_small_patch4_32."))
MODELS.add("resnet_tiny_32",
           TinyConvNet(doc="A small convnet for 32-px images: ~98% on digits in about 20 s on 2 cores."))


def is_tiny_vit(name: str) -> bool:
    return name in MODELS and isinstance(MODELS.get(name), TinyViT)


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
    if architecture in MODELS or architecture in timm_model_names() or _registered_in_timm(architecture):
        return name
    known = sorted(timm_model_names() | set(MODELS) | _lab_models())
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
