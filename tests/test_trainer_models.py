"""Building the networks: which models take img_size, decided by family, not by trying."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import timm
import torch

from harness.trainer import models

torch.set_num_threads(1)


@pytest.mark.parametrize("name,vit", [
    ("deit_base_patch16_224", True), ("deit_base_distilled_patch16_384", True), ("vit_small_patch16_224", True),
    ("deit_tiny_patch4_32", True), ("deit_small_distilled_patch4_32", True), ("deit_base_patch16_224.fb_in1k", True),
    ("regnety_160", False), ("resnet50", False), ("resnet_tiny_32", False), ("test_resnet", False),
])
def test_vit_family(name, vit):
    assert models.is_vit(name) is vit


def test_img_size_goes_to_vits_only(monkeypatch):
    calls = []
    create = timm.create_model
    monkeypatch.setattr(models.timm, "create_model", lambda name, **kw: calls.append(kw) or create(name, **kw))
    vit = models.create_model("deit_tiny_patch4_32", 10, 48)
    assert calls[-1]["img_size"] == 48 and vit.patch_embed.grid_size == (12, 12)
    # timm's ResNet refuses img_size: it is never offered one (no retry on TypeError)
    net = models.create_model("test_resnet", 10, 48)
    assert "img_size" not in calls[-1] and net(torch.zeros(1, 3, 48, 48)).shape == (1, 10)
