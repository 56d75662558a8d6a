"""Benchmarks of the golden model (wall-clock: the golden model is software).

The network is the digits network (64 -> 128 LIF -> 10 LI) quantized from a
seeded, untrained twin; the input is the rate-coded digits test split, so the
spike density is that of real data.  Reported: synaptic operations per second
at batch 256 and T = 8, and how that rate scales with the batch size and T.
Each point is the best of several repetitions after a warm-up run; wall-clock
figures depend on the machine and its load (``machine`` in the output).
"""

from __future__ import annotations

import os
import platform
import time

import torch

from .quantize import to_integer
from .tasks import digits
from .train import build_twin, config_for

__all__ = ["run", "describe"]


def _measure(net, x, repeats: int) -> tuple[float, int]:
    net.run(x, record=False)  # warm-up: first calls pay for allocation and dispatch setup
    best = float("inf")
    synops = 0
    for _ in range(repeats):
        start = time.perf_counter()
        trace = net.run(x, record=False)
        best = min(best, time.perf_counter() - start)
        synops = int(trace.synops.sum())
    return best, synops


def run(*, quick: bool = False) -> dict:
    torch.manual_seed(0)
    net = to_integer(build_twin(config_for("digits")))
    test = digits("test")
    repeats = 2 if quick else 5

    def point(batch: int, steps: int) -> dict:
        index = torch.arange(batch) % len(test)
        x = test.encode("rate", steps, index=index.numpy())
        seconds, synops = _measure(net, x, repeats)
        return {"batch": batch, "timesteps": steps, "seconds": seconds, "synops": synops,
                "synops_per_second": synops / seconds,
                "sample_steps_per_second": batch * steps / seconds}

    main = point(256, 8)
    batches = [1, 16, 256] if quick else [1, 4, 16, 64, 256, 1024]
    steps = [1, 8, 32] if quick else [1, 2, 4, 8, 16, 32, 64]
    return {
        "golden": {
            "network": "digits 64-128-10 (rate-coded test split)",
            "synops_per_second": main["synops_per_second"],
            "batch": 256, "timesteps": 8,
            "scaling_batch": [point(b, 8) for b in batches],
            "scaling_timesteps": [point(256, t) for t in steps],
        },
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__},
    }


def describe(result: dict):
    g = result["golden"]
    yield f"golden model, {g['network']}"
    yield f"  batch 256, T=8: {g['synops_per_second'] / 1e6:.1f} M synaptic ops/s"
    for key, label in (("scaling_batch", "batch"), ("scaling_timesteps", "timesteps")):
        yield f"  vs {label}:"
        for p in g[key]:
            yield (f"    {label} {p[label if label == 'batch' else 'timesteps']:>5}: "
                   f"{p['synops_per_second'] / 1e6:8.1f} M synops/s, "
                   f"{p['sample_steps_per_second']:10.0f} sample-steps/s")
