"""cocotb test module: random networks (LIF, and SSM layers on a core with an SSM
unit) on the Verilator build of the NPU core, step by step against the golden
model.  Run inside the simulator by ``tests/test_core_verilator.py`` (not
collected by pytest itself).

Settings come from the environment:

* ``SPIKEFORGE_CORE``: JSON ``{"config": {CoreConfig fields}, "max_size": int,
  "max_lif": int, "steps": [lo, hi], "stall": float, "require_saturation": bool,
  "max_fit_errors": float, "report": path, "max_ssm": int, "ssm_prob": float,
  "require_ssm_coverage": bool}``; ``config`` must be the build's.
* ``SPIKEFORGE_SEEDS``: which seeds, ``"0-40"`` (``range(0, 40)``), ``"17"`` or a
  comma list of both (``"3,17,100-110"``).

Per seed (one network, a reproducible case: the draw depends on the seed and
the config only): a random LIF-only network drawn by ``netgen`` in the build's
widths (input kind ``spike`` on even seeds, ``int`` on odd ones), ``T`` random
input steps, output backpressure (``stall`` of the clocks) on seeds ``4k+2``
and ``4k+3``, none on the rest.  Checked: every step's decoded records equal
the golden model's (all spikes of all layers, all output values and spikes),
the per-layer ``events`` / ``spikes`` counters and the ``steps`` counter, the
synaptic cycle count of the docstring's cost model, and that the core ends
idle with an empty output stream.  Across the seeds, some step must have hit
the membrane saturation (a neuron whose unsaturated ``v`` left the range of
``u_bits``, recomputed from the golden trace).

SSM layers (``max_ssm`` > 0): every ``y`` (nonzero ones of hidden SSM layers as
events with their values, all of an SSM output layer) of every step and the
final state ``S`` read back, the gather cycle count exactly and the pass cycle
count as a lower bound (exact without backpressure when ``P <= n + 3``).  With
``require_ssm_coverage`` the seeds together must cover all eight source /
constant combinations of ``k``, ``v``, ``q``, fixed and selective decay, ``n``
and ``m`` of 1 and of the configured maximum, layers with and without decay (the
pass skips idle rows only without), and both the state (``s_bits``) and the
output (``y_bits``) saturation.

Writes a JSON report (counts, cycles, wall time, failures) to ``report``.
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback

import cocotb
import torch
from netgen import random_input, random_network
from spikeforge.gateware.cocotb_tb import CoreTB
from spikeforge.gateware.harness import (
    decode_membranes,
    decode_step,
    expected,
    expected_counters,
    membrane_reads,
)
from spikeforge.gateware.layout import (
    COUNTERS,
    CoreConfig,
    CoreTiming,
    FitError,
    compile_network,
    ssm_skips,
)
from spikeforge.golden.integer import INPUT, Network, floor_shift, signed_range

MAX_FAILURES = 5  # stop after this many failing seeds (each is reported)


def parse_seeds(text: str) -> list[int]:
    """``"0-40"`` -> 0..39; ``"17"`` -> [17]; comma-separated lists of both."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi)))
        else:
            seeds.append(int(part))
    return seeds


def config_tag(c: CoreConfig) -> str:
    tag = (f"P{c.lanes}-w{c.w_bits}-u{c.u_bits}-f{c.frac_bits}-i{c.in_bits}-a{c.acc_bits}"
           f"-L{c.max_layers}-E{c.max_edges}-N{c.max_neurons}")
    if c.has_ssm:
        tag += f"-S{c.ssm_max_n}x{c.ssm_max_m}-s{c.s_bits}-y{c.y_bits}"
    return tag


def draw_case(seed: int, c: CoreConfig, s: dict):
    """The network, input and run options of one seed (raises FitError if it does not fit)."""
    rng = random.Random(f"npu-core:{seed}:{config_tag(c)}")
    kind = "spike" if seed % 2 == 0 else "int"
    max_ssm = min(s.get("max_ssm", 0), c.max_layers - 1)
    net = random_network(rng, max_ssm=max_ssm, ssm_prob=s.get("ssm_prob", 0.0), fmt=c.fmt(),
                         input_kind=kind, max_lif=min(s["max_lif"], c.max_layers - max_ssm),
                         max_size=s["max_size"],
                         ssm_max_n=c.ssm_max_n if c.has_ssm else None,
                         ssm_max_m=c.ssm_max_m if c.has_ssm else None)
    # (net.fmt.acc_bits is what the network needs, plus slack; the results do not
    # depend on it, and compile_network checks the need against the core's acc_bits.)
    steps = rng.randint(*s["steps"])
    x = random_input(rng, net, steps, 1)[:, 0, :]
    stall = s["stall"] if seed % 4 >= 2 else 0.0
    image = compile_network(net, c)
    return net, x, image, stall


