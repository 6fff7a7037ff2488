"""Shared by the benchmark scripts: print result lines and append them to a markdown file as they come, so that
a script stopped by its time budget still leaves what it measured (benchmarks/gpu/run.sh relies on it)."""

from __future__ import annotations

from pathlib import Path

import torch


def emit(lines: str | list[str], markdown: Path | None) -> None:
    """Print `lines` and append them to `markdown` (when given) at once."""
    text = "\n".join([lines] if isinstance(lines, str) else lines)
    print(text, flush=True)
    if markdown is not None:
        with open(markdown, "a") as f:
            f.write(text + "\n")


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
