"""The integer model's rules, one by one, and the fast model against the naive reference.

* Hand-worked cases: small networks whose expected numbers are worked out by
  hand in the comments and written out literally.  Each runs through both
  ``Network.run`` and ``run_reference``, which must agree with each other and
  with the literal numbers.
* Randomized equivalence: seeded random networks (``netgen``) run batched
  through ``Network.run`` and one sample at a time through ``run_reference``;
  every output, membrane, spike, the final state and the op counts must match.
* Event-order independence and state continuation.

The validation of networks, formats and inputs is ``test_integer_validation.py``.
"""

from __future__ import annotations

import functools
import random

import pytest
import torch
from intnets import T, const, li, lif, proj
from netgen import random_input, random_network
from spikeforge.golden.integer import (
    Format,
    Network,
    Operand,
    SSMLayer,
)
from spikeforge.golden.reference import run_reference

# --------------------------------------------------------------------------- helpers


def trace_sample(trace, b: int) -> dict:
    """Sample ``b`` of a Trace in the plain-list layout of ``run_reference``."""
    return {
        "outputs": {n: v[:, b].tolist() for n, v in trace.outputs.items()},
        "membranes": {n: v[:, b].tolist() for n, v in trace.membranes.items()},
        "spikes": {n: v[:, b].tolist() for n, v in trace.spikes.items()},
        "state": {k: v[b].tolist() for k, v in trace.state.items()},
        "synops": int(trace.synops[b]),
        "ssm_ops": int(trace.ssm_ops[b]),
    }


def without_diagnostics(ref: dict) -> dict:
    return {k: v for k, v in ref.items() if k != "saturated"}


def run_both(net: Network, x: list[list[int]]) -> dict:
    """Run one sample through both models, check they agree, return the reference's result."""
    ref = run_reference(net, x)
    fast = trace_sample(net.run(T(x).reshape(len(x), 1, net.input_size)), 0)
    assert fast == without_diagnostics(ref)
    return ref


def column(ref: dict, key: str, name: str, i: int = 0) -> list[int]:
    """Neuron ``i`` of ``ref[key][name]`` over time."""
    return [step[i] for step in ref[key][name]]


# ------------------------------------------------------------------ hand-worked rules


def test_u_saturates_at_both_bounds():
    # u_bits=8: u in [-128, 127].  F=8, alpha=256 (no decay), weight 100, int input.
    # x      :   1,    1,    -1,   -1,   -1,   -1
    # LI "li": 100, 200->127, 27,  -73, -173->-128, -228->-128
    # LIF "s" (theta 120, subtract): the spike is decided on the saturated v:
    #   t0 v=100 no spike u=100; t1 v=200->127 >= 120 spike u=127-120=7;
    #   t2 v=7-100=-93; t3 v=-193->-128; t4 v=-228->-128; t5 -128.
    net = Network(input_size=1, input_kind="int", fmt=Format(u_bits=8), output="li", layers=[
        li("li", [proj("input", [[100]])], alpha=[256]),
        lif("s", [proj("input", [[100]])], alpha=[256], theta=[120]),
    ])
    ref = run_both(net, [[1], [1], [-1], [-1], [-1], [-1]])
    assert column(ref, "outputs", "li") == [100, 127, 27, -73, -128, -128]
    assert column(ref, "membranes", "li") == [100, 127, 27, -73, -128, -128]
    assert column(ref, "spikes", "s") == [0, 1, 0, 0, 0, 0]
    assert column(ref, "membranes", "s") == [100, 7, -93, -128, -128, -128]
    # Clamped: li at t1, t4, t5; s at t1, t3, t4, t5.
    assert ref["saturated"] == {"u": 7, "c": 0, "s": 0, "y": 0}