def clamped_steps(net: Network, x: torch.Tensor) -> tuple[int, int]:
    """The number of steps where some neuron's ``v`` was clamped by the ``u_bits``
    saturation (its unsaturated value below / above the range), recomputed from the
    golden trace."""
    trace = net.run(x[:, None, :])

    def source(name: str, recurrent: bool) -> torch.Tensor:
        s = x if name == INPUT else trace.outputs[name][:, 0, :]
        return torch.cat([torch.zeros_like(s[:1]), s[:-1]]) if recurrent else s

    lo, hi = signed_range(net.fmt.u_bits)
    steps = x.shape[0]
    clamped_lo = torch.zeros(steps, dtype=torch.bool)
    clamped_hi = torch.zeros(steps, dtype=torch.bool)
    for layer in net.layers:
        if layer.kind == "ssm":
            continue
        u = trace.membranes[layer.name][:, 0, :]
        u_prev = torch.cat([torch.zeros_like(u[:1]), u[:-1]])
        current = sum(source(p.source, p.recurrent) @ p.weight.T for p in layer.inputs)
        v = torch.bitwise_right_shift(layer.alpha * u_prev, net.fmt.frac_bits) + current \
            + layer.bias
        clamped_lo |= (v < lo).any(dim=1)
        clamped_hi |= (v > hi).any(dim=1)
        # The recomputation must give the trace back (else the counts mean nothing).
        v = v.clamp(lo, hi)
        fired = (v >= layer.theta) if layer.spiking else torch.zeros_like(v, dtype=torch.bool)
        again = {"subtract": v - layer.theta * fired,
                 "zero": torch.where(fired, torch.full_like(v, layer.v_reset), v),
                 "none": v}[layer.reset]
        if not torch.equal(again, u):
            raise AssertionError(f"recomputing {layer.name} from the trace disagrees with it")
    return int(clamped_lo.sum()), int(clamped_hi.sum())


def ssm_clamps(net: Network, x: torch.Tensor) -> tuple[int, int]:
    """The number of (step, SSM layer) pairs where the state saturation (``s_bits``)
    and where the output saturation (``y_bits``) clamped some value, recomputed from
    the golden model run step by step (the states of every step)."""
    fmt = net.fmt
    trace = net.run(x[:, None, :])
    state = None
    s_clamps = y_clamps = 0
    s_lo, s_hi = signed_range(fmt.s_bits)
    y_lo, y_hi = signed_range(fmt.y_bits)

    def fetch(name: str, recurrent: bool, t: int) -> torch.Tensor:
        out = x[:, None, :] if name == INPUT else trace.outputs[name]
        if recurrent:
            return out[t - 1, 0] if t > 0 else torch.zeros_like(out[0, 0])
        return out[t, 0]

    for t in range(x.shape[0]):
        before = state if state is not None else net.initial_state(1)
        state = net.run(x[t:t + 1, None, :], before).state
        for layer in net.layers:
            if layer.kind != "ssm":
                continue
            ops = {what: op.const if op.is_const else fetch(op.source, op.recurrent, t)
                   for what, op in layer.operands().items()}
            if layer.mode == "fixed":
                a = layer.decay
            else:
                bits = fetch(layer.gate, layer.gate_recurrent, t)
                a = layer.decay[int((bits * (1 << torch.arange(len(bits)))).sum())]
            wide = floor_shift(a[:, None] * before[f"{layer.name}.S"][0], fmt.frac_bits) \
                + ops["k"][:, None] * ops["v"][None, :]
            S = state[f"{layer.name}.S"][0]
            if not torch.equal(wide.clamp(s_lo, s_hi), S):
                raise AssertionError(f"recomputing {layer.name} from the trace disagrees")
            s_clamps += bool((wide != S).any())
            y = floor_shift(ops["q"] @ S, layer.y_shift)
            if not torch.equal(y.clamp(y_lo, y_hi), trace.outputs[layer.name][t, 0]):
                raise AssertionError(f"recomputing y of {layer.name} disagrees with the trace")
            y_clamps += bool(((y < y_lo) | (y > y_hi)).any())
    return s_clamps, y_clamps


