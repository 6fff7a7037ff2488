"""How fast the CLI refuses what it cannot do: bad specs and an unreachable hub, each in a fresh process.

    python benchmarks/refusals.py [--repeat 3]

A refusal must come at once, whatever the input: a spec over the size limit is refused before it is parsed, an
integer of thousands of digits before Python converts it, a typo before any model is built; `weights fetch`
without network gives up without a minute of retries. Prints, for each case, the best wall time of `repeat` runs
of `harness run SPEC --profile quick` (or `harness weights fetch`) in a fresh process, and the same for `harness
--help` as the floor every command pays (Python, typer and the harness imported). Targets: a bad spec refused
within 1 s of that floor; the offline fetch within 60 s. (tests/test_cli_inputs.py and
tests/test_what_users_see.py check what is said; the time is measured here, where a busy machine does not fail
a test.)

Smallest run: python benchmarks/refusals.py --repeat 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = "base: {data: {name: digits, img_size: 16}, model.name: resnet_tiny_32, device: cpu}\n"
SPECS = {
    "too large": "name: big\n" + "# padding\n" * 120_000,
    "integer too long to read": "name: s\n" + BASE.replace("}\n", ", batch_size: " + "9" * 5001 + "}\n"),
    "unknown key": "name: s\n" + BASE.replace("}\n", ", schedule: {warmup_epoch: 3}}\n"),
}


def best_of(command: list[str], env: dict[str, str], repeat: int) -> tuple[float, int]:
    """The fastest wall time of `repeat` runs, and the exit code of the last."""
    times, code = [], 0
    for _ in range(repeat):
        start = time.monotonic()
        code = subprocess.run(command, env=env, capture_output=True, timeout=300).returncode
        times.append(time.monotonic() - start)
    return min(times), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    harness = [sys.executable, "-m", "harness"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    with tempfile.TemporaryDirectory() as tmp:
        floor, _ = best_of([*harness, "--help"], env, args.repeat)
        print(f"{'harness --help (the floor)':<34} {floor:6.2f} s")
        for name, text in SPECS.items():
            spec = Path(tmp) / "spec.yaml"
            spec.write_text(text)
            seconds, code = best_of([*harness, "run", str(spec), "--profile", "quick", "--output", f"{tmp}/out"],
                                    env, args.repeat)
            verdict = "ok" if seconds - floor <= 1.0 else "SLOW (target: within 1 s of the floor)"
            print(f"{'refused: ' + name:<34} {seconds:6.2f} s  exit {code}  {verdict}")
        # port 9 (discard) of this machine: nothing listens, as on a compute node without network
        offline = {k: v for k, v in env.items() if k != "HF_HUB_OFFLINE" and "proxy" not in k.lower()}
        offline.update(HF_HOME=f"{tmp}/hf", HF_ENDPOINT="http://127.0.0.1:9")
        seconds, code = best_of([*harness, "weights", "fetch", "deit_tiny_patch16_224.fb_in1k"], offline, 1)
        verdict = "ok" if seconds <= 60 else "SLOW (target: 60 s)"
        print(f"{'weights fetch, no network':<34} {seconds:6.2f} s  exit {code}  {verdict}")


if __name__ == "__main__":
    main()
