"""A local Hugging Face hub cache for tests: timm weights stored the way huggingface_hub stores a download
(blobs named by hash, a snapshot folder linking to them, refs/main naming the snapshot), so the real loading
path runs offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


def add_weights(cache: Path, tag: str, state: dict) -> Path:
    """Store `state` as timm's `timm/<tag>` repository in the hub cache; returns the snapshot's file."""
    from safetensors.torch import save_file

    repo = cache / f"models--timm--{tag}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    tmp = repo / "blobs" / "incoming"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    blob = repo / "blobs" / hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.rename(blob)
    commit = hashlib.sha1(tag.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "model.safetensors").symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot / "model.safetensors"


def timm_weights(tag: str) -> dict:
    """Freshly initialised weights of a tag's architecture, as timm builds it for that tag (1,000 classes)."""
    import timm

    return timm.create_model(tag, pretrained=False).state_dict()


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache that the harness and huggingface_hub use for this test, offline."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
