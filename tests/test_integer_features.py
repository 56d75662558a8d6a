"""Feature-map projections (convolutions, sum pools) and current-based / IF neurons in the
integer model: hand-worked cases, the fast model against the naive event-driven
reference on randomized networks (every output, membrane, spike, state and op
count), and the validation of their geometry."""

from __future__ import annotations

import functools
import math
import random
import re

import pytest
import torch
from featgen import random_feature_network
from intnets import T
from netgen import random_input
from spikeforge.golden.coverage import BINS, Coverage
from spikeforge.golden.integer import (
    Conv,
    Format,
    LIFLayer,
    Network,
    NetworkError,
    Pool,
    Projection,
)
from test_integer_rules import assert_order_free, assert_same, run_both


def _layer(name, size, inputs, *, alpha, theta, alpha_syn=None, bias=None, reset="subtract",
           shape=None, spiking=True):
    return LIFLayer(name, size, T(alpha), T(theta), T(bias or [0] * size), inputs,
                    reset=reset if spiking else "none", spiking=spiking,
                    alpha_syn=None if alpha_syn is None else T(alpha_syn), shape=shape)


def _net(input_size, layer, fmt=None, kind="spike"):
    return Network(input_size=input_size, input_kind=kind, layers=[layer], output=layer.name,
                   fmt=fmt)


# ------------------------------------------------------------------ hand-worked


def test_conv1d_stride_and_padding():
    # x = [1 0 1 1 0], kernel [1 2 3], stride 2, padding 1: three outputs reading
    # positions (-1 0 1), (1 2 3), (3 4 5): 2*1 = 2, 2*1 + 3*1 = 5, 1*1 = 1.
    proj = Projection("input", T([[[1, 2, 3]]]), in_shape=(1, 5), conv=Conv(2, 1))
    net = _net(5, _layer("c", 3, [proj], alpha=[0] * 3, theta=[3] * 3, shape=(1, 3)))
    ref = run_both(net, [[1, 0, 1, 1, 0]])
    assert ref["membranes"]["c"] == [[2, 2, 1]] and ref["spikes"]["c"] == [[0, 1, 0]]
    # Events at 0, 2, 3 reach 1, 1 and 2 kernel taps.
    assert ref["synops"] == 4
    assert proj.fanout().tolist() == [1, 2, 1, 2, 1]  # 1 and 3 sit under two windows


def test_sum_pool_then_dense():
    # A 2x2 window sums the three spikes of x = [[1 1] [0 1]]; the weight 2 doubles it.
    proj = Projection("input", T([[2]]), in_shape=(1, 2, 2), pool=Pool((2, 2)))
    net = _net(4, _layer("p", 1, [proj], alpha=[0], theta=[100]))
    ref = run_both(net, [[1, 1, 0, 1]])
    assert ref["membranes"]["p"] == [[6]] and ref["synops"] == 3


def test_grouped_conv_keeps_channels_apart():
    # Depthwise (groups = 2): output channel c reads only input channel c.
    proj = Projection("input", T([[[3]], [[-2]]]), in_shape=(2, 1), conv=Conv(groups=2))
    net = _net(2, _layer("d", 2, [proj], alpha=[0, 0], theta=[100, 100]))
    assert run_both(net, [[1, 1]])["membranes"]["d"] == [[3, -2]]
    dense = Projection("input", T([[[3, 5]], [[-2, 1]]]).reshape(2, 2, 1), in_shape=(2, 1),
                       conv=Conv())
    net = _net(2, _layer("d", 2, [dense], alpha=[0, 0], theta=[100, 100]))
    assert run_both(net, [[1, 1]])["membranes"]["d"] == [[8, -1]]


def test_current_based_neuron():
    # F = 2: alpha_syn = 2/4, no membrane leak (IF), theta 10, one input spike of
    # weight 4 per step.  c: 4, 2+4 = 6, 3+4 = 7, 3+4 = 7 (floor(14/4) = 3);
    # v: 4, 4+6 = 10 (spike, -10 -> 0), 7, 7+7 = 14 (spike -> 4).
    fmt = Format(frac_bits=2)
    net = _net(1, _layer("c", 1, [Projection("input", T([[4]]))], alpha=[4], alpha_syn=[2],
                         theta=[10]), fmt)
    ref = run_both(net, [[1]] * 4)
    assert [m[0] for m in ref["membranes"]["c"]] == [4, 0, 7, 4]
    assert [s[0] for s in ref["spikes"]["c"]] == [0, 1, 0, 1]
    assert ref["state"]["c.c"] == [7]
    # The current's decay floors: c = -3, then floor(2 * -3 / 4) - 3 = -2 - 3 = -5.
    neg = _net(1, _layer("c", 1, [Projection("input", T([[-3]]))], alpha=[0], alpha_syn=[2],
                         theta=[10]), fmt)
    assert run_both(neg, [[1], [1]])["state"]["c.c"] == [-5]