def first_difference(got: dict, want: dict) -> str:
    for key in ("spikes", "values", "out_spikes"):
        if got[key] != want[key]:
            if key == "spikes":
                for name in want[key]:
                    if got[key].get(name) != want[key][name]:
                        return (f"spikes of {name}: rtl {got[key].get(name)} "
                                f"golden {want[key][name]}")
            return f"{key}: rtl {got[key]} golden {want[key]}"
    return "no difference"


async def check_seed(tb: CoreTB, seed: int, c: CoreConfig, s: dict, stats: dict) -> None:
    net, x, image, stall = draw_case(seed, c, s)
    tb.stall = stall
    tb.rng = random.Random(seed)
    steps_total = x.shape[0]
    await tb.load(image)
    start, wall = tb.cycles, time.perf_counter()
    records = await tb.run(x)
    stats["run_cycles"] += tb.cycles - start
    stats["run_s"] += time.perf_counter() - wall
    want, want_membranes = expected(net, x)
    for t in range(steps_total):
        got = decode_step(records[t], net, image)
        if got != want[t]:
            raise AssertionError(f"step {t}/{steps_total}: {first_difference(got, want[t])}")
    membranes = decode_membranes(await tb.read_many(membrane_reads(net, image)), net, image)
    if membranes != want_membranes:
        raise AssertionError(f"final membranes: rtl {membranes} golden {want_membranes}")
    counters = await tb.read_counters()
    await tb.expect_quiet()
    sat_lo, sat_hi = clamped_steps(net, x)
    golden = expected_counters(net, x, c.lanes, tb.timing)  # syn_cycles: the cost model
    n = len(COUNTERS)
    for i, layer in enumerate(net.layers):
        got = dict(zip(COUNTERS, counters[i * n:(i + 1) * n], strict=True))
        for key, want_count in golden[layer.name].items():
            if key == "pass_rows":
                continue
            if key == "neuron_cycles_min":  # an SSM layer's pass: router waits add to it
                exact = stall == 0 and c.lanes <= min(golden[layer.name]["pass_rows"]) + 3
                if got["neuron_cycles"] < want_count or (exact and
                                                         got["neuron_cycles"] != want_count):
                    raise AssertionError(f"SSM pass cycles of layer {i} ({layer.name}): "
                                         f"{got['neuron_cycles']}, cost model {want_count}")
                continue
            if got[key] != want_count:
                raise AssertionError(f"counter {key} of layer {i} ({layer.name}): "
                                     f"{got[key]}, golden {want_count}")
    for i in range(len(net.layers), c.max_layers):
        unused = counters[i * n:(i + 1) * n]
        if any(unused):
            raise AssertionError(f"counters of unused layer slot {i}: {unused}")
    if counters[-1] != steps_total:
        raise AssertionError(f"steps counter {counters[-1]}, expected {steps_total}")
    stats["networks"] += 1
    stats["steps"] += steps_total
    stats["kinds"][net.input_kind] += 1
    stats["stalled"] += stall > 0
    stats["layers"] += len(net.layers)
    lifs = [layer for layer in net.layers if layer.kind == "lif"]
    stats["edges"] += sum(len(layer.inputs) for layer in lifs)
    stats["recurrent_edges"] += sum(p.recurrent for layer in lifs for p in layer.inputs)
    stats["events"] += sum(g["events"] for g in golden.values())
    stats["spikes"] += sum(g["spikes"] for g in golden.values())
    stats["sat_low_steps"] += sat_lo
    stats["sat_high_steps"] += sat_hi
    stats["records"] += sum(len(r) for r in records)
    for layer in net.layers:
        if layer.kind == "ssm":
            stats["ssm_layers"] += 1
            combo = "".join("c" if op.is_const else "s" for op in layer.operands().values())
            cover = stats["ssm_cover"]
            for key, value in (("kvq", combo), ("mode", layer.mode), ("n", layer.n),
                               ("m", layer.m), ("skip", ssm_skips(net, layer))):
                cover.setdefault(key, [])
                if value not in cover[key]:
                    cover[key].append(value)
    if any(layer.kind == "ssm" for layer in net.layers):
        s_clamps, y_clamps = ssm_clamps(net, x)
        stats["s_sat_steps"] += s_clamps
        stats["y_sat_steps"] += y_clamps


