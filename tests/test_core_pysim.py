"""Unit tests of the gateware on Amaranth's simulator: the neuron datapath
against the golden model, the whole core on small random networks (with and
without output backpressure), the counters, and the generics / fit errors."""

from __future__ import annotations

import dataclasses
import functools
import random
import re

import pytest
import torch
from amaranth.sim import Simulator
from netgen import random_input, random_network, steer
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import (
    COUNTERS,
    EDGE_FIELDS,
    CoreConfig,
    FitError,
    Region,
    pack,
    unpack,
)
from spikeforge.contract.harness import decode_step, expected, expected_counters, input_events
from spikeforge.contract.timing import COMPACT, PIPELINED, TimingProfile
from spikeforge.gateware.core import NPUCore
from spikeforge.gateware.lane import NeuronUpdate
from spikeforge.golden.coverage import Coverage
from spikeforge.golden.integer import (
    Format,
    LIFLayer,
    Network,
    Projection,
    signed_range,
)
from spikeforge.sim.pysim import check_run, read_words, run_core, send_step, write_words

I64 = torch.int64


def _golden_neuron(fmt, alpha, theta, bias, reset, v_reset, spiking, u, acc):
    """One golden step of a 1-neuron layer fed ``acc`` through a unit weight, from state ``u``."""
    layer = LIFLayer("n", 1, alpha=torch.tensor([alpha]), theta=torch.tensor([theta]),
                     bias=torch.tensor([bias]), reset=reset, v_reset=v_reset, spiking=spiking,
                     inputs=[Projection("input", torch.tensor([[1]]))])
    net = Network(input_size=1, input_kind="int", layers=[layer], output="n", fmt=fmt)
    state = net.initial_state(len(u))
    state["n.u"] = torch.tensor(u, dtype=I64)[:, None]
    trace = net.run(torch.tensor(acc, dtype=I64)[None, :, None], state)
    spikes = trace.spikes["n"][0, :, 0].tolist() if spiking else [0] * len(u)
    return spikes, trace.membranes["n"][0, :, 0].tolist()


@pytest.mark.parametrize("seed", range(6))
def test_neuron_update_matches_golden(seed):
    rng = random.Random(seed)
    u_bits, frac_bits = rng.choice([(5, 2), (6, 3), (4, 0), (8, 4)])
    in_bits = u_bits + 2  # currents beyond the membrane range, so saturation is hit
    fmt = Format(w_bits=2, u_bits=u_bits, frac_bits=frac_bits, in_bits=in_bits,
                 acc_bits=in_bits + 1)
    dut = NeuronUpdate(u_bits=u_bits, frac_bits=frac_bits, acc_bits=fmt.acc_bits)
    u_lo, u_hi = signed_range(u_bits)
    a_lo, a_hi = signed_range(in_bits)
    groups = []
    for _ in range(8):
        reset = rng.choice(["subtract", "zero", "none"])
        spiking = reset != "none" or rng.random() < 0.5
        groups.append(dict(alpha=rng.randint(0, 1 << frac_bits), theta=rng.randint(1, u_hi),
                           bias=rng.randint(u_lo, u_hi), reset=reset,
                           v_reset=rng.randint(u_lo, u_hi), spiking=spiking))
    cases = [(rng.randint(u_lo, u_hi), rng.randint(a_lo, a_hi)) for _ in range(60)]
    cases += [(u_lo, a_lo), (u_hi, a_hi), (u_lo, 0), (u_hi, 0), (-1, 0), (0, 0)]
    results = []

    async def bench(ctx):
        for g in groups:
            for u, acc in cases:
                ctx.set(dut.u, u)
                ctx.set(dut.acc, acc)
                ctx.set(dut.alpha, g["alpha"])
                ctx.set(dut.theta, g["theta"])
                ctx.set(dut.bias, g["bias"])
                ctx.set(dut.v_reset, g["v_reset"])
                ctx.set(dut.reset, {"subtract": 0, "zero": 1, "none": 2}[g["reset"]])
                ctx.set(dut.spiking, int(g["spiking"]))
                await ctx.delay(1e-9)
                results.append((ctx.get(dut.spike), ctx.get(dut.u_new), ctx.get(dut.v)))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    saturated = 0
    for gi, g in enumerate(groups):
        spikes, u_new = _golden_neuron(fmt, **g, u=[u for u, _ in cases],
                                       acc=[a for _, a in cases])
        got = results[gi * len(cases):(gi + 1) * len(cases)]
        assert [s for s, _, _ in got] == spikes, g
        assert [u for _, u, _ in got] == u_new, g
        saturated += sum(v in (u_lo, u_hi) for _, _, v in got)
    assert saturated > 0  # the saturation bounds were reached


