"""The harness's tiny 32-px models are in timm's registry, with distillation-token twins."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import timm
import torch

import harness.trainer.tiny_models  # noqa: F401
from harness.registry import check_model, distilled_twin

TWINS = [("deit_tiny_patch4_32", "deit_tiny_distilled_patch4_32"), ("deit_small_patch4_32", "deit_small_distilled_patch4_32")]


@pytest.mark.parametrize("name,twin", TWINS)
def test_twins_are_registered(name, twin):
    assert check_model(name) == name
    assert distilled_twin(name) == twin


def test_vit_and_twin_outputs():
    x = torch.randn(2, 3, 32, 32)
    vit = timm.create_model("deit_tiny_patch4_32", num_classes=7, drop_rate=0.1, drop_path_rate=0.1)
    assert vit(x).shape == (2, 7)
    assert vit.patch_embed.grid_size == (8, 8)
    twin = timm.create_model("deit_tiny_distilled_patch4_32", num_classes=7)
    twin.set_distilled_training(True)
    cls, dist = twin.train()(x)
    assert cls.shape == dist.shape == (2, 7)
    assert twin.eval()(x).shape == (2, 7)


def test_img_size_changes_the_token_grid():
    vit = timm.create_model("deit_tiny_patch4_32", img_size=48)
    assert vit.pos_embed.shape == (1, 1 + 12 * 12, 192)


def test_convnet_teacher_takes_timm_kwargs():
    net = timm.create_model("resnet_tiny_32", num_classes=10, drop_rate=0.1, drop_path_rate=0.1, img_size=32)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net(torch.randn(2, 3, 48, 48)).shape == (2, 10)