def test_floor_rounds_negative_membranes_down():
    # F=8, alpha=128 (0.5).  x = 3 at t0 into weights +1 / -1, then nothing.
    # neuron 0:  3, floor(1.5)=1, floor(0.5)=0, 0, 0
    # neuron 1: -3, floor(-1.5)=-2 (not -1), floor(-1.0)=-1, floor(-0.5)=-1, -1 (never 0)
    net = Network(input_size=1, input_kind="int", output="li", layers=[
        li("li", [proj("input", [[1], [-1]])], alpha=[128, 128]),
    ])
    ref = run_both(net, [[3], [0], [0], [0], [0]])
    assert ref["membranes"]["li"] == [[3, -3], [1, -2], [0, -1], [0, -1], [0, -1]]


@pytest.mark.parametrize("frac_bits, alpha, expected", [
    # F=4: alpha 16 = 1.0 keeps everything, 0 forgets everything, 8 = 0.5 halves (floor).
    # x = 5, 0, 0, 2:  alpha 16: 5, 5, 5, 7;  alpha 0: 5, 0, 0, 2;
    #                  alpha 8:  5, floor(2.5)=2, 1, floor(0.5)+2=2.
    (4, [16, 0, 8], [[5, 5, 5], [5, 0, 2], [5, 0, 1], [7, 2, 2]]),
    # F=0: the only decays are 1 (= 2**0, keep) and 0 (forget).
    (0, [1, 0, 0], [[5, 5, 5], [5, 0, 0], [5, 0, 0], [7, 2, 2]]),
])
def test_alpha_one_is_no_decay_and_zero_forgets(frac_bits, alpha, expected):
    net = Network(input_size=1, input_kind="int", fmt=Format(frac_bits=frac_bits), output="li",
                  layers=[li("li", [proj("input", [[1], [1], [1]])], alpha=alpha)])
    ref = run_both(net, [[5], [0], [0], [2]])
    assert ref["membranes"]["li"] == expected


@pytest.mark.parametrize("reset, v_reset, spikes, membranes", [
    # weight 3, theta 5, no decay, an input spike every step: v = u[t-1] + 3.
    # subtract: v 3, 6->s u1, 4, 7->s u2, 5->s u0 (5 >= 5 spikes)
    ("subtract", 0, [0, 1, 0, 1, 1], [3, 1, 4, 2, 0]),
    # zero with v_reset -2: v 3, 6->s u-2, 1, 4, 7->s u-2
    ("zero", -2, [0, 1, 0, 0, 1], [3, -2, 1, 4, -2]),
    # none: v 3, 6, 9, 12, 15; it spikes whenever v >= 5 and keeps v
    ("none", 0, [0, 1, 1, 1, 1], [3, 6, 9, 12, 15]),
])
def test_reset_modes(reset, v_reset, spikes, membranes):
    net = Network(input_size=1, input_kind="spike", fmt=Format(frac_bits=4), output="h",
                  layers=[lif("h", [proj("input", [[3]])], alpha=[16], theta=[5], reset=reset,
                              v_reset=v_reset)])
    ref = run_both(net, [[1]] * 5)
    assert column(ref, "spikes", "h") == spikes
    assert column(ref, "membranes", "h") == membranes
    assert column(ref, "outputs", "h") == spikes


def test_spike_threshold_is_inclusive():
    # v = 5 for all three neurons; theta 4, 5, 6 -> spikes 1, 1, 0; subtract: u = 1, 0, 5.
    net = Network(input_size=1, input_kind="spike", output="h", layers=[
        lif("h", [proj("input", [[5], [5], [5]])], alpha=[0, 0, 0], theta=[4, 5, 6]),
    ])
    ref = run_both(net, [[1]])
    assert ref["spikes"]["h"] == [[1, 1, 0]]
    assert ref["membranes"]["h"] == [[1, 0, 5]]