def _core_config(net: Network, lanes: int) -> CoreConfig:
    f = net.fmt
    return CoreConfig(lanes=lanes,
                      fmt=dataclasses.replace(f, acc_bits=48),
                      max_layers=len(net.layers), max_edges=16, max_neurons=8, max_inputs=8,
                      max_fanin=128, neuron_depth=32, weight_depth=512)


RANDOM_SEEDS = 32
# The seeds of each timing profile, which must cover the coverage bins on their own
# (seeds 24.. of the pipelined profile with two groups of lanes).
TIMING_GROUPS = {"compact": range(16), "pipelined": range(16, RANDOM_SEEDS)}


def _timing_for(seed):
    return PIPELINED if seed >= 16 else COMPACT


def _draw(seed: int, attempt: int):
    """Seed ``seed``'s random LIF network (draw ``attempt``), its input and lanes."""
    rng = random.Random(1000 + seed if attempt == 0 else f"core-pysim:{seed}.{attempt}")
    net = random_network(rng, max_ssm=0, ssm_prob=0.0, max_lif=3, max_size=8,
                         fmt=Format(u_bits=rng.randint(4, 12), w_bits=rng.randint(2, 8),
                                    frac_bits=rng.randint(0, 8), in_bits=rng.randint(2, 8)))
    lanes = rng.choice([1, 2, 3, 4])
    if seed >= 24:  # two groups of lanes, so lanes share per-group registers
        lanes = 5
    return net, random_input(rng, net, 5, 1)[:, 0, :], lanes


@functools.cache
def _random_cases() -> tuple[dict, dict[str, Coverage]]:
    """The random cases of :func:`test_core_matches_golden` (seed -> case), each
    timing group's steered into every coverage bin of the integer model's LIF
    rules, and each group's coverage."""
    cases, coverage = {}, {}
    for group, seeds in TIMING_GROUPS.items():
        coverage[group] = Coverage()
        cases.update((seed, case) for seed, _, case in steer(_draw, seeds, coverage[group]))
    return cases, coverage