def test_multi_spikes_and_the_membrane_floor():
    """Sinabs' MultiSpike, MembraneSubtract and min_v_mem = -theta: theta 3 and v = 10
    give floor(10/3) = 3 spikes and 10 - 9 = 1 left; then 1 - 10 = -9 is raised to -3."""
    layer = LIFLayer("m", 1, T([256]), T([3]), T([0]), [Projection("input", T([[10, -5]]))],
                     multi_spike=True, v_min=T([-3]))
    net = Network(input_size=2, input_kind="int", layers=[layer], output="m")
    ref = run_both(net, [[1, 0], [0, 2]])
    assert ref["spikes"]["m"] == [[3], [0]] and ref["membranes"]["m"] == [[1], [-3]]
    # A layer reading it sees counts: its worst case is u_max // theta spikes per step.
    assert net.source_bound("m") == 32767 // 3


def test_current_saturates():
    # u_bits = 4 (-8..7): the current 5, then 5 + 5 = 10 -> 7; the membrane reads it.
    fmt = Format(u_bits=4, frac_bits=0, w_bits=4)
    net = _net(1, _layer("c", 1, [Projection("input", T([[5]]))], alpha=[0], alpha_syn=[1],
                         theta=[7], reset="none", spiking=False), fmt)
    ref = run_both(net, [[1], [1]])
    assert ref["state"]["c.c"] == [7] and ref["saturated"]["c"] == 1
    assert [m[0] for m in ref["membranes"]["c"]] == [5, 7]


# ------------------------------------------------------------------- randomized


def _features(net: Network) -> set[str]:
    found = set()
    for layer in net.layers:
        if layer.current_based:
            found.add("cuba")
        if bool((layer.alpha == net.fmt.one).all()):
            found.add("if")
        for p in layer.inputs:
            if p.recurrent:
                found.add("recurrent")
            if p.pool is not None:
                found.add("pool+conv" if p.conv is not None else "pool+dense")
            if p.conv is not None:
                channels = p.pooled_shape[0]
                stride, padding, dilation = p.conv.resolved(len(p.in_shape) - 1)
                found.add(f"conv{len(p.in_shape) - 1}d")
                found |= {name for name, hit in (
                    ("groups", p.conv.groups > 1),
                    ("depthwise", p.conv.groups == channels > 1),
                    ("stride", max(stride) > 1), ("padding", max(padding) > 0),
                    ("dilation", max(dilation) > 1)) if hit}
    return found


@functools.cache
def _check(seed: int) -> tuple[frozenset, frozenset, int, int]:
    """One randomized case: its structural features, its coverage bins (the
    feature-map and current bins of ``golden.coverage``) and its saturation counts."""
    rng = random.Random(seed)
    net = random_feature_network(rng)
    x = random_input(rng, net, rng.randint(1, 8), rng.randint(1, 3))
    refs = assert_same(net, x, f"seed {seed}")
    coverage = Coverage(features=True)
    coverage.observe(net, x)
    bins = frozenset(name for name, n in coverage.counts.items() if n)
    return (frozenset(_features(net)), bins, sum(r["saturated"]["c"] for r in refs),
            sum(r["saturated"]["u"] for r in refs))


SEEDS = range(200)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_feature_network_matches_reference(seed):
    _check(seed)


def test_random_feature_networks_cover_the_rules():
    features, bins, c_sat, u_sat = set(), set(), 0, 0
    for seed in SEEDS:
        found, hit, c, u = _check(seed)
        features |= found
        bins |= hit
        c_sat += c > 0
        u_sat += u > 0
    expected = {"cuba", "if", "recurrent", "pool+conv", "pool+dense", "conv1d", "conv2d",
                "groups", "depthwise", "stride", "padding", "dilation"}
    assert expected <= features, f"not covered: {sorted(expected - features)}"
    feature_bins = {b for b in BINS if b.split(".")[0] in ("conv", "pool", "cuba", "multi",
                                                               "v_min")}
    assert feature_bins <= bins, f"bins not hit: {sorted(feature_bins - bins)}"
    assert c_sat >= 5 and u_sat >= 5, (c_sat, u_sat)


@pytest.mark.parametrize("seed", range(20))
def test_feature_event_order_does_not_matter(seed):
    rng = random.Random(3000 + seed)
    net = random_feature_network(rng)
    assert_order_free(net, random_input(rng, net, rng.randint(1, 6), 1)[:, 0].tolist())


