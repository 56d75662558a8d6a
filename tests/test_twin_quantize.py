"""Float twins, surrogate gradients, the quantizer and float/int agreement.

* ``spike``: forward is the Heaviside ``x >= 0``; backward is each surrogate's
  documented derivative (written out again here from the ``twin`` docstring).
* Integer-exact mode: a twin switched with ``enter_integer_mode`` computes,
  layer by layer and step by step, exactly what ``to_integer(twin).run(x)``
  computes, on seeded random twins (LIF stacks with every reset mode, recurrent
  edges and an LI readout; SSM layers with fixed and selective decay and
  source / constant operands; spike and multi-bit inputs).
* The post-training scale rule and the exported integer parameters follow the
  ``quantize`` docstring; ``predict``'s readouts and tie-break.
* A tiny real training run: the QAT twin and the exported integer model agree
  on every test decision, and the float twin agrees with it on most.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from sklearn.datasets import load_digits
from spikeforge.golden import quantize
from spikeforge.golden.integer import Format, signed_range
from spikeforge.golden.quantize import enter_integer_mode, layer_scale, predict, to_integer
from spikeforge.golden.train import DigitsConfig, evaluate, train
from spikeforge.golden.twin import SURROGATES, TwinLIF, TwinNetwork, TwinSSM, spike

RESETS = ("subtract", "zero", "none")


# ------------------------------------------------------------------ surrogates
def documented_derivative(name: str, x: float) -> float:
    """dH/dx of each surrogate, as the ``twin`` module docstring states it."""
    if name == "fast-sigmoid":
        return 1.0 / (1.0 + 10.0 * abs(x)) ** 2
    if name == "arctan":
        return 1.0 / (1.0 + (math.pi * x) ** 2)
    if name == "triangle":
        return max(0.0, 1.0 - abs(x))
    if name == "none":
        return 0.0
    raise AssertionError(name)


POINTS = [-3.0, -1.0, -0.75, -0.5, -0.1, -1e-3, 0.0, 1e-3, 0.05, 0.3, 0.5, 1.0, 1.5, 4.0]


def test_surrogate_names_are_the_documented_ones():
    assert set(SURROGATES) == {"fast-sigmoid", "arctan", "triangle", "none"}


@pytest.mark.parametrize("name", SURROGATES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spike_forward_is_heaviside(name, dtype):
    x = torch.tensor(POINTS + [-0.0], dtype=dtype)
    s = spike(x, name)
    assert s.dtype == dtype
    assert s.tolist() == [1.0 if v >= 0 else 0.0 for v in POINTS + [-0.0]]


@pytest.mark.parametrize("name", SURROGATES)
def test_spike_backward_is_the_documented_derivative(name):
    x = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    upstream = torch.linspace(-2.0, 3.0, len(POINTS), dtype=torch.float64)
    spike(x, name).backward(upstream)
    want = [g * documented_derivative(name, v) for g, v in zip(upstream.tolist(), POINTS,
                                                               strict=True)]
    assert x.grad is not None
    for got, w, v in zip(x.grad.tolist(), want, POINTS, strict=True):
        assert got == pytest.approx(w, rel=1e-12, abs=1e-15), (name, v)
    if name == "none":
        assert torch.count_nonzero(x.grad) == 0
    else:
        assert torch.count_nonzero(x.grad) > 0


def test_surrogates_differ_from_each_other():
    grads = {}
    for name in SURROGATES:
        x = torch.tensor([0.05, 0.3, 0.8], dtype=torch.float64, requires_grad=True)
        spike(x, name).sum().backward()
        grads[name] = tuple(x.grad.tolist())
    assert len(set(grads.values())) == len(SURROGATES)


def test_unknown_surrogate_is_rejected():
    with pytest.raises(ValueError, match="unknown surrogate 'sigmoid'"):
        spike(torch.zeros(3), "sigmoid")
    with pytest.raises(ValueError, match="unknown surrogate 'relu'"):
        TwinNetwork(input_size=2, input_kind="spike", output="h",
                    layers=[TwinLIF("h", 2, [("input", 2, False)])], surrogate="relu")


def test_network_surrogate_none_blocks_gradients_through_spikes():
    """With an LI readout the hidden weights are reached only through spikes."""
    grads = {}
    for name in ("fast-sigmoid", "none"):
        torch.manual_seed(0)
        hidden = TwinLIF("h", 8, [("input", 5, False)], gain=2.0)
        out = TwinLIF("o", 3, [("h", 8, False)], spiking=False, reset="none")
        twin = TwinNetwork(input_size=5, input_kind="spike", layers=[hidden, out], output="o",
                           surrogate=name)
        x = (torch.rand(4, 6, 5, generator=torch.Generator().manual_seed(1)) < 0.5).float()
        twin(x)["o"].sum().backward()
        grads[name] = (hidden.weights[0].grad.abs().sum().item(),
                       out.weights[0].grad.abs().sum().item())
    assert grads["fast-sigmoid"][0] > 0
    assert grads["none"][0] == 0.0
    assert grads["none"][1] > 0  # the readout still learns from the spikes it sees


# --------------------------------------------------- integer-exact equivalence
def _fill(param: torch.Tensor, gen: torch.Generator, scale: float, shift: float = 0.0) -> None:
    with torch.no_grad():
        param.copy_(torch.randn(param.shape, generator=gen) * scale + shift)


def _uniform(param: torch.Tensor, gen: torch.Generator, lo: float, hi: float) -> None:
    with torch.no_grad():
        param.copy_(torch.rand(param.shape, generator=gen) * (hi - lo) + lo)


def randomize_lif(layer: TwinLIF, gen: torch.Generator, gains, *, bias: float = 0.3,
                  bias_mean: float = 0.0) -> None:
    """Weights ``N(0, gain)`` per edge, biases, betas in [-0.2, 1.2] (clamped to [0, 1])."""
    for w, g in zip(layer.weights, gains, strict=True):
        _fill(w, gen, g)
    _fill(layer.bias, gen, bias, bias_mean)
    _uniform(layer.beta, gen, -0.2, 1.2)
    with torch.no_grad():  # pin some betas to the exact ends
        layer.beta[0] = 1.0
        if layer.size > 1:
            layer.beta[1] = 0.0


def random_fmt(rng: random.Random, *, ssm: bool = False) -> Format:
    return Format(w_bits=rng.randint(2, 8), u_bits=rng.randint(6, 16),
                  frac_bits=rng.randint(0, 8), in_bits=rng.randint(3, 8),
                  s_bits=rng.randint(5, 16) if ssm else 16,
                  y_bits=rng.randint(3, 8) if ssm else 8)


def random_input(gen: torch.Generator, kind: str, fmt: Format, steps: int, batch: int,
                 size: int) -> torch.Tensor:
    if kind == "spike":
        return (torch.rand(steps, batch, size, generator=gen) < 0.5).to(torch.int64)
    lo, hi = signed_range(fmt.in_bits)
    return torch.randint(lo, hi + 1, (steps, batch, size), generator=gen, dtype=torch.int64)


def lif_twin(seed: int, input_kind: str) -> tuple[TwinNetwork, float, torch.Tensor]:
    """Three spiking layers (every reset mode, self/back/skip edges) and an LI readout."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    fmt = random_fmt(rng)
    d = 5
    g_in = 0.8 if input_kind == "spike" else 2.0 / (1 << (fmt.in_bits - 1))
    resets = [RESETS[(seed + k) % 3] for k in range(3)]
    h1 = TwinLIF("h1", 6, [("input", d, False), ("h1", 6, True)], reset=resets[0],
                 v_reset=rng.uniform(-0.5, 0.5))
    h2 = TwinLIF("h2", 5, [("h1", 6, False), ("input", d, False), ("h3", 4, True)],
                 reset=resets[1], v_reset=rng.uniform(-0.5, 0.5))
    h3 = TwinLIF("h3", 4, [("h2", 5, False)], reset=resets[2], v_reset=rng.uniform(-0.5, 0.5))
    out = TwinLIF("out", 3, [("h1", 6, False), ("h2", 5, False), ("h3", 4, False)],
                  spiking=False, reset="none")
    randomize_lif(h1, gen, [g_in, 0.5])
    randomize_lif(h2, gen, [0.6, g_in, 0.6])
    randomize_lif(h3, gen, [0.8])
    randomize_lif(out, gen, [1.0, 1.0, 1.0])
    twin = TwinNetwork(input_size=d, input_kind=input_kind, layers=[h1, h2, h3, out],
                       output="out", fmt=fmt, surrogate=SURROGATES[seed % 4])
    headroom = rng.choice([1.0, 1.5, 2.0, 4.0])
    x = random_input(gen, input_kind, fmt, steps=10, batch=4, size=d)
    return twin, headroom, x