@cocotb.test()
async def random_networks(dut):
    s = json.loads(os.environ["SPIKEFORGE_CORE"])
    c = CoreConfig(**s["config"])
    timing = CoreTiming(**s["timing"])
    seeds = parse_seeds(os.environ.get("SPIKEFORGE_SEEDS", "0-10"))
    stats = {"config": config_tag(c), "seeds": len(seeds), "networks": 0, "fit_errors": [],
             "failures": [], "steps": 0, "kinds": {"spike": 0, "int": 0}, "stalled": 0,
             "layers": 0, "edges": 0, "recurrent_edges": 0, "events": 0, "spikes": 0,
             "sat_low_steps": 0, "sat_high_steps": 0, "records": 0, "run_cycles": 0,
             "run_s": 0.0, "ssm_layers": 0, "ssm_cover": {}, "s_sat_steps": 0,
             "y_sat_steps": 0}
    tb = CoreTB(dut, c, timing=timing)
    wall = time.perf_counter()
    await tb.start()
    try:
        for seed in seeds:
            try:
                await check_seed(tb, seed, c, s, stats)
            except FitError as e:
                stats["fit_errors"].append([seed, str(e)])
            except Exception as e:  # noqa: BLE001 - every failing seed is reported
                stats["failures"].append({"seed": seed, "error": f"{type(e).__name__}: {e}",
                                          "traceback": traceback.format_exc(limit=4)})
                if len(stats["failures"]) >= MAX_FAILURES:
                    break
                await tb.start()  # reset the core for the next seed
    finally:
        stats["cycles"] = tb.cycles
        stats["held"] = tb.held
        stats["wall_s"] = time.perf_counter() - wall
        stats["cycles_per_s"] = tb.cycles / stats["wall_s"] if stats["wall_s"] else 0.0
        if s.get("report"):
            with open(s["report"], "w") as f:
                json.dump(stats, f, indent=1)
    if stats["failures"]:
        first = stats["failures"][0]
        raise AssertionError(f"{len(stats['failures'])} failing seed(s) on {config_tag(c)}, "
                             f"first: seed {first['seed']}: {first['error']}")
    drawn = stats["networks"] + len(stats["fit_errors"])
    if drawn and len(stats["fit_errors"]) > s.get("max_fit_errors", 0.1) * drawn:
        raise AssertionError(f"{len(stats['fit_errors'])} of {drawn} drawn networks do not fit "
                             f"{config_tag(c)}: {stats['fit_errors'][:3]}")
    if stats["stalled"] and not stats["held"]:
        raise AssertionError("the output stream was never held back on the stalled seeds")
    if s.get("require_saturation") and not stats["sat_low_steps"] + stats["sat_high_steps"]:
        raise AssertionError(f"no step of the {stats['networks']} networks reached the u "
                             f"saturation on {config_tag(c)}")
    if s.get("require_ssm_coverage"):
        cover = stats["ssm_cover"]
        missing = []
        combos = [a + b + q for a in "sc" for b in "sc" for q in "sc"]
        missing += [f"k/v/q {v}" for v in combos if v not in cover.get("kvq", [])]
        missing += [f"mode {v}" for v in ("fixed", "selective") if v not in cover.get("mode", [])]
        missing += [f"n={v}" for v in (1, c.ssm_max_n) if v not in cover.get("n", [])]
        missing += [f"m={v}" for v in (1, c.ssm_max_m) if v not in cover.get("m", [])]
        missing += [f"skip={v}" for v in (False, True) if v not in cover.get("skip", [])]
        if not stats["s_sat_steps"]:
            missing.append("state saturation")
        if not stats["y_sat_steps"]:
            missing.append("y saturation")
        if missing:
            raise AssertionError(f"the SSM networks on {config_tag(c)} did not cover: "
                                 f"{', '.join(missing)} ({cover})")