def test_li_readout_outputs_its_membrane():
    # "h": weight 2, theta 2, reset zero, alpha 0 -> spikes = input = 1, 0, 1.
    # "o" (LI, F=8, alpha 128, bias 5, weight -3 from h, theta 1 is irrelevant):
    #   t0: 0 - 3 + 5 = 2;  t1: floor(128*2/256)=1 + 0 + 5 = 6 (>= theta, but no spike/reset);
    #   t2: floor(128*6/256)=3 - 3 + 5 = 5.
    net = Network(input_size=1, input_kind="spike", output="o", layers=[
        lif("h", [proj("input", [[2]])], alpha=[0], theta=[2], reset="zero"),
        li("o", [proj("h", [[-3]])], alpha=[128], theta=[1], bias=[5]),
    ])
    ref = run_both(net, [[1], [0], [1]])
    assert ref["outputs"]["o"] == [[2], [6], [5]]
    assert ref["membranes"]["o"] == [[2], [6], [5]]
    assert "o" not in ref["spikes"]
    assert ref["outputs"]["h"] == [[1], [0], [1]]


def recurrence_net() -> Network:
    # e: LI, reads a recurrently although a comes later (weight 7, alpha 0) -> 7 * a[t-1]
    # a: spikes = input (weight 1, theta 1, alpha 0, reset zero)
    # b: LI, feed-forward from a (weight 10)        -> 10 * a[t]
    # c: LI, recurrent from a (weight 10)           -> 10 * a[t-1], 0 at t=0
    # d: input (weight 1) + itself recurrently (weight -1), theta 1, alpha 0:
    #    d[t] = 1 if x[t] - d[t-1] >= 1
    return Network(input_size=1, input_kind="spike", output="b", layers=[
        li("e", [proj("a", [[7]], recurrent=True)], alpha=[0]),
        lif("a", [proj("input", [[1]])], alpha=[0], reset="zero"),
        li("b", [proj("a", [[10]])], alpha=[0]),
        li("c", [proj("a", [[10]], recurrent=True)], alpha=[0]),
        lif("d", [proj("input", [[1]]), proj("d", [[-1]], recurrent=True)], alpha=[0],
            reset="zero"),
    ])


RECURRENCE_X = [[1], [0], [1], [1], [0]]
RECURRENCE_EXPECTED = {
    "a": [1, 0, 1, 1, 0],
    "b": [10, 0, 10, 10, 0],
    "c": [0, 10, 0, 10, 10],
    "e": [0, 7, 0, 7, 7],
    # t0: 1-0=1 spike; t1: 0-1=-1; t2: 1-0=1 spike; t3: 1-1=0; t4: 0-0=0
    "d": [1, 0, 1, 0, 0],
}


def test_recurrent_edges_deliver_the_previous_step():
    ref = run_both(recurrence_net(), RECURRENCE_X)
    for name, expected in RECURRENCE_EXPECTED.items():
        assert column(ref, "outputs", name) == expected, name
    # Events x fan-out (all fan-outs 1): a: 3 input events; e: a[t-1] has 3 events
    # (t1..t4 read 1, 0, 1, 1); b: 3; c: 3; d: 3 input events + d[t-1] = 1, 0, 1, 0 -> 2.
    assert ref["synops"] == 3 + 3 + 3 + 3 + 5
    assert ref["state"]["d.out"] == [0]
    assert ref["state"]["e.u"] == [7]


def test_state_continuation_of_the_recurrent_net():
    # Steps 0..1, then 2..4 from the returned state, give the same numbers as one run.
    net = recurrence_net()
    x = T(RECURRENCE_X).reshape(5, 1, 1)
    first = net.run(x[:2])
    second = net.run(x[2:], first.state)
    for name, expected in RECURRENCE_EXPECTED.items():
        assert torch.cat([first.outputs[name], second.outputs[name]])[:, 0, 0].tolist() \
            == expected, name
    assert int(first.synops[0] + second.synops[0]) == 17
    ref1 = run_reference(net, RECURRENCE_X[:2])
    ref2 = run_reference(net, RECURRENCE_X[2:], state=ref1["state"])
    assert column(ref1, "outputs", "d") + column(ref2, "outputs", "d") == RECURRENCE_EXPECTED["d"]
    assert ref2["state"] == trace_sample(second, 0)["state"]