def ssm_twin(seed: int, input_kind: str, mode: str) -> tuple[TwinNetwork, float, torch.Tensor]:
    """LIF key/value/gate layers -> SSM -> LIF reader -> SSM on the raw input -> LI readout."""
    rng = random.Random(1000 + seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    fmt = random_fmt(rng, ssm=True)
    d, n, m = 5, 4, 3
    g_in = 0.9 if input_kind == "spike" else 2.0 / (1 << (fmt.in_bits - 1))
    c_hi = 1.5 * (1 << (fmt.in_bits - 1))  # constants partly beyond in_bits: clamped

    def const(length: int):
        return ("const", (torch.rand(length, generator=gen) * 2 - 1) * c_hi)

    key = TwinLIF("key", n, [("input", d, False)], reset="zero", v_reset=0.0)
    val = TwinLIF("val", m, [("input", d, False), ("reader", 5, True)],
                  reset=rng.choice(RESETS))
    layers = [key, val]
    randomize_lif(key, gen, [g_in], bias=0.2, bias_mean=0.6)
    randomize_lif(val, gen, [g_in, 0.7], bias=0.2, bias_mean=0.6)
    gate = None
    if mode == "selective":
        gl = TwinLIF("gate", 2, [("input", d, False)], reset=rng.choice(RESETS))
        randomize_lif(gl, gen, [g_in], bias=0.2)
        layers.append(gl)
        gate = ("gate", 2, rng.random() < 0.5)
    ops = {"k": ("key", False) if rng.random() < 0.7 else const(n),
           "v": ("val", False) if rng.random() < 0.7 else const(m),
           "q": ("key", False) if rng.random() < 0.6 else const(n)}
    mem = TwinSSM("mem", n, m, ops, mode=mode, gate=gate, y_shift=rng.randint(0, 1))
    _uniform(mem.decay, gen, -0.1, 1.1)
    y_unit = 1.0 / (1 << (fmt.y_bits - 1))
    reader = TwinLIF("reader", 5, [("mem", m, False), ("key", n, False)],
                     reset=rng.choice(RESETS))
    randomize_lif(reader, gen, [4 * y_unit, 0.8], bias=0.2, bias_mean=0.4)
    mem2 = TwinSSM("mem2", d, 5, {"k": ("input", False), "v": ("reader", False),
                                  "q": const(d)}, y_shift=rng.randint(0, 3))
    _uniform(mem2.decay, gen, 0.0, 1.0)
    out = TwinLIF("out", 2, [("reader", 5, False), ("mem2", 5, False)], spiking=False,
                  reset="none")
    randomize_lif(out, gen, [1.0, y_unit])
    layers += [mem, reader, mem2, out]
    twin = TwinNetwork(input_size=d, input_kind=input_kind, layers=layers, output="out",
                       fmt=fmt)
    headroom = rng.choice([1.0, 2.0, 4.0])
    x = random_input(gen, input_kind, fmt, steps=12, batch=4, size=d)
    return twin, headroom, x


def run_both(twin: TwinNetwork, headroom: float, x: torch.Tensor, *, perturb: bool = False):
    """Integer-mode twin outputs and the exported network's trace on the same input."""
    enter_integer_mode(twin, headroom)
    if perturb:  # as QAT would: move the weights after the scales are fixed (some clamp)
        with torch.no_grad():
            for layer in twin.layers:
                if layer.kind == "lif":
                    for w in layer.weights:
                        w.mul_(1.7)
    net = to_integer(twin)
    with torch.no_grad():
        got = twin(x)
    trace = net.run(x)
    return got, trace, net


def assert_exact(got: dict, trace, twin: TwinNetwork) -> None:
    assert set(trace.outputs) == {layer.name for layer in twin.layers}
    for layer in twin.layers:
        name = layer.name
        g = got[name]
        assert g.dtype == torch.float64
        assert torch.equal(g, torch.round(g)), f"{name}: non-integer twin output"
        want = trace.outputs[name]
        assert g.shape == want.shape, name
        if not torch.equal(g.to(torch.int64), want):
            diff = (g.to(torch.int64) != want).nonzero()[0].tolist()
            raise AssertionError(f"layer {name!r}: first mismatch at [t, b, i] = {diff}")


def spike_stats(trace, net) -> tuple[int, int]:
    fired = total = 0
    for name, s in trace.spikes.items():
        fired += int(s.sum())
        total += s.numel()
        assert name != net.output
    return fired, total


@pytest.mark.parametrize("input_kind", ["spike", "int"])
@pytest.mark.parametrize("seed", range(8))
def test_integer_mode_twin_equals_integer_model_lif(seed, input_kind):
    twin, headroom, x = lif_twin(seed, input_kind)
    got, trace, net = run_both(twin, headroom, x, perturb=seed % 4 == 3)
    assert_exact(got, trace, twin)
    fired, total = spike_stats(trace, net)
    assert 0 < fired < total, "the case should have some spikes and some silence"


@pytest.mark.parametrize("mode", ["fixed", "selective"])
@pytest.mark.parametrize("input_kind", ["spike", "int"])
@pytest.mark.parametrize("seed", range(5))
def test_integer_mode_twin_equals_integer_model_ssm(seed, input_kind, mode):
    twin, headroom, x = ssm_twin(seed, input_kind, mode)
    got, trace, net = run_both(twin, headroom, x, perturb=seed == 4)
    assert_exact(got, trace, twin)
    fired, total = spike_stats(trace, net)
    assert 0 < fired < total
    # (each SSM layer produces a nonzero y in most cases; the coverage test checks both)
    assert int(trace.outputs["mem"].abs().sum()) + int(trace.outputs["mem2"].abs().sum()) > 0


def test_equivalence_cases_cover_the_rules():
    """The seeded cases above do reach what they claim to test."""
    seen = set()
    for seed in range(8):
        for kind in ("spike", "int"):
            twin, headroom, x = lif_twin(seed, kind)
            _, trace, net = run_both(twin, headroom, x, perturb=seed % 4 == 3)
            u_lo, u_hi = signed_range(net.fmt.u_bits)
            for layer in net.layers:
                u = trace.membranes[layer.name]
                if layer.spiking and int(trace.spikes[layer.name].sum()):
                    seen.add(f"fires:{layer.reset}")
                if int(u.max()) == u_hi:
                    seen.add("u_sat_hi")
                if int(u.min()) == u_lo:
                    seen.add("u_sat_lo")
                for p in layer.inputs:
                    w_lo, w_hi = signed_range(net.fmt.w_bits)
                    if int(p.weight.abs().max()) == w_hi:
                        seen.add("w_full_range")
                    if p.recurrent:
                        seen.add("recurrent")
    for seed in range(5):
        for kind in ("spike", "int"):
            for mode in ("fixed", "selective"):
                twin, headroom, x = ssm_twin(seed, kind, mode)
                _, trace, net = run_both(twin, headroom, x, perturb=seed == 4)
                y_lo, y_hi = signed_range(net.fmt.y_bits)
                for layer in net.layers:
                    if layer.kind != "ssm":
                        continue
                    seen.add(f"ssm:{layer.mode}")
                    y = trace.outputs[layer.name]
                    if int(y.abs().sum()):
                        seen.add(f"y_nonzero:{layer.name}:{layer.mode}")
                    if int(y.max()) == y_hi or int(y.min()) == y_lo:
                        seen.add("y_sat")
                    for what, op in layer.operands().items():
                        seen.add(f"{what}:{'const' if op.is_const else 'source'}")
                    if layer.mode == "selective":
                        gate = trace.spikes[layer.gate]
                        idx = (gate * torch.tensor([1, 2])).sum(dim=2)
                        if len(set(idx.flatten().tolist())) > 1:
                            seen.add("gate_rows_vary")
    want = {"fires:subtract", "fires:zero", "fires:none", "u_sat_hi", "u_sat_lo",
            "w_full_range", "recurrent", "ssm:fixed", "ssm:selective", "y_sat",
            "k:const", "k:source", "v:const", "v:source", "q:const", "q:source",
            "gate_rows_vary", "y_nonzero:mem:fixed", "y_nonzero:mem:selective",
            "y_nonzero:mem2:fixed"}
    assert want <= seen, f"not covered: {sorted(want - seen)}"


# ---------------------------------------------------------------- scale rule
def lif_with(weights, *, beta=0.5) -> TwinLIF:
    layer = TwinLIF("h", len(weights[0]), [("input", len(w[0]), False) for w in weights],
                    beta=beta)
    with torch.no_grad():
        for p, w in zip(layer.weights, weights, strict=True):
            p.copy_(torch.tensor(w, dtype=torch.float32))
    return layer


@pytest.mark.parametrize("w_bits, u_bits, headroom", [
    (8, 16, 4.0), (2, 16, 4.0), (4, 8, 1.0), (8, 10, 4.0), (6, 12, 2.5), (8, 16, 100.0),
])
def test_layer_scale_follows_the_docstring(w_bits, u_bits, headroom):
    fmt = Format(w_bits=w_bits, u_bits=u_bits)
    # two edges; the largest magnitude (-0.8) is negative and on the second edge
    layer = lif_with([[[0.25, -0.1], [0.5, 0.0]], [[0.3, 0.1], [-0.8, 0.2]]])
    want = min((2 ** (w_bits - 1) - 1) / 0.8, (2 ** (u_bits - 1) - 1) / (headroom * 1.0))
    assert layer_scale(layer, fmt, headroom) == pytest.approx(want, rel=1e-6)


def test_layer_scale_limits_by_membrane_and_zero_weights():
    fmt = Format(w_bits=8, u_bits=8)
    tiny = lif_with([[[1e-3, -2e-3]]])
    assert layer_scale(tiny, fmt, 4.0) == pytest.approx(127 / 4.0)  # u-limited, not 127/2e-3
    zero = lif_with([[[0.0, 0.0]]])
    assert layer_scale(zero, fmt, 2.0) == pytest.approx(127 / 2.0)


def test_enter_integer_mode_fixes_scales_once():
    layer = lif_with([[[0.5, -0.25], [0.1, 0.2]]])
    out = TwinLIF("o", 2, [("h", 2, False)], spiking=False, reset="none")
    twin = TwinNetwork(input_size=2, input_kind="spike", layers=[layer, out], output="o",
                       fmt=Format(w_bits=6))
    enter_integer_mode(twin, headroom=4.0)
    assert layer.scale == pytest.approx(31 / 0.5)
    assert out.scale == pytest.approx(layer_scale(out, twin.fmt, 4.0))
    assert all(p.dtype == torch.float64 for p in twin.parameters())
    with torch.no_grad():
        layer.weights[0].mul_(0.5)
    enter_integer_mode(twin, headroom=4.0)
    assert layer.scale == pytest.approx(31 / 0.5)  # unchanged: fixed before QAT
    net = to_integer(twin)  # exported at the fixed scale
    assert net.layer("h").inputs[0].weight.tolist() == [[16, -8], [3, 6]]
    # 0.25*62 = 15.5 -> 16 (half to even), -0.125*62 = -7.75 -> -8, 0.05*62 = 3.1, 0.1*62 = 6.2


@pytest.mark.parametrize("w_bits", range(2, 9))
def test_to_integer_parameters_follow_the_rule(w_bits):
    gen = torch.Generator().manual_seed(w_bits)
    fmt = Format(w_bits=w_bits, u_bits=12, frac_bits=6)
    h = TwinLIF("h", 7, [("input", 9, False), ("h", 7, True)], reset="zero", v_reset=-0.3)
    out = TwinLIF("o", 3, [("h", 7, False)], spiking=False, reset="none")
    randomize_lif(h, gen, [1.0, 0.3], bias=0.5)
    randomize_lif(out, gen, [1.0], bias=0.5)
    twin = TwinNetwork(input_size=9, input_kind="spike", layers=[h, out], output="o", fmt=fmt)
    w_lo, w_hi = signed_range(w_bits)
    u_lo, u_hi = signed_range(fmt.u_bits)
    net = to_integer(twin)
    for tw in (h, out):
        layer = net.layer(tw.name)
        s = layer_scale(tw, fmt)
        assert s == pytest.approx(w_hi / max(float(w.detach().abs().max()) for w in tw.weights))
        full = 0
        for p, w in zip(layer.inputs, tw.weights, strict=True):
            assert p.weight.dtype == torch.int64
            assert w_lo <= int(p.weight.min()) and int(p.weight.max()) <= w_hi
            ref = w.detach().double() * s
            assert bool(((p.weight - ref).abs() <= 0.5 + 1e-4).all())
            full = max(full, int(p.weight.abs().max()))
        assert full == w_hi  # PTQ uses the full weight range
        assert layer.theta.tolist() == [max(1, round(s))] * tw.size
        assert bool(((layer.bias - tw.bias.detach().double() * s).abs() <= 0.5 + 1e-4).all())
        alpha = tw.beta.detach().double().clamp(0, 1) * fmt.one
        assert bool(((layer.alpha - alpha).abs() <= 0.5 + 1e-4).all())
        assert int(layer.alpha.min()) >= 0 and int(layer.alpha.max()) <= fmt.one
        assert u_lo <= int(layer.bias.min()) and int(layer.bias.max()) <= u_hi
    assert net.layer("h").v_reset == round(-0.3 * layer_scale(h, fmt))
    assert net.layer("h").reset == "zero" and net.layer("o").reset == "none"
    assert not net.layer("o").spiking
    # after the scales are fixed, weights that grew past the range are clamped to it
    enter_integer_mode(twin)
    with torch.no_grad():
        for w in h.weights:
            w.mul_(3.0)
    grown = to_integer(twin).layer("h")
    for p in grown.inputs:
        assert w_lo <= int(p.weight.min()) and int(p.weight.max()) <= w_hi
    assert int(grown.inputs[0].weight.max()) == w_hi
    assert int(grown.inputs[0].weight.min()) == w_lo  # the clamp is to the signed range


def test_to_integer_theta_is_exact_for_wide_formats():
    fmt = Format(w_bits=32, u_bits=32, acc_bits=48)
    layer = lif_with([[[1.0, -0.5]]])
    twin = TwinNetwork(input_size=2, input_kind="spike", layers=[layer], output="h", fmt=fmt)
    s = layer_scale(layer, fmt, 3.0)  # (2**31 - 1) / 3: not a float32 integer
    assert s > 2 ** 24
    assert to_integer(twin, headroom=3.0).layer("h").theta.tolist() == [round(s)]


def test_to_integer_ssm_parameters():
    fmt = Format(frac_bits=4, in_bits=4)
    key = TwinLIF("key", 3, [("input", 4, False)])
    gate = TwinLIF("gate", 1, [("input", 4, False)])
    mem = TwinSSM("mem", 3, 2, {"k": ("key", False), "v": ("const", [2.4, -9.0]),
                                "q": ("const", [0.5, 1.5, 7.6])},
                  mode="selective", gate=("gate", 1, True), y_shift=2)
    with torch.no_grad():
        mem.decay.copy_(torch.tensor([[0.0, 0.5, 1.2], [-0.3, 0.97, 0.03]]))
    twin = TwinNetwork(input_size=4, input_kind="spike", layers=[key, gate, mem],
                       output="mem", fmt=fmt)
    s = to_integer(twin).layer("mem")
    assert s.mode == "selective" and s.gate == "gate" and s.gate_recurrent and s.y_shift == 2
    assert s.k.source == "key" and not s.k.recurrent
    assert s.v.const.tolist() == [2, -8]                    # round, clamp to in_bits=4
    assert s.q.const.tolist() == [0, 2, 7]                  # half to even; 7.6 -> 8 -> 7
    assert s.decay.tolist() == [[0, 8, 16], [0, 16, 0]]     # round(a * 16), a in [0, 1]


# ------------------------------------------------------------------- predict
def first_argmax(values: list[float]) -> int:
    best = max(values)
    return values.index(best)


def test_predict_last_sum_and_lowest_index_ties():
    outputs = torch.tensor([
        # t = 0
        [[5, 1, 1, 0], [0, 0, 0, 0], [1, 9, 2, 9], [-3, -1, -1, -2]],
        # t = 1
        [[0, 2, 2, 1], [3, 3, 3, 3], [2, 2, 2, 2], [-5, -4, -6, -4]],
    ], dtype=torch.int64)
    last = [first_argmax(row) for row in outputs[-1].tolist()]
    summed = [first_argmax([a + b for a, b in zip(r0, r1, strict=True)])
              for r0, r1 in zip(outputs[0].tolist(), outputs[1].tolist(), strict=True)]
    assert last == [1, 0, 0, 1]
    assert summed == [0, 0, 1, 1]
    assert predict(outputs, "last").tolist() == last
    assert predict(outputs, "sum").tolist() == summed
    assert predict(outputs.double(), "sum").tolist() == summed


def test_predict_random_against_pure_python():
    gen = torch.Generator().manual_seed(3)
    outputs = torch.randint(-2, 3, (4, 50, 6), generator=gen)  # many ties
    last = [first_argmax(r) for r in outputs[-1].tolist()]
    summed = [first_argmax(r) for r in outputs.sum(dim=0).tolist()]
    largest = [first_argmax([max(col) for col in zip(*rows, strict=True)])
               for rows in outputs.transpose(0, 1).tolist()]
    assert predict(outputs, "last").tolist() == last
    assert predict(outputs, "sum").tolist() == summed
    assert predict(outputs, "max").tolist() == largest


def test_predict_unknown_readout():
    assert quantize.READOUTS == ("last", "sum", "max")
    with pytest.raises(ValueError, match="unknown readout 'mean'"):
        predict(torch.zeros(1, 1, 2), "mean")


# --------------------------------------------------- training: float vs int
@pytest.fixture(scope="module")
def tiny_digits():
    # One intra-op thread: on a loaded 2-core machine torch's two spinning OpenMP
    # threads make this tiny run ~100x slower (25 s instead of 0.2 s); the results
    # do not depend on the thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = DigitsConfig(epochs=4, qat_epochs=1, hidden=32, timesteps=2)
        net, meta = train(cfg, progress=False)
    finally:
        torch.set_num_threads(threads)
    return cfg, net, meta


def test_qat_twin_and_integer_model_agree(tiny_digits):
    cfg, net, meta = tiny_digits
    t = meta["training"]
    assert t["agreement_qat_twin_vs_int"] == 1.0
    assert t["agreement_float_vs_ptq"] >= 0.9
    assert t["agreement_float_vs_int"] >= 0.8
    assert len(t["loss"]) == cfg.epochs and len(t["qat_loss"]) == cfg.qat_epochs
    assert t["accuracy_int"] > 0.5  # well above chance (0.1) even for this tiny run
    # the reported integer accuracy is what evaluating the exported network gives
    report = evaluate(net, meta)
    assert report["accuracy"] == pytest.approx(t["accuracy_int"], abs=1e-12)
    counts = torch.bincount(torch.from_numpy(load_digits().target))
    n_test = sum(round(0.2 * int(c)) for c in counts)  # the documented stratified split
    assert report["timesteps"] == 2 and report["w_bits"] == 8 and report["samples"] == n_test
    w_lo, w_hi = signed_range(8)
    for layer in net.layers:
        for p in layer.inputs:
            assert w_lo <= int(p.weight.min()) and int(p.weight.max()) <= w_hi
