"""Parameters, FLOPs and the two throughput protocols."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import timm
import torch

import harness.trainer.tiny_models  # noqa: F401
from harness.trainer.measure import count_flops, count_params, measure_throughput, peak_memory_mb


def test_flops_by_torch_counter_match_timm_for_deit_tiny():
    # timm lists deit_tiny_patch16_224 at 1.3 GMACs; torch's counter counts 2 FLOPs per multiply-add
    model = timm.create_model("deit_tiny_patch16_224")
    assert count_flops(model, 224) / 2 == pytest.approx(1.26e9, rel=0.05)
    assert count_params(model) == pytest.approx(5.7e6, rel=0.02)


@pytest.mark.parametrize("protocol,dtype", [("paper", "float32"), ("fast", "bfloat16")])
def test_throughput_protocols_on_cpu(protocol, dtype):
    model = timm.create_model("deit_tiny_patch4_32")
    tp = measure_throughput(model, 32, torch.device("cpu"), protocol, batch_size=4, repeats=2)
    assert tp.img_s > 0 and tp.batch_size == 4 and tp.dtype == dtype and not tp.compiled


def test_throughput_batch_defaults_to_the_cpu_cap_and_unknown_protocol_fails():
    model = timm.create_model("resnet_tiny_32")
    assert measure_throughput(model, 32, torch.device("cpu"), "paper", repeats=1).batch_size == 64
    with pytest.raises(ValueError, match="paper, fast"):
        measure_throughput(model, 32, torch.device("cpu"), "turbo")
    assert peak_memory_mb(torch.device("cpu")) > 0
