"""Where a run's starting weights come from: published weights by tag (through timm, from a local hub cache),
the EMA weights of another run, and a teacher at its own resolution."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from harness.config import RunConfig
from harness.trainer import models
from harness.trainer.loading import file_sha256
from tests.hub_cache import add_weights, hub_cache, timm_weights  # noqa: F401  (fixture)
from tests.test_trainer import make_config, run
from harness.trainer.loading import in_folders

TEACHER_TAG, VIT_TAG = "test_resnet.r160_in1k", "test_vit.r160_in1k"


def test_teacher_from_a_pretrained_tag_records_its_checksum(hub_cache, tmp_path):
    weights_file = add_weights(hub_cache, TEACHER_TAG, timm_weights(TEACHER_TAG))
    # synthetic images have the 1,000 classes of an ImageNet teacher
    config = make_config(data={"name": "synthetic", "train_subset": 64}, model={"name": "deit_tiny_patch4_32"},
                         distillation={"kind": "hard", "teacher": {"model": "test_resnet", "pretrained": TEACHER_TAG}},
                         augment={"mixup": 0.0, "cutmix": 0.0})
    teacher = models.build_teacher(config, 1000, lambda h: None, torch.device("cpu"))
    stored = load_file(str(weights_file))
    assert torch.equal(teacher.conv1[0].weight, stored["conv1.0.weight"])
    sink, final = run(config, tmp_path)
    assert sink.info["teacher_weights"] == TEACHER_TAG
    assert sink.info["teacher_weights_sha256"] == file_sha256(weights_file)
    assert 0 <= final["teacher_top1"] <= 100


def test_a_teacher_for_other_classes_is_refused(hub_cache):
    add_weights(hub_cache, TEACHER_TAG, timm_weights(TEACHER_TAG))
    config = make_config(distillation={"kind": "hard", "teacher": {"model": "test_resnet", "pretrained": TEACHER_TAG}})
    with pytest.raises(ValueError, match="for 1000 classes; the dataset has 10"):
        models.build_teacher(config, 10, lambda h: None, torch.device("cpu"))


def test_finetune_from_a_pretrained_tag(hub_cache):
    weights_file = add_weights(hub_cache, VIT_TAG, timm_weights(VIT_TAG))
    config = make_config(model={"name": "test_vit"}, data={"img_size": 32}, finetune={"pretrained": VIT_TAG})
    info = {}
    student = models.build_student(config, 10, lambda h: None, info)
    stored = load_file(str(weights_file))
    assert torch.equal(student.blocks[0].attn.qkv.weight, stored["blocks.0.attn.qkv.weight"])
    assert student.head.out_features == 10 and student.pos_embed.shape[1] == 1 + 2 * 2  # 160 px -> 32 px grid
    assert info == {"finetune_weights": VIT_TAG, "finetune_weights_sha256": file_sha256(weights_file)}


def test_finetune_from_a_runs_ema_weights(tmp_path):
    source = models.create_model("deit_tiny_patch4_32", 10, 16)
    ema = models.create_model("deit_tiny_patch4_32", 10, 16)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    torch.save(ema.state_dict(), tmp_path / "model_ema.pt")
    torch.save({"model": source.state_dict(), "ema": ema.state_dict()}, tmp_path / "checkpoint.pt")
    key = "blocks.0.attn.qkv.weight"
    for finetune, expected in (({"from_run": "r"}, source), ({"from_run": "r", "use_ema": True}, ema),
                               ({"checkpoint": str(tmp_path / "checkpoint.pt"), "use_ema": True}, ema)):
        config = make_config(model={"name": "deit_tiny_patch4_32"}, finetune=finetune)
        student = models.build_student(config, 10, in_folders(lambda h: tmp_path))
        assert torch.equal(student.state_dict()[key], expected.state_dict()[key]), finetune
    (tmp_path / "model_ema.pt").unlink()
    with pytest.raises(FileNotFoundError, match="use_ema needs a source run trained with ema.enabled"):
        models.build_student(make_config(model={"name": "deit_tiny_patch4_32"},
                                         finetune={"from_run": "r", "use_ema": True}), 10, in_folders(lambda h: tmp_path))


@pytest.fixture
def vit_teacher_run(tmp_path):
    teacher = models.create_model("deit_tiny_patch4_32", 10, 16)
    torch.save(teacher.state_dict(), tmp_path / "model.pt")
    return tmp_path


def test_teacher_at_the_students_resolution_by_default(vit_teacher_run):
    config = make_config(data={"img_size": 24}, distillation={
        "kind": "hard", "teacher": {"model": "deit_tiny_patch4_32", "run": "t"}})
    teacher = models.build_teacher(config, 10, in_folders(lambda h: vit_teacher_run), torch.device("cpu"))
    assert not isinstance(teacher, models.AtResolution)
    assert teacher.pos_embed.shape[1] == 1 + 6 * 6  # interpolated to the student's 24 px grid
    assert teacher(torch.randn(2, 3, 24, 24)).shape == (2, 10)


def test_teacher_at_its_own_resolution_sees_the_batch_resized(vit_teacher_run):
    config = make_config(data={"img_size": 24}, distillation={
        "kind": "hard", "teacher": {"model": "deit_tiny_patch4_32", "run": "t", "img_size": 16}})
    teacher = models.build_teacher(config, 10, in_folders(lambda h: vit_teacher_run), torch.device("cpu"))
    stored = torch.load(vit_teacher_run / "model.pt", weights_only=True)
    assert isinstance(teacher, models.AtResolution) and torch.equal(teacher.teacher.pos_embed, stored["pos_embed"])
    batch = torch.randn(2, 3, 24, 24)
    resized = torch.nn.functional.interpolate(batch, size=(16, 16), mode="bicubic", align_corners=False,
                                              antialias=True)
    assert torch.allclose(teacher(batch), teacher.teacher(resized))


@pytest.mark.parametrize("section,value,message", [
    ("teacher", {"model": "regnety_160", "run": "t", "pretrained": "regnety_160.deit_in1k"}, "exactly one of"),
    ("teacher", {"model": "regnety_160", "pretrained": "regnety_160"}, "ARCHITECTURE.TAG"),
    ("teacher", {"model": "regnety_080", "pretrained": "regnety_160.deit_in1k"}, "not of teacher.model"),
    ("finetune", {"from_run": "a", "pretrained": "deit_base_patch16_224.fb_in1k"}, "exactly one of"),
    ("finetune", {"pretrained": "deit_base_patch16_224.fb_in1k", "use_ema": True}, "use_ema needs a run"),
])
def test_one_source_of_weights(section, value, message):
    raw = {"finetune": value} if section == "finetune" else {"distillation": {"kind": "hard", "teacher": value}}
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate(raw)
