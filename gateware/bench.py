"""Benchmarks of the NPU core from its own cycle counters on Verilator
(deterministic: the same design and input give the same clocks).

* ``dense``: one layer fed every input as an event each step; synaptic
  operations (events x neurons) per clock of the step, for P = 8 and P = 32.
  Target: >= 0.9 P.
* ``digits``: the digits network (64 -> 128 LIF -> 10 LI, quantized from a
  seeded twin) on the ``digits`` core, random spike inputs at 0 %, 10 % and
  50 % density: clocks per step against the ideal
  ``(events x fan-out + neurons) / P`` and the fixed overhead (the rest).
* ``verilator``: simulated clocks per wall-clock second of the C++ testbench.
"""

from __future__ import annotations

import random

import torch

from ..golden.integer import Format, LIFLayer, Network, Projection
from .layout import CoreConfig, compile_network
from .rtl import BENCH_CONFIGS, REFERENCE_CONFIGS
from .vsim import VerilatedCore

__all__ = ["run", "describe", "dense_on"]

I64 = torch.int64


def _dense_layer(config: CoreConfig, seed: int = 0) -> Network:
    gen = torch.Generator().manual_seed(seed)
    n, j = config.max_neurons, config.max_inputs
    layer = LIFLayer("dense", n, alpha=torch.full((n,), 128, dtype=I64),
                     theta=torch.full((n,), 1000, dtype=I64), bias=torch.zeros(n, dtype=I64),
                     inputs=[Projection("input", torch.randint(-8, 8, (n, j), generator=gen))])
    return Network(input_size=j, input_kind="spike", layers=[layer], output="dense",
                   fmt=config.fmt())


def dense(name: str, steps: int = 4) -> dict:
    config = BENCH_CONFIGS[name]
    net = _dense_layer(config)
    x = [[1] * net.input_size for _ in range(steps)]
    result = VerilatedCore(config).run(compile_network(net, config), x)
    synops = steps * net.input_size * net.layer("dense").size
    clocks = sum(result.step_clocks)
    return {"config": name, "lanes": config.lanes, "neurons": net.layer("dense").size,
            "events_per_step": net.input_size, "clocks": clocks,
            "synops_per_cycle": synops / clocks,
            "fraction_of_peak": synops / clocks / config.lanes}


def dense_on(config: CoreConfig, steps: int = 4) -> dict:
    """The dense load on any configuration: ``max_neurons`` neurons fed the most
    inputs its weight memory holds (every input an event each step)."""
    n = config.max_neurons
    j = min(config.max_inputs, config.max_fanin, config.weight_depth // -(-n // config.lanes))
    gen = torch.Generator().manual_seed(0)
    layer = LIFLayer("dense", n, alpha=torch.full((n,), 128, dtype=I64),
                     theta=torch.full((n,), 1000, dtype=I64), bias=torch.zeros(n, dtype=I64),
                     inputs=[Projection("input", torch.randint(-8, 8, (n, j), generator=gen))])
    net = Network(input_size=j, input_kind="spike", layers=[layer], output="dense",
                  fmt=config.fmt())
    result = VerilatedCore(config).run(compile_network(net, config), [[1] * j] * steps)
    synops = steps * j * n
    clocks = sum(result.step_clocks)
    return {"lanes": config.lanes, "neurons": n, "events_per_step": j, "clocks": clocks,
            "synops_per_cycle": synops / clocks,
            "fraction_of_peak": synops / clocks / config.lanes}


def _digits_net(config: CoreConfig) -> Network:
    from ..golden.quantize import to_integer
    from ..golden.train import build_twin, config_for

    torch.manual_seed(0)
    net = to_integer(build_twin(config_for("digits")))
    if net.fmt != Format():
        raise AssertionError("the digits twin uses the default format")
    return net


def digits(densities=(0.0, 0.1, 0.5), steps: int = 8) -> dict:
    config = REFERENCE_CONFIGS["digits"]
    net = _digits_net(config)
    image = compile_network(net, config)
    core = VerilatedCore(config)
    rows = {layer.name: -(-layer.size // config.lanes) for layer in net.layers}
    points = []
    for density in densities:
        rng = random.Random(int(density * 1000))
        x = torch.tensor([[int(rng.random() < density) for _ in range(net.input_size)]
                          for _ in range(steps)], dtype=I64)
        result = core.run(image, x.tolist())
        trace = net.run(x[:, None, :])
        events_in = int((x != 0).sum())
        hidden_spikes = int(trace.spikes["hidden"].sum())
        synops = int(trace.synops.sum())
        neurons = sum(layer.size for layer in net.layers)
        clocks = sum(result.step_clocks)
        ideal = (synops + neurons * steps) / config.lanes
        points.append({
            "density": density,
            "input_events_per_step": events_in / steps,
            "hidden_spikes_per_step": hidden_spikes / steps,
            "clocks_per_step": clocks / steps,
            "ideal_clocks_per_step": ideal / steps,
            "overhead_clocks_per_step": (clocks - ideal) / steps,
            "sim_clocks_per_second": result.clocks / result.seconds if result.seconds else None,
        })
    return {"config": "digits", "lanes": config.lanes, "rows": rows, "points": points,
            "overhead_model": "per row: 2 clocks per edge + 4 (setup, edge setup/end, "
                              "pipeline drain) + 1 neuron clock; per step: router waits "
                              "and the end-of-step record"}


def run(progress=print) -> dict:
    """All RTL benchmarks (builds the cores on first use, which takes a while)."""
    out = {"dense": []}
    for name in ("p8", "p32"):
        progress(f"rtl bench: dense load on {name} (Verilator build on first use)")
        out["dense"].append(dense(name))
    progress("rtl bench: digits network vs input density")
    out["digits"] = digits()
    speeds = [p["sim_clocks_per_second"] for p in out["digits"]["points"]
              if p["sim_clocks_per_second"]]
    out["verilator_clocks_per_second"] = max(speeds) if speeds else None
    return out


def describe(result: dict):
    for d in result["dense"]:
        yield (f"  dense P={d['lanes']:>2}: {d['synops_per_cycle']:.2f} synaptic ops/clock "
               f"({d['fraction_of_peak']:.3f} of P)")
    g = result["digits"]
    for p in g["points"]:
        yield (f"  digits, {p['density'] * 100:>3.0f}% input spikes: "
               f"{p['clocks_per_step']:.0f} clocks/step (ideal {p['ideal_clocks_per_step']:.0f}, "
               f"overhead {p['overhead_clocks_per_step']:.0f})")
    if result.get("verilator_clocks_per_second"):
        yield f"  Verilator: {result['verilator_clocks_per_second'] / 1e6:.2f} M clocks/s"