@pytest.mark.parametrize("seed", range(20))
def test_feature_state_continues(seed):
    rng = random.Random(4000 + seed)
    net = random_feature_network(rng)
    steps = rng.randint(2, 8)
    x = random_input(rng, net, steps, 2)
    cut = rng.randint(1, steps - 1)
    whole, first = net.run(x), net.run(x[:cut])
    second = net.run(x[cut:], first.state)
    assert whole.state.keys() == second.state.keys()
    for key in whole.state:
        assert torch.equal(whole.state[key], second.state[key]), key
    for name in whole.outputs:
        assert torch.equal(whole.outputs[name],
                           torch.cat([first.outputs[name], second.outputs[name]]))


@pytest.mark.parametrize("seed", range(30))
def test_dense_matrix_equals_the_projection(seed):
    rng = random.Random(5000 + seed)
    net = random_feature_network(rng)
    for layer in net.layers:
        for p in layer.inputs:
            x = random_input(rng, net, 1, 3)[0] if p.source == "input" else \
                torch.randint(0, 2, (3, net.source_size(p.source)))
            assert torch.equal(p.apply(x), x @ p.dense().T)


# ------------------------------------------------------------------- validation


def _w(*shape):
    return torch.ones(*shape, dtype=torch.int64)


@pytest.mark.parametrize(("proj", "size", "message"), [
    (Projection("input", _w(2, 1, 3, 3), in_shape=(1, 5), conv=Conv()), 6,
     "the kernel has shape (2, 1, 3, 3), expected [C_out, C_in/groups, k] for 1 spatial "
     "dimension(s)"),
    (Projection("input", _w(2, 1, 3, 3), in_shape=(3, 5, 5), conv=Conv(groups=2)), 18,
     "groups=2 does not divide the 3 input channels and the 2 output channels"),
    (Projection("input", _w(2, 2, 3, 3), in_shape=(3, 5, 5), conv=Conv()), 18,
     "the kernel has 2 input channels per group, expected 3 (3 channels / groups=1)"),
    (Projection("input", _w(1, 1, 3), in_shape=(1, 2), conv=Conv()), 1,
     "the kernel (3,) (dilation (1,)) does not fit the map (2,) with padding (0,)"),
    (Projection("input", _w(1, 1, 3), in_shape=(1, 5), conv=Conv()), 4,
     "the convolution's output (1, 3) holds 3 values, not the layer's 4"),
    (Projection("input", _w(1, 4), in_shape=(1, 5), pool=Pool((2,))), 1,
     "pool kernel (2,), stride (2,), padding (0,) does not tile the map (5,) ((1,) left over "
     "per dimension)"),
    (Projection("input", _w(1, 3), in_shape=(1, 4, 4), pool=Pool((2, 2))), 1,
     "the weight has shape (1, 3), expected (1, 4) (the pooled map (1, 2, 2) flattened)"),
    (Projection("input", _w(1, 1, 1), in_shape=(4,), conv=Conv()), 1,
     "in_shape (4,) is not (C, L) or (C, H, W) of positive integers"),
    (Projection("input", _w(1, 1, 1), conv=Conv()), 1,
     "a pool or a convolution needs the source's in_shape (C, *spatial)"),
    (Projection("input", _w(1, 1, 3), in_shape=(1, 5), conv=Conv(stride=0)), 1,
     "conv stride (0,), padding (0,), dilation (1,): stride and dilation must be >= 1, "
     "padding >= 0"),
])
def test_projection_geometry_errors(proj, size, message):
    input_size = 4 if proj.in_shape is None else math.prod(proj.in_shape)
    with pytest.raises(NetworkError, match=re.escape(
            f"layer 'c': input from 'input': {message}") + "$"):
        _net(input_size, _layer("c", size, [proj], alpha=[0] * size, theta=[1] * size))


def test_in_shape_needs_a_pool_or_conv():
    proj = Projection("input", _w(1, 4), in_shape=(1, 4))
    with pytest.raises(NetworkError, match=re.escape(
            "layer 'c': input from 'input': in_shape (1, 4) without a pool or a "
            "convolution") + "$"):
        _net(4, _layer("c", 1, [proj], alpha=[0], theta=[1]))


@pytest.mark.parametrize(("layer", "message"), [
    ({"alpha_syn": [300]}, "layer 'c': alpha_syn has values in [300, 300], outside [0, 256]"),
    ({"alpha_syn": [1, 2]}, "layer 'c': alpha_syn has shape (2,), expected (1,)"),
    ({"shape": (2, 1)}, "layer 'c': shape (2, 1) is not a tuple of positive integers whose "
                        "product is the size 1"),
])
def test_neuron_feature_errors(layer, message):
    with pytest.raises(NetworkError, match=re.escape(message) + "$"):
        _net(1, _layer("c", 1, [Projection("input", T([[1]]))], alpha=[0], theta=[1], **layer))