def test_int_input_signed_values_times_weights():
    # in_bits=4: input in [-8, 7].  One LI neuron, weights (2, -3), alpha 0.
    # t0: 2*7 + (-3)*(-8) = 14 + 24 = 38;  t1: 2*(-1) + (-3)*5 = -17;  t2: 0 + (-3)*3 = -9.
    # synops: nonzero inputs 2 + 2 + 1 = 5 events, fan-out 1.
    net = Network(input_size=2, input_kind="int", fmt=Format(in_bits=4), output="o", layers=[
        li("o", [proj("input", [[2, -3]])], alpha=[0]),
    ])
    ref = run_both(net, [[7, -8], [-1, 5], [0, 3]])
    assert column(ref, "outputs", "o") == [38, -17, -9]
    assert ref["synops"] == 5


def test_skip_connection_from_the_input():
    # h: weight 1, theta 2, no decay (F=4, alpha 16), subtract -> v 1, 2 s, 1, 2 s
    # o: LI alpha 0, 100 * h[t] + 1 * x[t] (the skip edge)  -> 1, 101, 1, 101
    # synops: h 4 input events x 1; o: 2 h events x 1 + 4 input events x 1.
    net = Network(input_size=1, input_kind="spike", fmt=Format(frac_bits=4), output="o",
                  layers=[
                      lif("h", [proj("input", [[1]])], alpha=[16], theta=[2]),
                      li("o", [proj("h", [[100]]), proj("input", [[1]])], alpha=[0]),
                  ])
    ref = run_both(net, [[1]] * 4)
    assert column(ref, "spikes", "h") == [0, 1, 0, 1]
    assert column(ref, "outputs", "o") == [1, 101, 1, 101]
    assert ref["synops"] == 4 + 2 + 4


def test_ssm_fixed_decay_readout_shift_and_saturation():
    # F=4, s_bits=6 (S in [-32, 31]), y_bits=4 (y in [-8, 7]), y_shift 1, constant operands:
    # k = (3, -5), v = (2, -2), q = (1, 1), decay = (8, 16) = (0.5, 1.0); k v^T =
    # [[6, -6], [-10, 10]].
    #        S row 0 (a=0.5)                      S row 1 (a=1)        y = (S^T q) >> 1
    # t0:  [6, -6]                                [-10, 10]            (-4, 4)  -> (-2, 2)
    # t1:  [3+6=9, -3-6=-9]                       [-20, 20]            (-11, 11) -> (-6, 5)
    # t2:  [floor(4.5)+6=10, floor(-4.5)-6=-11]   [-30, 30]            (-20, 19) -> (-10, 9)
    #                                                                        -> sat (-8, 7)
    # t3:  [5+6=11, floor(-5.5)-6=-12]            [-40, 40]->[-32, 31] (-21, 19) -> (-11, 9)
    #                                                                        -> sat (-8, 7)
    # t4:  [floor(5.5)+6=11, -6-6=-12]            [-42, 41]->[-32, 31] same -> (-8, 7)
    # ssm_ops per step: (2 nonzero k + 2 nonzero q) * m=2 = 8, over 5 steps 40.
    net = Network(input_size=1, input_kind="spike", output="s",
                  fmt=Format(frac_bits=4, s_bits=6, y_bits=4), layers=[
                      SSMLayer("s", 2, 2, const([3, -5]), const([2, -2]), const([1, 1]),
                               T([8, 16]), y_shift=1),
                  ])
    ref = run_both(net, [[0]] * 5)
    assert ref["outputs"]["s"] == [[-2, 2], [-6, 5], [-8, 7], [-8, 7], [-8, 7]]
    assert ref["state"]["s.S"] == [[11, -12], [-32, 31]]
    assert ref["ssm_ops"] == 40
    assert ref["synops"] == 0
    # S clamped: 2 cells at t3 and t4; y clamped: 2 values at t2, t3, t4.
    assert ref["saturated"] == {"u": 0, "c": 0, "s": 4, "y": 6}


