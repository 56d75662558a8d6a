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
* ``ssm``: the SSM unit on the ``demo`` core (P = 8): linear attention (``k``,
  ``v``, ``q`` all spikes, copied from the input by three LIF layers), from the
  SSM layer's own counters: clocks per token of the gather and of the pass
  against the state size ``n x m`` and against the spike density of ``k``/``v``/``q``;
  the pass (decay, update and readout fused, every cell every token) is the
  fixed cost ``ceil(m / P) * (n + 4)``; without decay (every decay 1.0) the pass
  visits only rows with a nonzero ``k_i`` or ``q_i`` (``vs_density_no_decay``);
  state memory in bits.
"""

from __future__ import annotations

import random

import torch

from ..contract.compiler import compile_network
from ..contract.config import CoreConfig
from ..golden.integer import Format, LIFLayer, Network, Operand, Projection, SSMLayer
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
                   fmt=config.fmt)


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
                  fmt=config.fmt)
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


def digits(densities=(0.0, 0.01, 0.1, 0.5), steps: int = 8) -> dict:
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
    from ..contract.timing import COMPACT

    edges = {layer.name: len(layer.inputs) for layer in net.layers}
    per_row = {name: 2 * edges[name] + COMPACT.row_overhead + 2 for name in rows}
    return {"config": "digits", "lanes": config.lanes, "rows": rows, "points": points,
            "fixed_overhead": {
                "per_layer": 1, "per_row": per_row,
                "per_step": len(rows) + sum(rows[n] * per_row[n] for n in rows),
                "rule": f"per layer 1 clock; per row 2 per edge + {COMPACT.row_overhead} "
                        f"(setup, edge setup/end, pipeline drain) + 2 neuron clocks, "
                        f"whether or not an event came (boards/fit.py, the core's clock "
                        f"model); router waits and the end-of-step record come on top"}}


def _attention_net(config: CoreConfig, n: int, m: int, decay: float = 0.75) -> Network:
    """Input ``[k | v | q]`` (2n + m spikes) copied by three LIF layers into an SSM
    ``n x m`` with ``k``, ``v``, ``q`` from those layers (every row's decay ``decay``)."""
    size = 2 * n + m

    def copy(name: str, count: int, offset: int) -> LIFLayer:
        w = torch.zeros(count, size, dtype=I64)
        w[torch.arange(count), offset + torch.arange(count)] = 1
        return LIFLayer(name, count, alpha=torch.zeros(count, dtype=I64),
                        theta=torch.ones(count, dtype=I64), bias=torch.zeros(count, dtype=I64),
                        inputs=[Projection("input", w)], reset="zero")

    fmt = config.fmt
    mem = SSMLayer("mem", n, m, Operand(source="key"), Operand(source="value"),
                   Operand(source="query"), torch.full((n,), int(fmt.one * decay), dtype=I64),
                   y_shift=2)
    return Network(input_size=size, input_kind="spike", output="mem", fmt=fmt,
                   layers=[copy("key", n, 0), copy("value", m, n), copy("query", n, n + m), mem])


def ssm(sizes=((4, 4), (8, 8), (8, 16), (16, 8), (16, 16)), densities=(0.0, 0.1, 0.5, 1.0),
        steps: int = 8) -> dict:
    """SSM clocks per token vs state size (at 50 % density) and vs density (16 x 16)."""
    config = REFERENCE_CONFIGS["demo"]
    core = VerilatedCore(config)
    P = config.lanes

    def point(n: int, m: int, density: float, decay: float = 0.75) -> dict:
        net = _attention_net(config, n, m, decay)
        rng = random.Random(f"ssm:{n}:{m}:{density}")
        x = [[int(rng.random() < density) for _ in range(net.input_size)] for _ in range(steps)]
        result = core.run(compile_network(net, config), x)
        trace = net.run(torch.tensor(x, dtype=I64)[:, None, :])
        gather = result.counter(config, 3, "syn_cycles")
        passes = result.counter(config, 3, "neuron_cycles")
        cols = -(-m // P)
        return {
            "n": n, "m": m, "density": density, "decay": decay,
            "gather_clocks_per_token": gather / steps,
            "pass_clocks_per_token": passes / steps,
            "ssm_clocks_per_token": (gather + passes) / steps,
            "fixed_pass_clocks_per_token": cols * (n + 4),
            "cells_per_clock": n * m * steps / passes,
            "operand_events_per_token": result.counter(config, 3, "events") / steps,
            "ssm_ops_per_token": int(trace.ssm_ops.sum()) / steps,
            "step_clocks_per_token": sum(result.step_clocks) / steps,
            "state_bits": n * m * config.s_bits,
        }

    return {
        "config": "demo", "lanes": P, "s_bits": config.s_bits,
        "state_memory_bits": P * config.ssm_depth * config.s_bits,
        "cost_model": "per token: gather 10 + operand events + constant entries; pass "
                      "ceil(m/P) * (rows + 4), rows = n (every cell: decay, k v^T, q "
                      "readout fused), or without decay the rows with k_i or q_i nonzero",
        "vs_size": [point(n, m, 0.5) for n, m in sizes],
        "vs_density": [point(16, 16, d) for d in densities],
        # Without decay (1.0) the pass skips rows whose k_i and q_i are both zero.
        "vs_density_no_decay": [point(16, 16, d, 1.0) for d in densities],
    }


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
    progress("rtl bench: SSM unit vs state size and k/v/q density (demo core)")
    out["ssm"] = ssm()
    progress("rtl bench: link goodput through the bit-level UART simulation")
    out["link"] = link()
    return out


def link() -> dict:
    """Link goodput: max-size WRITE frames through the simulated board's bit-level UART."""
    from .link_bench import stream_board_speed, uart_goodput

    out = uart_goodput("tiny")
    out["stream_board"] = stream_board_speed("tiny")
    return out


def describe(result: dict):
    for d in result["dense"]:
        yield (f"  dense P={d['lanes']:>2}: {d['synops_per_cycle']:.2f} synaptic ops/clock "
               f"({d['fraction_of_peak']:.3f} of P)")
    g = result["digits"]
    f = g["fixed_overhead"]
    rows = ", ".join(f"{n}: {g['rows'][n]} rows x {c}" for n, c in f["per_row"].items())
    yield (f"  digits cost model: {f['per_step']} fixed clocks per step with no event "
           f"({rows}, + {f['per_layer']} per layer)")
    for p in g["points"]:
        yield (f"  digits, {p['density'] * 100:>3.0f}% input spikes: "
               f"{p['clocks_per_step']:.0f} clocks/step (ideal {p['ideal_clocks_per_step']:.0f}, "
               f"overhead {p['overhead_clocks_per_step']:.0f})")
    if "ssm" in result:
        r = result["ssm"]
        yield (f"  SSM ({r['config']}, P={r['lanes']}, state memory {r['state_memory_bits']} "
               f"bits): clocks/token = gather + pass")
        for p in r["vs_size"] + r["vs_density"] + r["vs_density_no_decay"]:
            yield (f"    {p['n']:>2} x {p['m']:<2} at {p['density'] * 100:>3.0f}%, decay "
                   f"{p['decay']:.2f}: "
                   f"{p['ssm_clocks_per_token']:.1f} (gather {p['gather_clocks_per_token']:.1f}"
                   f", pass {p['pass_clocks_per_token']:.0f}, full pass "
                   f"{p['fixed_pass_clocks_per_token']}), {p['cells_per_clock']:.2f} state "
                   f"cells/pass clock"
                   f", state {p['state_bits']} bits")
    if result.get("verilator_clocks_per_second"):
        yield f"  Verilator: {result['verilator_clocks_per_second'] / 1e6:.2f} M clocks/s"
    if "link" in result:
        u = result["link"]
        yield (f"  link: {u['goodput_fraction']:.3f} of the 8N1 payload rate (WRITE payload "
               f"through the bit-level UART, {u['clocks_per_bit']} clocks/bit); simulated "
               f"board {u['sim_clocks_per_second'] / 1e6:.2f} M clocks/s")
        yield (f"  simulated board (byte stream, RUN requests over TCP): "
               f"{u['stream_board']['sim_clocks_per_second'] / 1e6:.2f} M clocks/s")