@pytest.mark.parametrize("seed", range(RANDOM_SEEDS))
def test_core_matches_golden(seed):
    """Random LIF networks: every spike of every layer, every output value and every
    layer's membranes, every step (seeds ``4k + 3`` run their steps back to back
    and read the membranes after the last); the event and spike counters equal
    the golden counts.  Seeds 16.. build the pipelined core (``PIPELINED``)."""
    net, x, lanes = _random_cases()[0][seed]
    config = _core_config(net, lanes)
    run = run_core(net, config, x, stall=0.4 if seed % 2 else 0.0, seed=seed,
                   observe=seed % 4 != 3, timing=_timing_for(seed))
    check_run(net, x, run)
    counters = run.counters
    golden = expected_counters(net, x, lanes, _timing_for(seed))
    n = len(COUNTERS)
    for i, layer in enumerate(net.layers):
        got = dict(zip(COUNTERS, counters[i * n:(i + 1) * n], strict=True))
        for key in ("events", "spikes", "syn_cycles"):
            assert got[key] == golden[layer.name][key], (layer.name, key)
        rows = -(-layer.size // lanes)
        assert got["neuron_cycles"] >= 2 * rows * len(x)  # two clocks per row, plus router waits
    assert counters[n * config.max_layers + 1] == len(x)  # steps


@pytest.mark.parametrize("seed", range(8))
def test_more_neurons_than_inputs(seed):
    """``max_inputs`` well below ``max_neurons`` (event indices wider than the input
    lists' counts): the input's second bank is read where it was written, so every
    step after the first equals the golden model too (it read nothing, or another
    bank's events, when the write address put the bank bit below the index bits)."""
    rng = random.Random(f"more-neurons:{seed}")
    net = random_network(rng, max_ssm=0, ssm_prob=0.0, max_lif=2, max_size=8,
                         fmt=Format(u_bits=rng.randint(6, 12), w_bits=rng.randint(2, 8),
                                    frac_bits=rng.randint(0, 8), in_bits=rng.randint(2, 8)))
    x = random_input(rng, net, 5, 1)[:, 0, :]
    lanes = rng.choice([1, 2, 3])
    config = dataclasses.replace(_core_config(net, lanes), max_neurons=lanes * 16 + 1,
                                 max_inputs=8, neuron_depth=32)
    assert config.idx_bits > config.max_inputs.bit_length()
    check_run(net, x, run_core(net, config, x, timing=_timing_for(seed * 4)))


@pytest.mark.parametrize("group", TIMING_GROUPS)
def test_random_cases_cover_every_bin(group, coverage_tables):
    """The cases of :func:`test_core_matches_golden` of each timing profile hit every
    coverage bin of the LIF rules (saturations x spikes x reset modes, thresholds,
    leaks and biases at their bounds, empty and full event lists, recurrent
    edges, ...)."""
    coverage = _random_cases()[1][group]
    coverage_tables[f"pysim core, {group} profile"] = coverage.table()
    assert not coverage.missing, coverage.table()


@pytest.mark.parametrize("seed", range(4))
def test_pipelining_changes_only_the_synaptic_clocks(seed):
    """The pipelined core gives the same records and membranes as the compact one,
    and exactly three more synaptic (and busy) clocks per row when the output never
    stalls; every other counter is the same."""
    rng = random.Random(5000 + seed)
    net = random_network(rng, max_ssm=0, ssm_prob=0.0, max_lif=3, max_size=8,
                         fmt=Format(u_bits=rng.randint(4, 12), w_bits=rng.randint(2, 8),
                                    frac_bits=rng.randint(0, 8), in_bits=rng.randint(2, 8)))
    lanes = rng.choice([2, 4, 5])
    config = _core_config(net, lanes)
    x = random_input(rng, net, 4, 1)[:, 0, :]
    compact = run_core(net, config, x)
    pipelined = run_core(net, config, x, timing=PIPELINED)
    assert pipelined.steps == compact.steps
    assert pipelined.membranes == compact.membranes
    want = list(compact.counters)
    n = len(COUNTERS)
    for i, layer in enumerate(net.layers):
        extra = 3 * -(-layer.size // lanes) * len(x)  # three DRAIN clocks per row
        want[i * n + COUNTERS.index("syn_cycles")] += extra
        want[n * config.max_layers] += extra  # busy clocks
    assert pipelined.counters == want


def test_zero_input_costs_no_event_cycles():
    """Silence in, silence through: the synaptic cycles do not depend on layer size
    beyond the per-row overhead, and no events are counted."""
    w = torch.ones(4, 3, dtype=I64)
    layer = LIFLayer("h", 4, alpha=torch.zeros(4, dtype=I64), theta=torch.full((4,), 5),
                     bias=torch.zeros(4, dtype=I64), inputs=[Projection("input", w)])
    net = Network(input_size=3, input_kind="spike", layers=[layer], output="h")
    config = CoreConfig(lanes=2, max_layers=1, max_edges=1, max_neurons=4, max_inputs=4,
                        max_fanin=4, neuron_depth=4, weight_depth=64)
    quiet = torch.zeros(3, 3, dtype=I64)
    busy = torch.ones(3, 3, dtype=I64)
    c_quiet = run_core(net, config, quiet).counters
    c_busy = run_core(net, config, busy).counters
    assert c_quiet[2] == 0 and c_busy[2] == 9  # events: 3 per step
    rows = 2
    # Each event costs exactly one clock per row in the synaptic phase.
    assert c_busy[0] - c_quiet[0] == 9 * rows


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lanes": 0}, "CoreConfig.lanes must be an integer in 1..64, not 0"),
    ({"fmt": Format(w_bits=17)}, "CoreConfig.fmt.w_bits must be an integer in 2..16, not 17"),
    ({"fmt": Format(acc_bits=16)},
     "CoreConfig.fmt.acc_bits=16 is too narrow: a fan-in of 256 events of 8-bit values times "
     "8-bit weights needs 24 bits"),
    ({"fmt": (8, 16)}, "CoreConfig.fmt must be a Format, not (8, 16)"),
    ({"max_neurons": 2048},
     "CoreConfig.max_neurons=2048 exceeds the 1024 neuron slots (neuron_depth x lanes)"),
])
def test_core_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        CoreConfig(**kwargs)


def _small_net(size=4, inputs=3, fmt=None) -> Network:
    layer = LIFLayer("h", size, alpha=torch.zeros(size, dtype=I64),
                     theta=torch.ones(size, dtype=I64), bias=torch.zeros(size, dtype=I64),
                     inputs=[Projection("input", torch.ones(size, inputs, dtype=I64))])
    return Network(input_size=inputs, input_kind="spike", layers=[layer], output="h", fmt=fmt)


