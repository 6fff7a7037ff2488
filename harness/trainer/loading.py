"""Weights a run starts from: a teacher's, or a fine-tune's source, read from another run, a file, or timm's
published weights by pretrained tag (loaded through timm from the hub cache, `harness.weights`).

Every source becomes a `Weights`: the state dict, what it is, and the SHA-256 of the file it was read from
(recorded with the run, so its results name the exact weights). Another run's weights are only the file that
run published (`RunFiles`), read only when its SHA-256 is the one it was published with. Loading into a model interpolates the
absolute position embeddings bicubically when the token grid differs (fine-tuning at another resolution),
and leaves a classifier sized for other classes freshly initialised (transfer to another dataset).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, cast

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from harness import weights as named
from harness.weights import file_sha256
from harness.config import FinetuneConfig, TeacherConfig
from harness.trainer.sink import EMA_MODEL, MODEL, PLAIN_NAMES, RunFile

# (run hash, role) -> the file of that role the run published (raises FileNotFoundError when there is none)
RunFiles = Callable[[str, str], RunFile]


def in_folders(run_dir: Callable[[str], Path]) -> RunFiles:
    """Runs trained outside a store (tests, notebooks): a run's weights are its folder's plain-named files."""
    return lambda run_hash, role: RunFile(run_dir(run_hash) / PLAIN_NAMES[role], None)


# the top-level modules that hold a classifier (ViT heads, convnet fc/classifier)
CLASSIFIERS = ("head", "head_dist", "fc", "classifier")


@dataclass(frozen=True)
class Weights:
    state: dict[str, torch.Tensor]
    # a file path, or a timm pretrained tag
    source: str
    sha256: str

    def describe(self, role: str) -> dict[str, str]:
        return {f"{role}_weights": self.source, f"{role}_weights_sha256": self.sha256}


# where a checkpoint keeps its weights, and its EMA weights (ours, the reference's, timm's)
_MODEL_KEYS = ("model", "state_dict", "model_ema")
_EMA_KEYS = ("ema", "model_ema", "state_dict_ema")


def load_state(path: Path, ema: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from a file: our model.pt, our checkpoint.pt, or a {'model': state_dict} checkpoint; with
    `ema`, the checkpoint's EMA weights."""
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in _EMA_KEYS if ema else _MODEL_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    if ema:
        raise KeyError(f"{path} holds no EMA weights (none of {', '.join(_EMA_KEYS)})")
    return state


def file_weights(path: Path, ema: bool = False, published: str | None = None) -> Weights:
    """The weights in `path`; with `published`, only when the file's SHA-256 is that one."""
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    digest = file_sha256(path)
    if published is not None and digest != published:
        raise ValueError(f"weights file {path} is not the one its run published: its SHA-256 is {digest}, "
                         f"the run published {published}")
    return Weights(load_state(path, ema), str(path), digest)


def run_weights(file: RunFile) -> Weights:
    return file_weights(file.path, published=file.sha256)


def pretrained_weights(tag: str) -> Weights:
    """timm's published weights: the file from the hub cache, loaded by timm (its own key conversions)."""
    path = named.fetch(tag)
    model = timm.create_model(tag, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    return Weights(model.state_dict(), tag, file_sha256(path))


def teacher_state(t: TeacherConfig, run_files: RunFiles) -> Weights:
    if t.pretrained:
        return pretrained_weights(t.pretrained)
    if t.run:
        return run_weights(run_files(t.run, MODEL))
    assert t.checkpoint is not None  # the config names exactly one source
    return file_weights(Path(t.checkpoint))


def finetune_state(f: FinetuneConfig, run_files: RunFiles) -> Weights:
    if f.pretrained:
        return pretrained_weights(f.pretrained)
    if f.from_run:
        try:
            file = run_files(f.from_run, EMA_MODEL if f.use_ema else MODEL)
        except FileNotFoundError as exc:
            if f.use_ema:
                raise FileNotFoundError(f"{exc}: finetune.use_ema needs a source run trained with ema.enabled") from None
            raise
        if f.use_ema and not file.path.exists():
            raise FileNotFoundError(f"{file.path} not found: finetune.use_ema needs a source run trained with "
                                    f"ema.enabled")
        return run_weights(file)
    assert f.checkpoint is not None  # the config names exactly one source
    return file_weights(Path(f.checkpoint), ema=f.use_ema)


def check_classes(state: dict[str, torch.Tensor], model: nn.Module, source: str) -> None:
    """A teacher's classifier must be the dataset's: a head for other classes would teach nonsense."""
    own = model.state_dict()
    for key, value in state.items():
        if key.split(".")[0] in CLASSIFIERS and key in own and own[key].shape != value.shape:
            raise ValueError(f"the teacher's weights ({source}) have a classifier {key} for {value.shape[0]} "
                             f"classes; the dataset has {own[key].shape[0]}")


def adapt_state(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Bicubic interpolation of the absolute position embeddings when the resolution (token grid) differs."""
    state = dict(state)
    if "pos_embed" in state and hasattr(model, "pos_embed"):
        old, new = state["pos_embed"], model.pos_embed
        if old.shape != new.shape:
            prefix = getattr(model, "num_prefix_tokens", 1)
            state["pos_embed"] = resample_abs_pos_embed(
                old, new_size=list(cast(Any, model).patch_embed.grid_size), num_prefix_tokens=prefix,
                interpolation="bicubic", antialias=False,
            )
    return state


def load_finetune_state(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load pre-trained weights for fine-tuning; a classifier sized for other classes (transfer to another
    dataset, the paper's Table 7) is left freshly initialised. Returns the keys left out."""
    own = model.state_dict()
    dropped = [k for k, v in state.items()
               if k.split(".")[0] in CLASSIFIERS and k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in dropped}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - set(dropped):
        raise RuntimeError(f"fine-tuning weights do not fit {type(model).__name__}: missing {sorted(missing)}, "
                           f"unexpected {sorted(unexpected)}")
    return dropped
