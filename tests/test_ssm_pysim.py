"""The SSM unit of the core on Amaranth's simulator: random networks with SSM
layers against the golden model (every y, every hidden spike, the final state
S, the counters), a directed case that hits both saturations with selective
decay, the cycle cost model, and the SSM generics / fit errors."""

from __future__ import annotations

import dataclasses
import functools
import random
import re

import pytest
import torch
from netgen import random_input, random_network, steer
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import COUNTERS, CoreConfig, FitError, Region, address_map
from spikeforge.contract.harness import expected_counters
from spikeforge.contract.timing import COMPACT, PIPELINED
from spikeforge.golden.coverage import Coverage
from spikeforge.golden.integer import (
    Format,
    LIFLayer,
    Network,
    Operand,
    Projection,
    SSMLayer,
    floor_shift,
    signed_range,
)
from spikeforge.sim.pysim import check_run, read_words, run_core, write_words

I64 = torch.int64


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=I64)


def _config(fmt: Format, lanes: int, layers: int, **kw) -> CoreConfig:
    args = dict(lanes=lanes, fmt=dataclasses.replace(fmt, acc_bits=48), max_layers=layers,
                max_edges=16, max_neurons=8, max_inputs=8, max_fanin=128,
                neuron_depth=32, weight_depth=512, ssm_max_n=6, ssm_max_m=6, ssm_depth=80,
                ssm_param_depth=4096)
    return CoreConfig(**{**args, **kw})


def _check(net: Network, config: CoreConfig, x: torch.Tensor, *, stall: float, seed: int = 0,
           observe: bool = True, timing=COMPACT):
    """Run on the simulator; assert every step's records and (with ``observe``) every
    layer's state (LIF membranes, every SSM state ``S``), the final state and the
    counters."""
    run = run_core(net, config, x, stall=stall, seed=seed, observe=observe, timing=timing)
    check_run(net, x, run)
    counters = run.counters
    golden = expected_counters(net, x, config.lanes, timing)
    n = len(COUNTERS)
    for i, layer in enumerate(net.layers):
        got = dict(zip(COUNTERS, counters[i * n:(i + 1) * n], strict=True))
        for key in ("events", "spikes", "syn_cycles"):
            assert got[key] == golden[layer.name][key], (layer.name, key)
        if layer.kind == "ssm":
            floor = golden[layer.name]["neuron_cycles_min"]
            if stall == 0 and config.lanes <= min(golden[layer.name]["pass_rows"]) + 3:
                assert got["neuron_cycles"] == floor, layer.name
            else:
                assert got["neuron_cycles"] >= floor, layer.name
    assert counters[n * config.max_layers + 1] == len(x)  # steps
    return counters


SSM_SEEDS = 12


def _draw(seed: int, attempt: int):
    """Seed ``seed``'s random network with SSM layers (draw ``attempt``), its input
    and lanes."""
    rng = random.Random(5000 + seed if attempt == 0 else f"ssm-pysim:{seed}.{attempt}")
    in_bits = rng.randint(3, 8)
    fmt = Format(u_bits=rng.randint(8, 12), w_bits=rng.randint(2, 8),
                 frac_bits=rng.randint(0, 8), in_bits=in_bits, s_bits=rng.randint(4, 12),
                 y_bits=rng.randint(2, in_bits))
    net = random_network(rng, max_ssm=2, ssm_prob=1.0, max_lif=2, max_size=6, fmt=fmt,
                         ssm_max_n=6, ssm_max_m=6)
    lanes = rng.choice([1, 2, 3, 4])
    return net, random_input(rng, net, 4, 1)[:, 0, :], lanes


@functools.cache
def _random_cases() -> tuple[list, Coverage]:
    """The cases of :func:`test_ssm_networks_match_golden`, steered into the coverage
    bins of the SSM rules (and the LIF rules around them), and their coverage."""
    coverage = Coverage(ssm=True)
    return steer(_draw, range(SSM_SEEDS), coverage), coverage


@pytest.mark.parametrize("seed", range(SSM_SEEDS))
def test_ssm_networks_match_golden(seed):
    """Every record and every layer's state, every step (seeds ``4k + 3`` back to
    back, the state after the last), the counters; seeds ``3k + 2`` on the
    pipelined core."""
    net, x, lanes = _random_cases()[0][seed][2]
    assert any(layer.kind == "ssm" for layer in net.layers)
    _check(net, _config(net.fmt, lanes, len(net.layers)), x, stall=0.3 if seed % 2 else 0.0,
           seed=seed, observe=seed % 4 != 3, timing=PIPELINED if seed % 3 == 2 else COMPACT)