def test_ssm_spike_sourced_operands():
    # input spikes x (2 wide); p: spikes = x (identity weights, theta 1, alpha 0, reset zero).
    # SSM n=m=2: k = x[t], v = p[t], q = p[t-1] (recurrent), F=4, decay (16, 0), y_shift 0.
    # x = (1,0), (1,1), (0,1)
    # t0: S = k v^T = [[1,0],[0,0]];                      q = 0     -> y = (0, 0)
    # t1: decay -> [[1,0],[0,0]]; + (1,1)(1,1)^T = [[2,1],[1,1]]; q = (1,0) -> y = (2, 1)
    # t2: decay -> [[2,1],[0,0]]; + (0,1)(0,1)^T = [[2,1],[0,1]]; q = (1,1) -> y = (2, 2)
    # ssm_ops: (nnz k + nnz q) * 2 = (1+0)*2 + (2+1)*2 + (1+2)*2 = 14.
    # o: LI, y0 - y1 -> 0, 1, 0.  synops: p: 4 input events x fan-out 2 = 8; o: y events
    # 0 + 2 + 2 = 4, fan-out 1.
    net = Network(input_size=2, input_kind="spike", fmt=Format(frac_bits=4), output="o",
                  layers=[
                      lif("p", [proj("input", [[1, 0], [0, 1]])], alpha=[0, 0], reset="zero"),
                      SSMLayer("s", 2, 2, Operand("input"), Operand("p"),
                               Operand("p", recurrent=True), T([16, 0])),
                      li("o", [proj("s", [[1, -1]])], alpha=[0]),
                  ])
    ref = run_both(net, [[1, 0], [1, 1], [0, 1]])
    assert ref["outputs"]["s"] == [[0, 0], [2, 1], [2, 2]]
    assert ref["state"]["s.S"] == [[2, 1], [0, 1]]
    assert ref["ssm_ops"] == 14
    assert column(ref, "outputs", "o") == [0, 1, 0]
    assert ref["synops"] == 12


@pytest.mark.parametrize("gate_recurrent, expected", [
    # g[t] = s0 + 2*s1 of the gate's spikes at t: 0, 3, 2, 1, 0 -> decay 0, 1, 0.5, 0.25, 0.
    # S: 4;  4+4=8;  floor(2*8/4)+4=8;  floor(1*8/4)+4=6;  0+4=4.
    (False, [4, 8, 8, 6, 4]),
    # recurrent gate: the spikes of t-1: g = 0, 0, 3, 2, 1 -> decay 0, 0, 1, 0.5, 0.25.
    # S: 4;  0+4=4;  4+4=8;  floor(2*8/4)+4=8;  floor(1*8/4)+4=6.
    (True, [4, 4, 8, 8, 6]),
])
def test_selective_decay_gate_bits_pick_the_row(gate_recurrent, expected):
    # F=2 (1.0 = 4).  g: spikes = input.  SSM n=m=1, k=4, v=1, q=1, table rows
    # g=0: 0, g=1 (neuron 0 only): 1 (0.25), g=2 (neuron 1 only): 2 (0.5), g=3: 4 (1.0).
    net = Network(input_size=2, input_kind="spike", fmt=Format(frac_bits=2), output="s",
                  layers=[
                      lif("g", [proj("input", [[1, 0], [0, 1]])], alpha=[0, 0], reset="zero"),
                      SSMLayer("s", 1, 1, const([4]), const([1]), const([1]),
                               T([[0], [1], [2], [4]]), mode="selective", gate="g",
                               gate_recurrent=gate_recurrent),
                  ])
    ref = run_both(net, [[0, 0], [1, 1], [0, 1], [1, 0], [0, 0]])
    assert column(ref, "outputs", "s") == expected