def _two_layers() -> Network:
    """Two layers of 4 neurons: 2 rows each on 2 lanes, 4 neuron slots per lane."""
    first = _small_net(size=4).layers[0]
    second = LIFLayer("g", 4, alpha=torch.zeros(4, dtype=I64), theta=torch.ones(4, dtype=I64),
                      bias=torch.zeros(4, dtype=I64),
                      inputs=[Projection("h", torch.ones(4, 4, dtype=I64))])
    return Network(input_size=3, input_kind="spike", layers=[first, second], output="g")


@pytest.mark.parametrize(("net", "kwargs", "message"), [
    (_small_net(size=9), {"max_neurons": 8},
     "layer 'h' has 9 neurons, more than max_neurons=8"),
    (_small_net(inputs=9), {"max_inputs": 8}, "input size 9 exceeds max_inputs=8"),
    (_small_net(inputs=5), {"max_fanin": 4},
     "layer 'h' has a fan-in of 5, more than max_fanin=4"),
    (_small_net(size=8, inputs=8), {"weight_depth": 10},
     "the weights need more than weight_depth=10 words per lane"),
    (_two_layers(), {"neuron_depth": 3, "max_neurons": 4, "lanes": 2},
     "the layers need more than neuron_depth=3 neuron slots per lane"),
    (_small_net(fmt=Format(w_bits=4)), {},
     "the network's w_bits=4 differs from the core's w_bits=8"),
])
def test_fit_errors(net, kwargs, message):
    config = CoreConfig(**{"lanes": 1, "max_neurons": 8, "max_inputs": 8, "neuron_depth": 16,
                           **kwargs})
    with pytest.raises(FitError, match=re.escape(message) + "$"):
        compile_network(net, config)


def test_neuron_update_rejects_bad_generics():
    with pytest.raises(ValueError, match=re.escape("u_bits must be an integer >= 2, not 1")):
        NeuronUpdate(u_bits=1, frac_bits=8, acc_bits=24)


def test_neuron_fire_rejects_bad_generics():
    from spikeforge.gateware.lane import NeuronFire

    with pytest.raises(ValueError, match=re.escape("total_bits must be an integer >= 8, not 7")):
        NeuronFire(u_bits=8, total_bits=7)


def test_core_rejects_a_config_that_is_not_a_core_config():
    from spikeforge.gateware.core import NPUCore

    with pytest.raises(TypeError, match=re.escape("config must be a CoreConfig, not {'lanes': 8}")):
        NPUCore(config={"lanes": 8})


def test_core_rejects_timing_that_is_not_a_profile():
    from spikeforge.gateware.core import NPUCore

    with pytest.raises(TypeError, match=re.escape("timing must be None or a TimingProfile, not "
                                                  "'pipelined'") + "$"):
        NPUCore(config=CoreConfig(), timing="pipelined")


def test_timing_profiles():
    assert (COMPACT.host_read_latency, COMPACT.row_overhead, COMPACT.pipelined) == (1, 5, False)
    assert (PIPELINED.host_read_latency, PIPELINED.row_overhead) == (6, 8)
    assert TimingProfile("pipelined") is PIPELINED


@pytest.mark.parametrize(("index", "value", "message"), [
    (16, 0, "input index 16 does not fit 4 bits"),
    (0, 8, "input value 8 does not fit signed 4 bits"),
    (0, -9, "input value -9 does not fit signed 4 bits"),
])
def test_input_word_range(index, value, message):
    from spikeforge.contract.config import input_word

    config = CoreConfig(lanes=1, fmt=Format(in_bits=4, w_bits=4, acc_bits=16), max_neurons=16,
                        max_inputs=16, max_fanin=16, neuron_depth=16)
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        input_word(config, index, value, 0)
    assert input_word(config, 15, -8, 1) == 15 | (8 << 4) | (1 << 8)