def test_ssm_cases_cover_every_bin(coverage_tables):
    """The cases of :func:`test_ssm_networks_match_golden` hit every coverage bin: the
    SSM rules' (saturations x decay modes, operand sources, decay and gate corners)
    and the LIF rules' around them."""
    coverage = _random_cases()[1]
    coverage_tables["pysim SSM"] = coverage.table()
    assert not coverage.missing, coverage.table()


def _gated_net(fmt: Format, *, k: Operand, v: Operand, q: Operand, y_shift: int) -> Network:
    """input (4 spikes) -> gate LIF (2 neurons, copies inputs 0, 1) and key LIF (3, copies
    inputs 1..3); SSM 3 x 5 with selective decay from the gate."""
    gate = LIFLayer("gate", 2, _t([0, 0]), _t([1, 1]), _t([0, 0]),
                    [Projection("input", _t([[1, 0, 0, 0], [0, 1, 0, 0]]))], reset="zero")
    key = LIFLayer("key", 3, _t([0, 0, 0]), _t([1, 1, 1]), _t([0, 0, 0]),
                   [Projection("input", _t([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))],
                   reset="zero")
    one = fmt.one
    decay = _t([[one, one, one], [one // 2, 0, one], [0, 0, 0], [one - 1, one // 4, 3]])
    mem = SSMLayer("mem", 3, 5, k, v, q, decay, mode="selective", gate="gate", y_shift=y_shift)
    return Network(input_size=4, input_kind="spike", layers=[gate, key, mem], output="mem",
                   fmt=fmt)


def test_saturations_with_selective_decay():
    """Large constants drive S and y into both saturation bounds; the decay row
    changes every step with the gate's spikes."""
    fmt = Format(w_bits=2, u_bits=6, frac_bits=4, in_bits=6, s_bits=6, y_bits=4, acc_bits=8)
    net = _gated_net(fmt, k=Operand(source="key"), v=Operand(const=_t([31, -32, 7, 0, -5])),
                     q=Operand(const=_t([-32, 31, 1])), y_shift=2)
    rng = random.Random(7)
    x = _t([[rng.randint(0, 1) for _ in range(4)] for _ in range(10)])
    trace = net.run(x[:, None, :])
    # The unsaturated values, recomputed step by step: both bounds of s and y are hit.
    lo, hi = signed_range(fmt.s_bits)
    S = torch.zeros(3, 5, dtype=I64)
    hits = set()
    for t in range(len(x)):
        g = int((trace.spikes["gate"][t, 0] * _t([1, 2])).sum())
        wide = floor_shift(net.layer("mem").decay[g][:, None] * S, fmt.frac_bits) \
            + trace.spikes["key"][t, 0][:, None] * net.layer("mem").v.const[None, :]
        hits |= {"s_lo"} if (wide < lo).any() else set()
        hits |= {"s_hi"} if (wide > hi).any() else set()
        S = wide.clamp(lo, hi)
        y = floor_shift(net.layer("mem").q.const @ S, 2)
        hits |= {"y_lo"} if (y < signed_range(fmt.y_bits)[0]).any() else set()
        hits |= {"y_hi"} if (y > signed_range(fmt.y_bits)[1]).any() else set()
    assert hits == {"s_lo", "s_hi", "y_lo", "y_hi"}
    for lanes in (1, 2, 5):
        _check(net, _config(fmt, lanes, 3), x, stall=0.0)
    _check(net, _config(fmt, 2, 3), x, stall=0.5, seed=3)


def test_pass_cost_is_independent_of_activity():
    """The decay pass visits every cell: ceil(m/P) * (n + 4) clocks per step whatever
    the spikes; the gather costs 10 clocks plus one per event or constant entry."""
    fmt = Format(w_bits=2, u_bits=6, frac_bits=4, in_bits=6, s_bits=8, y_bits=6, acc_bits=8)
    net = _gated_net(fmt, k=Operand(source="key"), v=Operand(const=_t([1, 2, 3, 4, 5])),
                     q=Operand(source="key"), y_shift=0)
    config = _config(fmt, 2, 3)
    quiet = torch.zeros(5, 4, dtype=I64)
    busy = torch.ones(5, 4, dtype=I64)
    n = len(COUNTERS)
    c_quiet = _check(net, config, quiet, stall=0.0)[2 * n:3 * n]
    c_busy = _check(net, config, busy, stall=0.0)[2 * n:3 * n]
    cols = 3  # ceil(5 / 2)
    assert c_quiet[1] == c_busy[1] == 5 * cols * (3 + 4)  # the pass: fixed cost
    assert c_quiet[0] == 5 * (10 + 5)  # gather: v's 5 constants
    assert c_busy[0] == 5 * (10 + 5 + 3 + 3 + 2)  # plus k, q and gate events
    assert c_busy[2] == 5 * (3 + 3 + 2)  # events counted


def test_pass_skips_idle_rows_without_decay():
    """With every decay 1.0 the pass visits only the rows whose k_i or q_i is nonzero:
    ceil(m/P) * (rows + 4) clocks per step, so silence costs 4 clocks per chunk."""
    fmt = Format(w_bits=2, u_bits=6, frac_bits=4, in_bits=6, s_bits=8, y_bits=6, acc_bits=8)
    net = _gated_net(fmt, k=Operand(source="key"), v=Operand(const=_t([1, 2, 3, 4, 5])),
                     q=Operand(source="key"), y_shift=0)
    net.layer("mem").decay.fill_(fmt.one)
    config = _config(fmt, 2, 3)
    x = _t([[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 1], [1, 0, 0, 1], [0, 0, 0, 0]])
    counters = _check(net, config, x, stall=0.0)
    n = len(COUNTERS)
    active = [0, 1, 3, 1, 0]  # rows with a key spike (k = q = key)
    assert counters[2 * n + 1] == sum(3 * (rows + 4) for rows in active)
    # The state is still every cell's: read back and compared inside _check.


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ssm_max_n": 4}, "CoreConfig.ssm_max_m must be positive in a core with an SSM unit, "
                       "not 0"),
    ({"ssm_max_n": 300, "ssm_max_m": 4, "ssm_depth": 1000, "ssm_param_depth": 1000},
     "CoreConfig.ssm_max_n=300 exceeds max_neurons=256"),
    ({"ssm_max_n": 4, "ssm_max_m": 4, "ssm_depth": 1, "ssm_param_depth": 100},
     "CoreConfig.ssm_depth=1 cannot hold a 4 x 4 state (4 cells per lane)"),
    ({"ssm_max_n": 4, "ssm_max_m": 4, "ssm_depth": 4, "ssm_param_depth": 15},
     "CoreConfig.ssm_param_depth=15 cannot hold the parameters of a 4 x 4 layer (16 words)"),
    ({"ssm_max_n": 4, "ssm_max_m": 4, "ssm_depth": 4, "ssm_param_depth": 16,
      "fmt": Format(y_bits=9)},
     "CoreConfig.fmt.y_bits=9 exceeds in_bits=8 or u_bits=16 (a y travels as an event value "
     "and in an output record)"),
    ({"fmt": Format(s_bits=33)}, "CoreConfig.fmt.s_bits must be an integer in 2..32, not 33"),
    ({"max_layers": 64, "max_neurons": 1024, "neuron_depth": 1024, "ssm_max_n": 1024,
      "ssm_max_m": 1024, "ssm_depth": 1 << 20, "ssm_param_depth": 1 << 20},
     "CoreConfig: a table entry needs 94 bits, more than the 64 of the host port"),
    ({"lanes": 64, "weight_depth": 1 << 24},
     "CoreConfig: host addresses need 33 bits, more than 31"),
])
def test_ssm_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        CoreConfig(**kwargs)


def _ssm_net(n=3, m=5, fmt=None, copies=1) -> Network:
    fmt = fmt or Format()
    key = LIFLayer("key", n, torch.zeros(n, dtype=I64), torch.ones(n, dtype=I64),
                   torch.zeros(n, dtype=I64), [Projection("input", torch.ones(n, 4, dtype=I64))])
    mems = [SSMLayer(f"mem{i}" if i else "mem", n, m, Operand(source="key"),
                     Operand(const=torch.ones(m, dtype=I64)), Operand(source="key"),
                     torch.full((n,), 128, dtype=I64)) for i in range(copies)]
    return Network(input_size=4, input_kind="spike", layers=[key, *mems], output="mem",
                   fmt=fmt)


@pytest.mark.parametrize(("net", "kwargs", "message"), [
    (_ssm_net(), {"ssm_max_n": 0, "ssm_max_m": 0, "ssm_depth": 0, "ssm_param_depth": 0},
     "layer 'mem' is an SSM layer and this core has no SSM unit (ssm_max_n=0)"),
    (_ssm_net(n=5), {}, "layer 'mem' has n=5, more than ssm_max_n=4"),
    (_ssm_net(m=7), {}, "layer 'mem' has m=7, more than ssm_max_m=6"),
    (_ssm_net(n=3, m=6, copies=2), {"ssm_depth": 24},
     "the SSM states need more than ssm_depth=24 words per lane"),
    (_ssm_net(n=3, m=6, copies=2), {"ssm_param_depth": 20},
     "the SSM parameters need more than ssm_param_depth=20 words"),
    (_ssm_net(fmt=Format(s_bits=12)), {},
     "the network's s_bits=12 differs from the core's s_bits=16"),
])
def test_ssm_fit_errors(net, kwargs, message):
    config = CoreConfig(**{"lanes": 1, "max_neurons": 8, "max_inputs": 8, "neuron_depth": 16,
                           "ssm_max_n": 4, "ssm_max_m": 6, "ssm_depth": 64,
                           "ssm_param_depth": 64, **kwargs})
    with pytest.raises(FitError, match=re.escape(message) + "$"):
        compile_network(net, config)


def test_address_map_has_the_ssm_regions():
    c = CoreConfig(lanes=4, max_neurons=16, max_inputs=16, neuron_depth=16, ssm_max_n=8,
                   ssm_max_m=8, ssm_depth=32, ssm_param_depth=100)
    regions = {e.region: e for e in address_map(c)}
    assert regions[Region.SSM_STATE].state and regions[Region.SSM_STATE].lanes == 4
    assert regions[Region.SSM_STATE].depth == 32 and regions[Region.SSM_STATE].writable
    assert not regions[Region.SSM_PARAMS].state and regions[Region.SSM_PARAMS].depth == 100
    assert regions[Region.SSM_LAYERS].depth == c.max_layers
    assert c.region_bits == 4 and c.address(Region.SSM_PARAMS, 0, 99) < 1 << c.host_addr_bits
    plain = CoreConfig()
    assert Region.SSM_STATE not in {e.region for e in address_map(plain)}
    assert plain.region_bits == 3  # a core without an SSM unit keeps its address space


@pytest.mark.parametrize("lanes", [1, 2])
def test_smallest_ssm_unit(lanes):
    """A 1 x 1 SSM unit (ssm_max_n = ssm_max_m = 1, one state word) with a recurrent q."""
    fmt = Format(w_bits=4, u_bits=8, frac_bits=3, in_bits=5, s_bits=6, y_bits=4, acc_bits=12)
    key = LIFLayer("key", 1, _t([0]), _t([1]), _t([0]), [Projection("input", _t([[1, 1]]))])
    mem = SSMLayer("mem", 1, 1, Operand(source="key"), Operand(const=_t([9])),
                   Operand(source="key", recurrent=True), _t([5]), y_shift=1)
    net = Network(input_size=2, input_kind="spike", layers=[key, mem], output="mem", fmt=fmt)
    config = CoreConfig(lanes=lanes,
                        fmt=Format(w_bits=4, u_bits=8, frac_bits=3, in_bits=5,
                                   acc_bits=12, s_bits=6, y_bits=4),
                        max_layers=2, max_edges=2, max_neurons=2, max_inputs=2, max_fanin=4,
                        neuron_depth=2, weight_depth=8, ssm_max_n=1, ssm_max_m=1, ssm_depth=1,
                        ssm_param_depth=4)
    _check(net, config, _t([[1, 0], [0, 0], [1, 1], [0, 1], [0, 0]]), stall=0.0)


@pytest.mark.parametrize("timing", [COMPACT, PIPELINED], ids=lambda t: t.value)
def test_host_port_reads_back_every_ssm_word(timing):
    """Every word the image writes into the SSM regions (table, parameters, state)
    reads back unchanged through the host port (reads one per clock), with either
    profile's read latency."""
    from amaranth.sim import Simulator
    from spikeforge.gateware.core import NPUCore

    fmt = Format(w_bits=2, u_bits=6, frac_bits=4, in_bits=6, s_bits=8, y_bits=6, acc_bits=8)
    net = _gated_net(fmt, k=Operand(source="key"), v=Operand(const=_t([1, -2, 3, -4, 5])),
                     q=Operand(const=_t([-32, 31, 7])), y_shift=3)
    config = _config(fmt, 2, 3)
    image = compile_network(net, config)
    shift = config.lane_bits + config.addr_bits
    ssm_regions = (Region.SSM_LAYERS, Region.SSM_PARAMS, Region.SSM_STATE)
    writes = [(a, d) for a, d in image.writes if a >> shift in ssm_regions]
    assert {a >> shift for a, _ in writes} == set(ssm_regions)
    # Nonzero state words too (the image zeroes the state): a pattern per address.
    writes += [(a, (a * 37) & 0xFF) for a, _ in writes if a >> shift == Region.SSM_STATE]
    final = dict(writes)
    dut = NPUCore(config=config, timing=timing)
    got = {}

    async def bench(ctx):
        await write_words(ctx, dut, writes)
        got.update(zip(final, await read_words(ctx, dut, list(final)), strict=True))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == final
