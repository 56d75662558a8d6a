"""cocotb test module: random networks (LIF, and SSM layers on a core with an SSM
unit) on the Verilator build of the NPU core, step by step against the golden
model.  Run inside the simulator by ``tests/test_core_verilator.py`` (not
collected by pytest itself).

Settings come from the environment:

* ``SPIKEFORGE_CORE``: JSON ``{"config": {CoreConfig fields}, "timing": "compact" or
  "pipelined", "max_size": int, "max_lif": int, "steps": [lo, hi], "stall": float,
  "require_coverage": bool, "max_fit_errors": float, "report": path, "max_ssm":
  int, "ssm_prob": float}``; ``config`` must be the build's.
* ``SPIKEFORGE_SEEDS``: which seeds, ``"0-40"`` (``range(0, 40)``), ``"17"``,
  ``"17.3"`` (seed 17's draw 3, as a report names a steered case) or a comma
  list of them (``"3,17.3,100-110"``).

Per seed, a random network drawn by ``netgen`` in the build's widths (input kind
``spike`` on even seeds, ``int`` on odd ones), ``T`` random input steps, output
backpressure (``stall`` of the clocks) on seeds ``4k+2`` and ``4k+3``, none on
the rest.  The draws are steered into the integer model's coverage bins
(:mod:`spikeforge.golden.coverage`): while a bin is empty, each seed keeps the
one of several draws that hits the most empty bins (``netgen.steer``); a draw
depends on its seed, its number and the config only.  Checked: every step's
decoded records equal the golden model's (all spikes of all layers, all output
values and spikes; an SSM layer's ``y``), every layer's state (membranes, SSM
states ``S``) read back after every step (seeds ``8k+3`` and ``8k+4`` run their
steps back to back instead and read the states after the last), the per-layer
``events`` / ``spikes`` counters and the ``steps`` counter, the synaptic cycle
count of the cost model (an SSM layer's gather exactly, its pass as a lower
bound, exact without backpressure when ``P <= n + 3``), and that the core ends
idle with an empty output stream.  With ``require_coverage`` the run fails if a
coverage bin that applies to the build stays empty.

Writes a JSON report (counts, cycles, wall time, coverage, failures) to ``report``.
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback

import cocotb
from netgen import parse_cases, random_input, random_network, steer
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import COUNTERS, CoreConfig, FitError
from spikeforge.contract.harness import (
    decode_membranes,
    decode_step,
    expected,
    expected_counters,
    expected_states,
    membrane_reads,
)
from spikeforge.contract.timing import TimingProfile
from spikeforge.golden.coverage import Coverage
from spikeforge.sim.cocotb_tb import CoreTB

MAX_FAILURES = 5  # stop after this many failing seeds (each is reported)


def config_tag(c: CoreConfig) -> str:
    tag = (f"P{c.lanes}-w{c.w_bits}-u{c.u_bits}-f{c.frac_bits}-i{c.in_bits}-a{c.acc_bits}"
           f"-L{c.max_layers}-E{c.max_edges}-N{c.max_neurons}")
    if c.has_ssm:
        tag += f"-S{c.ssm_max_n}x{c.ssm_max_m}-s{c.s_bits}-y{c.y_bits}"
    return tag


def coverage_for(c: CoreConfig) -> Coverage:
    """The coverage bins that apply to a build of ``c``."""
    return Coverage(ssm=c.has_ssm, frac_bits=c.frac_bits,
                    limits={"n": c.ssm_max_n, "m": c.ssm_max_m} if c.has_ssm else None)


def draw_case(seed: int, attempt: int, c: CoreConfig, s: dict):
    """Seed ``seed``'s draw ``attempt``: the network, input, image and stall; ``None``
    if the network does not fit the build."""
    rng = random.Random(f"npu-core:{seed}:{config_tag(c)}" if attempt == 0
                        else f"npu-core:{seed}.{attempt}:{config_tag(c)}")
    kind = "spike" if seed % 2 == 0 else "int"
    max_ssm = min(s.get("max_ssm", 0), c.max_layers - 1)
    net = random_network(rng, max_ssm=max_ssm, ssm_prob=s.get("ssm_prob", 0.0), fmt=c.fmt,
                         input_kind=kind, max_lif=min(s["max_lif"], c.max_layers - max_ssm),
                         max_size=s["max_size"],
                         ssm_max_n=c.ssm_max_n if c.has_ssm else None,
                         ssm_max_m=c.ssm_max_m if c.has_ssm else None)
    # (net.fmt.acc_bits is what the network needs, plus slack; the results do not
    # depend on it, and compile_network checks the need against the core's acc_bits.)
    steps = rng.randint(*s["steps"])
    x = random_input(rng, net, steps, 1)[:, 0, :]
    stall = s["stall"] if seed % 4 >= 2 else 0.0
    try:
        image = compile_network(net, c)
    except FitError:
        return None
    return net, x, image, stall


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


async def check_seed(tb: CoreTB, seed: int, case, c: CoreConfig, stats: dict) -> None:
    net, x, image, stall = case
    tb.stall = stall
    tb.rng = random.Random(seed)
    steps_total = x.shape[0]
    await tb.load(image)
    start, wall = tb.cycles, time.perf_counter()
    want, want_final = expected(net, x)
    want_states = expected_states(net, x)
    state_addrs = membrane_reads(net, image)

    async def observe(t: int) -> None:
        states = decode_membranes(await tb.read_many(state_addrs), net, image)
        if states != want_states[t]:
            raise AssertionError(f"step {t}/{steps_total}: states: rtl {states} golden "
                                 f"{want_states[t]}")

    back_to_back = seed % 8 in (3, 4)
    records = await tb.run(x, observe=None if back_to_back else observe)
    stats["run_cycles"] += tb.cycles - start
    stats["run_s"] += time.perf_counter() - wall
    for t in range(steps_total):
        got = decode_step(records[t], net, image)
        if got != want[t]:
            raise AssertionError(f"step {t}/{steps_total}: {first_difference(got, want[t])}")
    final = decode_membranes(await tb.read_many(state_addrs), net, image)
    if final != want_final:
        raise AssertionError(f"final states: rtl {final} golden {want_final}")
    counters = await tb.read_counters()
    await tb.expect_quiet()
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
    stats["observed_steps"] += 0 if back_to_back else steps_total
    stats["kinds"][net.input_kind] += 1
    stats["stalled"] += stall > 0
    stats["layers"] += len(net.layers)
    stats["ssm_layers"] += sum(layer.kind == "ssm" for layer in net.layers)
    lifs = [layer for layer in net.layers if layer.kind == "lif"]
    stats["edges"] += sum(len(layer.inputs) for layer in lifs)
    stats["recurrent_edges"] += sum(p.recurrent for layer in lifs for p in layer.inputs)
    stats["events"] += sum(g["events"] for g in golden.values())
    stats["spikes"] += sum(g["spikes"] for g in golden.values())
    stats["records"] += sum(len(r) for r in records)


@cocotb.test()
async def random_networks(dut):
    s = json.loads(os.environ["SPIKEFORGE_CORE"])
    c = CoreConfig.from_dict(s["config"])
    timing = TimingProfile(s["timing"])
    seeds = parse_cases(os.environ.get("SPIKEFORGE_SEEDS", "0-10"))
    coverage = coverage_for(c)
    cases = steer(lambda seed, attempt: draw_case(seed, attempt, c, s), seeds, coverage)
    stats = {"config": config_tag(c), "seeds": len(seeds), "networks": 0, "fit_errors": [],
             "failures": [], "steps": 0, "observed_steps": 0, "kinds": {"spike": 0, "int": 0},
             "stalled": 0, "layers": 0, "edges": 0, "recurrent_edges": 0, "events": 0,
             "spikes": 0, "records": 0, "run_cycles": 0, "run_s": 0.0, "ssm_layers": 0,
             "coverage": coverage.counts, "missing": coverage.missing,
             "coverage_table": coverage.table()}
    tb = CoreTB(dut, c, timing=timing)
    wall = time.perf_counter()
    await tb.start()
    try:
        for seed, attempt, case in cases:
            if case is None:
                stats["fit_errors"].append(seed)
                continue
            try:
                await check_seed(tb, seed, case, c, stats)
            except Exception as e:  # noqa: BLE001 - every failing seed is reported
                stats["failures"].append({"seed": f"{seed}.{attempt}",
                                          "error": f"{type(e).__name__}: {e}",
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
        raise AssertionError(f"{len(stats['fit_errors'])} of {drawn} seeds drew no network "
                             f"that fits {config_tag(c)}: {stats['fit_errors'][:3]}")
    if stats["stalled"] and not stats["held"]:
        raise AssertionError("the output stream was never held back on the stalled seeds")
    if s.get("require_coverage") and coverage.missing:
        raise AssertionError(f"the networks on {config_tag(c)} left coverage bins empty: "
                             f"{', '.join(coverage.missing)}")
