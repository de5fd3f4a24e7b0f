"""CPU training precision benchmark: one training step of each shipped 2-D network in float32 and under bf16
autocast, on this machine's CPU, and whether cacflow would pick bf16 here (``cpu_has_fast_bf16``).

Usage:
    python benchmarks/cpu_precision.py [--steps 5] [--threads N] [--out benchmarks/out/cpu_precision.json]

Each network trains on random inputs of its training batch shape (channels_last, Adam): the localizer's plane
network (64 x 1 x 128 x 128) and the regressor (64 x 1 x 256 x 256 with the voxel size). Reports seconds per step
(median of ``--steps`` after one warm-up) and the ratio bf16 / float32: below 1 bf16 helps, above 1 it is emulated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from cacflow.models.localizer import PlaneNet
from cacflow.models.regression import RegressionNet
from cacflow.training.common import cpu_has_fast_bf16


def _cases() -> dict:
    loc = PlaneNet((16, 32, 32, 64, 64), 64)
    reg = RegressionNet()
    return {
        "localizer_plane": (loc, lambda: (torch.randn(64, 1, 128, 128),), 64),
        "regressor": (reg, lambda: (torch.randn(64, 1, 256, 256), torch.full((64, 3), 1.5)), 64),
    }


def step_seconds(net: torch.nn.Module, make_inputs, batch: int, bf16: bool, steps: int) -> float:
    """Median seconds of one forward + backward + Adam step on the CPU."""
    net = net.train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    inputs = [x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in make_inputs()]
    target = torch.rand(batch)
    times = []
    for k in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            out = net(*inputs).float().reshape(batch, -1)[:, 0]
        loss = torch.nn.functional.mse_loss(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if k:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/cpu_precision.json"))
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    report = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "cpu_has_fast_bf16": cpu_has_fast_bf16(), "networks": {}}
    for name, (net, make_inputs, batch) in _cases().items():
        f32 = step_seconds(net, make_inputs, batch, False, a.steps)
        b16 = step_seconds(net, make_inputs, batch, True, a.steps)
        report["networks"][name] = {"float32_s_per_step": f32, "bf16_s_per_step": b16, "bf16_over_float32": b16 / f32}
        print(f"{name}: float32 {f32:.3f} s/step, bf16 {b16:.3f} s/step, bf16/float32 {b16 / f32:.2f}")
    print(f"CPU {report['cpu_capability']}, {report['threads']} threads; cacflow trains in "
          f"{'bf16' if report['cpu_has_fast_bf16'] else 'float32'} here")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