def test_widest_accepted_ssm_is_exact():
    # in_bits=16, s_bits=y_bits=48, F=16 (1.0 = 65536): the int64 readout path (> 53 bits).
    # a: k = v = q = -2**15, no decay: S = 2**30, 2**31;  y = S * -2**15 = -2**45, -2**46.
    # b: k = a's y (bound 2**47), v = -2**15 (update needs 64 bits, accepted):
    #    t0: S = -2**45 * -2**15 = 2**60 -> sat 2**47 - 1; y = (2**47 - 1) * -2**15 -> -2**47.
    #    t1: S = 2**47 - 1 + 2**61 -> 2**47 - 1 again.
    big = -(2 ** 15)
    fmt = Format(in_bits=16, s_bits=48, y_bits=48, frac_bits=16)
    net = Network(input_size=1, input_kind="spike", output="b", fmt=fmt, layers=[
        SSMLayer("a", 1, 1, const([big]), const([big]), const([big]), T([65536])),
        SSMLayer("b", 1, 1, Operand("a"), const([big]), const([big]), T([65536])),
    ])
    assert net.ssm_acc_bits(net.layers[1]) == 64
    ref = run_both(net, [[0], [0]])
    assert column(ref, "outputs", "a") == [-(2 ** 45), -(2 ** 46)]
    assert ref["state"]["b.S"] == [[2 ** 47 - 1]]
    assert column(ref, "outputs", "b") == [-(2 ** 47), -(2 ** 47)]


# ------------------------------------------------------------- randomized equivalence


def assert_same(net: Network, x: torch.Tensor, context: str) -> list[dict]:
    """Run ``x`` batched and per sample; assert everything agrees; return the references."""
    trace = net.run(x)
    refs = []
    for b in range(x.shape[1]):
        ref = run_reference(net, x[:, b].tolist())
        fast = trace_sample(trace, b)
        expected = without_diagnostics(ref)
        if fast != expected:
            for key in expected:
                assert fast[key] == expected[key], f"{context}, sample {b}: {key} differs"
        refs.append(ref)
    return refs


def network_features(net: Network) -> set[str]:
    """Which rules a network exercises (for the coverage check of the generator)."""
    features = {f"input:{net.input_kind}", f"lif_layers:{sum(l.kind == 'lif' for l in net.layers)}",
                f"w_bits:{net.fmt.w_bits}"}
    position = {layer.name: i for i, layer in enumerate(net.layers)}
    for i, layer in enumerate(net.layers):
        if layer.kind == "lif":
            features.add(f"reset:{layer.reset}" if layer.spiking else "li")
            for p in layer.inputs:
                if p.recurrent:
                    features.add("self" if p.source == layer.name else "recurrent")
                elif (p.source == "input" and i > 0) or (
                        p.source != "input" and position[p.source] < i - 1):
                    features.add("skip")
                if p.source != "input" and net.layer(p.source).kind == "ssm":
                    features.add("lif_from_ssm")
        else:
            k = "src" if not layer.k.is_const else "const"
            v = "src" if not layer.v.is_const else "const"
            q = "src" if not layer.q.is_const else "const"
            features |= {f"ssm_kv:{k}/{v}", f"ssm_q:{q}", f"ssm_mode:{layer.mode}"}
            if layer.gate_recurrent:
                features.add("gate_recurrent")
            if any(op.recurrent for op in layer.operands().values()):
                features.add("operand_recurrent")
    return features


@functools.cache
def check_seed(seed: int, *, max_steps: int = 12, max_batch: int = 4, **limits) -> tuple:
    """One randomized case; returns (features, saturations u/s/y, spikes) for the coverage test."""
    rng = random.Random(seed)
    net = random_network(rng, **limits)
    x = random_input(rng, net, rng.randint(1, max_steps), rng.randint(1, max_batch))
    refs = assert_same(net, x, f"seed {seed}")
    saturated = tuple(sum(r["saturated"][k] for r in refs) for k in ("u", "s", "y"))
    spikes = sum(sum(map(sum, steps)) for r in refs for steps in r["spikes"].values())
    return frozenset(network_features(net)), saturated, spikes


SEEDS = range(250)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_network_matches_reference(seed):
    check_seed(seed)


