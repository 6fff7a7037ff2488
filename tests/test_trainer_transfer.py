"""Fine-tuning on a dataset with other classes (the paper's Table 7): the classifier starts afresh."""

from __future__ import annotations

import pytest
import torch

from harness.config import DataConfig, FinetuneConfig, ModelConfig, RunConfig
from harness.trainer.models import build_student, create_model


def test_transfer_keeps_the_backbone_and_replaces_the_classifier(tmp_path):
    source = create_model("deit_tiny_patch4_32", 10, 32)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    config = RunConfig(model=ModelConfig(name="deit_tiny_patch4_32"), data=DataConfig(name="digits", img_size=32),
                       finetune=FinetuneConfig(checkpoint=str(tmp_path / "model.pt")))
    student = build_student(config, 5, lambda other: tmp_path)
    assert student.head.out_features == 5
    assert torch.equal(student.patch_embed.proj.weight, source.patch_embed.proj.weight)
    assert torch.equal(student.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    # same classes: the classifier is kept too
    same = build_student(config, 10, lambda other: tmp_path)
    assert torch.equal(same.head.weight, source.head.weight)


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(create_model("resnet_tiny_32", 10, 32).state_dict(), tmp_path / "model.pt")
    config = RunConfig(model=ModelConfig(name="deit_tiny_patch4_32"), data=DataConfig(name="digits", img_size=32),
                       finetune=FinetuneConfig(checkpoint=str(tmp_path / "model.pt")))
    with pytest.raises(RuntimeError, match="do not fit"):
        build_student(config, 10, lambda other: tmp_path)
