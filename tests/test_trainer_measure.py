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


class Roomy(torch.nn.Module):
    """A model whose forward pass 'fits' up to `room` images, and that notes whether TF32 was allowed."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room, self.tf32 = room, []

    def forward(self, x):
        self.tf32.append(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
        if len(x) > self.room:
            raise torch.cuda.OutOfMemoryError("out of memory (test)")
        return x.mean(dim=(1, 2, 3))


def test_paper_batch_search_is_uncapped_and_refined():
    from harness.trainer.measure import GPU_BATCH_CAP, largest_batch

    cpu = torch.device("cpu")
    # powers of two up to 1024 fit, 2048 does not: bisection finds 1500 (the fast protocol keeps the cap)
    assert largest_batch(Roomy(1500), 4, "paper", cpu) == 1500
    assert largest_batch(Roomy(1500), 4, "fast", cpu) == GPU_BATCH_CAP
    assert largest_batch(Roomy(3), 4, "paper", cpu) == 3
    assert largest_batch(Roomy(5000), 4, "paper", cpu) == 5000


def test_paper_protocol_turns_tf32_off_and_puts_the_flags_back():
    from harness.trainer.measure import measure_throughput

    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        model = Roomy(64)
        tp = measure_throughput(model, 4, torch.device("cpu"), "paper", batch_size=2, repeats=1)
        assert tp.batch_size == 2 and model.tf32 and not any(model.tf32)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
