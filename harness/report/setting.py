"""What a table's runs actually were, when they stand in for the paper's setting.

The paper trains timm's models on image folders (ImageNet, and the transfer sets of Table 7) at the resolution
of each cell (`TableDef.paper_img_size`). A run stands in for that setting when it belongs to a profile, reads
an in-memory dataset (digits, Fashion-MNIST, synthetic), uses one of the harness's tiny models as its model or
teacher (`harness.registry.MODELS`), or trains at another resolution than its cell's. A table that shows any such
run says so first in its caption, with the datasets, resolutions, epochs, models and teachers its runs used,
read from their stored configs: a "Ti 224" column filled with 16-px digits runs must not pass for the paper's.
"""

from __future__ import annotations

from typing import Any, Iterable

from harness import dotted
from harness.registry import MODELS, twin_name

# the dataset registry's name for real image datasets, read from class folders: what the paper trains on
IMAGE_FOLDER = "imagefolder"


def _get(run: Any, key: str) -> Any:
    return dotted.get(run.config or {}, key)


def teacher(run: Any) -> str | None:
    """The teacher model a run distils from (None without distillation)."""
    if _get(run, "distillation.kind") in (None, "none"):
        return None
    return _get(run, "distillation.teacher.model")


def stands_in(run: Any, img_size: int | None) -> bool:
    """Whether `run` is not the paper's setting for a cell whose paper resolution is `img_size` (None: any).
    What its config does not record (an imported result's often) is not held against it."""
    if run.profile is not None:
        return True
    dataset = _get(run, "data.name")
    if dataset is not None and dataset != IMAGE_FOLDER:
        return True
    if _get(run, "model.name") in MODELS or teacher(run) in MODELS:
        return True
    size = _get(run, "data.img_size")
    return img_size is not None and size is not None and size != img_size


def caption(cells: Iterable[tuple[Any, int | None]]) -> str | None:
    """The sentence a table's caption starts with when any of its (run, paper resolution of the run's cell)
    stands in for the paper's setting; None when every run is the paper's setting."""
    pairs = list(cells)
    if not any(stands_in(run, size) for run, size in pairs):
        return None
    runs = list({run.hash: run for run, _ in pairs}.values())
    return f"Stand-ins for the paper's setting: the runs shown used {describe(runs)}."


def describe(runs: list[Any]) -> str:
    """'digits at 16 px, 24 epochs; model deit_tiny_patch4_32; teacher resnet_tiny_32', from the runs' configs."""
    data = ", ".join(_distinct(_dataset(r) for r in runs)) or "datasets not recorded"
    sizes = _distinct(_get(r, "data.img_size") for r in runs)
    if sizes:
        data += f" at {', '.join(sizes)} px"
    epochs = _distinct(_get(r, "schedule.epochs") for r in runs)
    if epochs:
        data += f", {', '.join(epochs)} epochs"
    parts = [data]
    for name, values in (("model", _distinct(_model(r) for r in runs)), ("teacher", _distinct(map(teacher, runs)))):
        if values:
            parts.append(f"{name}{'s' if len(values) > 1 else ''} {', '.join(values)}")
    return "; ".join(parts)


def _dataset(run: Any) -> str | None:
    name = _get(run, "data.name")
    if name is None:
        return None
    text = f"{name} {_get(run, 'data.root')}" if name == IMAGE_FOLDER and _get(run, "data.root") else str(name)
    subset = _get(run, "data.train_subset")
    return f"{text} ({subset} training images)" if subset else text


def _model(run: Any) -> str | None:
    """The model a run trained: with `model.distillation_token`, its name's distillation-token twin."""
    name = _get(run, "model.name")
    if name is None or not _get(run, "model.distillation_token"):
        return name
    return twin_name(str(name)) or f"{name} with a distillation token"


def _distinct(values: Iterable[Any]) -> list[str]:
    """The values that are set, once each, as text; numbers in numeric order, before any text."""
    known = {v for v in values if v is not None}
    numbers = sorted(v for v in known if isinstance(v, (int, float)) and not isinstance(v, bool))
    return [str(v) for v in numbers] + sorted(str(v) for v in known if v not in numbers)