def test_random_networks_cover_the_rules():
    features, u_sat, s_sat, y_sat, quiet, spikes = set(), 0, 0, 0, 0, 0
    for seed in SEEDS:
        f, (u, s, y), n_spikes = check_seed(seed)
        features |= f
        u_sat += u > 0
        s_sat += s > 0
        y_sat += y > 0
        quiet += u + s + y == 0
        spikes += n_spikes
    expected = {"input:spike", "input:int", "li", "self", "recurrent", "skip", "lif_from_ssm",
                "gate_recurrent", "operand_recurrent", "ssm_q:src", "ssm_q:const",
                "ssm_mode:fixed", "ssm_mode:selective"}
    expected |= {f"lif_layers:{n}" for n in range(1, 5)}
    expected |= {f"w_bits:{n}" for n in range(2, 9)}
    expected |= {f"reset:{mode}" for mode in ("subtract", "zero", "none")}
    expected |= {f"ssm_kv:{k}/{v}" for k in ("src", "const") for v in ("src", "const")}
    assert expected <= features, f"not covered: {sorted(expected - features)}"
    # The saturations are reached on purpose in some cases, and some cases never saturate.
    assert u_sat >= 10 and s_sat >= 10 and y_sat >= 10, (u_sat, s_sat, y_sat)
    assert quiet >= 10
    assert spikes > 0


@pytest.mark.parametrize("seed", range(20))
def test_event_order_does_not_matter(seed):
    rng = random.Random(1000 + seed)
    net = random_network(rng)
    assert_order_free(net, random_input(rng, net, rng.randint(1, 10), 1)[:, 0].tolist())


def assert_order_free(net: Network, x: list) -> None:
    """The reference gives the same run for three shuffled event orders as for the natural one."""
    natural = run_reference(net, x)
    for order in range(3):
        assert run_reference(net, x, event_order=random.Random(order)) == natural


@pytest.mark.parametrize("seed", range(20))
def test_state_continuation_random(seed):
    rng = random.Random(2000 + seed)
    net = random_network(rng)
    steps, batch = rng.randint(2, 10), rng.randint(1, 3)
    x = random_input(rng, net, steps, batch)
    cut = rng.randint(1, steps - 1)
    whole = net.run(x)
    first = net.run(x[:cut])
    second = net.run(x[cut:], first.state)
    for name in whole.outputs:
        assert torch.equal(whole.outputs[name], torch.cat([first.outputs[name],
                                                           second.outputs[name]]))
    for name in whole.membranes:
        assert torch.equal(whole.membranes[name], torch.cat([first.membranes[name],
                                                             second.membranes[name]]))
    for name in whole.spikes:
        assert torch.equal(whole.spikes[name], torch.cat([first.spikes[name],
                                                          second.spikes[name]]))
    assert whole.state.keys() == second.state.keys()
    for key in whole.state:
        assert torch.equal(whole.state[key], second.state[key])
    assert torch.equal(whole.synops, first.synops + second.synops)
    assert torch.equal(whole.ssm_ops, first.ssm_ops + second.ssm_ops)
    # The reference continues the same way.
    sample = x[:, 0].tolist()
    ref1 = run_reference(net, sample[:cut])
    ref2 = run_reference(net, sample[cut:], state=ref1["state"])
    assert ref2["state"] == trace_sample(whole, 0)["state"]
    assert ref1["synops"] + ref2["synops"] == int(whole.synops[0])
    for name in whole.outputs:
        assert ref1["outputs"][name] + ref2["outputs"][name] == whole.outputs[name][:, 0].tolist()


SOAK_LIMITS = {"max_lif": 6, "max_ssm": 3, "max_size": 16}


@pytest.mark.slow
@pytest.mark.parametrize("block", range(20))
def test_random_soak(block):
    # 4000 bigger networks over longer runs and larger batches, plus shuffled event orders.
    for seed in range(100_000 + block * 200, 100_000 + (block + 1) * 200):
        check_seed(seed, max_steps=24, max_batch=4, **SOAK_LIMITS)
        rng = random.Random(seed)
        net = random_network(rng, **SOAK_LIMITS)
        x = random_input(rng, net, rng.randint(1, 16), 1)[:, 0].tolist()
        assert run_reference(net, x, event_order=random.Random(seed)) == run_reference(net, x)