def _run_with_host_at_start(dut, net, image, x, *, at_start, before=None):
    """Run the steps ``x`` on ``dut`` (``image`` written, counters cleared): per
    step, ``before(ctx)`` while idle (if given), the step's input, then
    ``at_start(ctx, t)`` in the clock where IDLE would start step ``t`` (it must
    return with the step started or about to start); every step's records must
    equal the golden model's."""
    steps = [[] for _ in x]

    async def host(ctx):
        await write_words(ctx, dut, image.writes)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for t, row in enumerate(x.tolist()):
            while ctx.get(dut.busy):
                await ctx.tick()
            if before is not None:
                await before(ctx)
            await send_step(ctx, dut, input_events(row))
            assert not ctx.get(dut.busy)  # the clock after the end marker
            await at_start(ctx, t)

    async def sink(ctx):
        ctx.set(dut.output.ready, 1)
        t = 0
        for _ in range(100_000):
            if t == len(x):
                return
            valid, word = ctx.get(dut.output.valid), ctx.get(dut.output.payload.as_value())
            await ctx.tick()
            if valid:
                steps[t].append(word)
                t += word & 0b11 == 2
        raise TimeoutError("the core did not finish")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(sink)
    sim.run()
    want_steps, _ = expected(net, x)
    for t, (records, want) in enumerate(zip(steps, want_steps, strict=True)):
        assert decode_step(records, net, image) == want, f"step {t}"


def _small_case(seed):
    rng = random.Random(seed)
    net = random_network(rng, max_ssm=0, ssm_prob=0.0, max_lif=2, max_size=8,
                         fmt=Format(u_bits=10, w_bits=6, frac_bits=4, in_bits=4))
    config = _core_config(net, 4)
    return rng, net, config, compile_network(net, config)


def test_edge_write_as_a_step_starts_is_used():
    """The pipelined core registers each layer's first edge from the tables: an edge
    table write in the clock where IDLE would start a step (the first edge of layer
    0, made wrong before each step and put back then) still reaches the step, and
    the steps are exact."""
    rng, net, config, image = _small_case(4343)
    shift = config.lane_bits + config.addr_bits
    first = min((a, w) for a, w in image.writes if a >> shift == Region.EDGES)
    # The same edge, its weights one row on: the first row's sums change.
    fields = unpack(EDGE_FIELDS(config), first[1])
    wrong = (first[0], pack(EDGE_FIELDS(config), {**fields, "wbase": fields["wbase"] + 1}))
    x = random_input(rng, net, 3, 1)[:, 0, :]
    dut = NPUCore(config=config, timing=PIPELINED)

    async def before(ctx):
        await write_words(ctx, dut, [wrong])

    async def at_start(ctx, t):
        await write_words(ctx, dut, [first])
        while not ctx.get(dut.busy):  # (before the next wrong write)
            await ctx.tick()

    _run_with_host_at_start(dut, net, image, x, before=before, at_start=at_start)


def test_host_read_as_a_step_starts_is_answered():
    """With the host request registered (the pipelined core), a read issued in
    the clock where IDLE would start a step is answered with the stored word (the
    step waits a clock: the read reaches the memories a clock later, where the
    sequencer would own them), and the steps are still exact."""
    rng, net, config, image = _small_case(4242)
    shift = config.lane_bits + config.addr_bits
    probes = [(a, w) for a, w in image.writes if a >> shift == Region.WEIGHTS and w][-3:]
    x = random_input(rng, net, len(probes), 1)[:, 0, :]
    dut = NPUCore(config=config, timing=PIPELINED)
    answers = []

    async def at_start(ctx, t):
        answers.extend(await read_words(ctx, dut, [probes[t][0]]))

    _run_with_host_at_start(dut, net, image, x, at_start=at_start)
    assert answers == [w for _, w in probes]


@pytest.mark.parametrize("timing", [COMPACT, PIPELINED], ids=["compact", "pipelined"])
def test_host_reads_change_nothing(timing):
    """Host reads of every stored word before each step, with a different word on
    the write-data port, return what was written (the membranes: before the first
    step) and change nothing: the steps are exact."""
    rng, net, config, image = _small_case(4141)
    shift = config.lane_bits + config.addr_bits
    stored = dict(image.writes)
    x = random_input(rng, net, 3, 1)[:, 0, :]
    dut = NPUCore(config=config, timing=timing)
    junk = (1 << config.host_data_bits) - 1
    steps_read = []

    async def before(ctx):
        ctx.set(dut.host_wdata, junk)
        got = dict(zip(stored, await read_words(ctx, dut, list(stored)), strict=True))
        fixed = {a for a in stored if a >> shift != Region.MEMBRANES or not steps_read}
        assert {a: got[a] for a in fixed} == {a: stored[a] for a in fixed}
        steps_read.append(len(got))

    async def at_start(ctx, t):
        while not ctx.get(dut.busy):
            await ctx.tick()

    _run_with_host_at_start(dut, net, image, x, before=before, at_start=at_start)
    assert steps_read == [len(stored)] * len(x)
