"""Random feature-map networks for the integer model: convolutions, pools, current-based
and IF neurons (the companion of ``netgen``, which draws dense LIF / SSM networks)::

    from featgen import random_feature_network
    net = random_feature_network(random.Random(seed))

The input is a feature map ``(C, L)`` or ``(C, H, W)``; each LIF layer reads the
layer before it through a convolution (stride, padding, dilation, groups,
depthwise), a sum pool then a convolution, a sum pool then a dense weight, or
a dense weight; now and then a layer adds a dense skip edge or a recurrent one.
Layers are spiking LIF, IF (``alpha = 2**F``) or current-based (``alpha_syn``),
some with spike counts (``multi_spike``) or a membrane floor (``v_min``), the
last sometimes a non-spiking readout.  About a third of the networks are
"hot" (narrow widths, extreme values) so that the saturations are reached.
"""

from __future__ import annotations

import dataclasses
import math
import random

import torch
from netgen import _value, random_format
from spikeforge.golden.integer import (
    INPUT,
    Conv,
    LIFLayer,
    Network,
    Pool,
    Projection,
    signed_range,
)
from spikeforge.golden.projection import out_size

__all__ = ["random_feature_network"]


def _pool(rng: random.Random, spatial: list[int]) -> Pool | None:
    """A sum pool that tiles ``spatial`` exactly (or None when none does)."""
    kernel, stride = [], []
    for n in spatial:
        options = [(k, s) for k in (1, 2, 3) for s in (1, 2, 3)
                   if k <= n and (n - k) % s == 0 and (k, s) != (1, 1)]
        if not options:
            return None
        k, s = rng.choice(options)
        kernel.append(k)
        stride.append(s)
    return Pool(tuple(kernel), tuple(stride))


def _conv(rng: random.Random, channels: int, spatial: list[int], w_range, extreme: float):
    """A convolution's geometry and kernel over a ``(channels, *spatial)`` map."""
    for _ in range(20):
        groups = rng.choice([g for g in range(1, channels + 1) if channels % g == 0])
        out_ch = groups * rng.randint(1, max(1, 4 // groups))
        kernel = [rng.randint(1, min(3, n)) for n in spatial]
        stride = [rng.choice((1, 1, 2)) for _ in spatial]
        padding = [rng.choice((0, 0, k // 2, k - 1)) for k in kernel]
        dilation = [rng.choice((1, 1, 2)) for _ in spatial]
        out = [out_size(n, k, s, p, d) for n, k, s, p, d
               in zip(spatial, kernel, stride, padding, dilation, strict=True)]
        if min(out) >= 1 and math.prod(out) * out_ch <= 48:
            break
    else:
        return None
    density = rng.choice((0.3, 0.7, 1.0))
    w = [_value(rng, *w_range, zero=1 - density, extreme=extreme)
         for _ in range(out_ch * (channels // groups) * math.prod(kernel))]
    weight = torch.tensor(w, dtype=torch.int64).reshape(out_ch, channels // groups, *kernel)
    return Conv(tuple(stride), tuple(padding), tuple(dilation), groups), weight, (out_ch, *out)


def _dense(rng, rows: int, cols: int, w_range, extreme: float) -> torch.Tensor:
    density = rng.choice((0.2, 0.5, 1.0))
    return torch.tensor([[_value(rng, *w_range, zero=1 - density, extreme=extreme)
                          for _ in range(cols)] for _ in range(rows)], dtype=torch.int64)


def _main_edge(rng, source: str, shape: tuple, w_range, extreme: float):
    """The layer's main projection from ``source`` (shape ``shape``) and the layer's shape."""
    size = math.prod(shape)
    if len(shape) >= 2 and rng.random() < 0.8:
        channels, *spatial = shape
        pool = _pool(rng, spatial) if rng.random() < 0.4 else None
        pooled = shape if pool is None else Projection(
            source, torch.zeros(1, 1, dtype=torch.int64), in_shape=shape, pool=pool).pooled_shape
        if rng.random() < 0.75:
            drawn = _conv(rng, channels, list(pooled[1:]), w_range, extreme)
            if drawn is not None:
                conv, weight, out = drawn
                return Projection(source, weight, in_shape=shape, pool=pool, conv=conv), out
        if pool is not None:
            rows = rng.randint(1, 10)
            return Projection(source, _dense(rng, rows, math.prod(pooled), w_range, extreme),
                              in_shape=shape, pool=pool), (rows,)
    rows = rng.randint(1, 10)
    return Projection(source, _dense(rng, rows, size, w_range, extreme)), (rows,)


def _neurons(rng, fmt, size: int, spiking: bool, extreme: float) -> dict:
    """Per-neuron parameters of a LIF, IF or current-based layer."""
    one = fmt.one
    u_lo, u_hi = signed_range(fmt.u_bits)
    w_hi = signed_range(fmt.w_bits)[1]
    kind = rng.choice(("lif", "if", "cuba"))
    alpha = [one] * size if kind == "if" else \
        [rng.choice((0, one, rng.randint(0, one), rng.randint(one // 2, one))) for _ in range(size)]
    alpha_syn = None
    if kind == "cuba":
        alpha_syn = torch.tensor([rng.choice((0, one, rng.randint(0, one))) for _ in range(size)],
                                 dtype=torch.int64)
    cap = min(u_hi, rng.choice((max(1, w_hi), 4 * w_hi, u_hi)))
    theta = [_value(rng, 1, cap, extreme=extreme) for _ in range(size)]
    small = min(u_hi, max(1, w_hi // 2))
    bias = [_value(rng, u_lo, u_hi, extreme=1.0) if rng.random() < extreme / 2
            else _value(rng, -small, small, zero=0.5) for _ in range(size)]
    reset = rng.choice(("subtract", "zero", "none")) if spiking else "none"
    multi = spiking and rng.random() < 0.25  # Sinabs' MultiSpike
    v_min = None
    if rng.random() < 0.25:  # Sinabs' min_v_mem (often -theta)
        v_min = torch.tensor([max(u_lo, -t) if rng.random() < 0.7 else rng.randint(u_lo, 0)
                              for t in theta], dtype=torch.int64)
    return {"multi_spike": multi, "v_min": v_min,"alpha": torch.tensor(alpha, dtype=torch.int64),
            "theta": torch.tensor(theta, dtype=torch.int64),
            "bias": torch.tensor(bias, dtype=torch.int64), "alpha_syn": alpha_syn,
            "reset": reset, "v_reset": rng.randint(u_lo // 2, u_hi // 2) if reset == "zero" else 0,
            "spiking": spiking}


def random_feature_network(rng: random.Random, *, max_layers: int = 3,
                           hot_prob: float = 0.35) -> Network:
    """A random valid feature-map :class:`Network` drawn from ``rng`` (module docstring)."""
    hot = rng.random() < hot_prob
    fmt = random_format(rng, hot=hot)
    w_range = signed_range(fmt.w_bits)
    extreme = 0.3 if hot else 0.05
    dims = rng.choice((1, 2))
    in_shape = (rng.randint(1, 3), *(rng.randint(1, 6) for _ in range(dims)))
    shapes = {INPUT: in_shape}
    layers = []
    count = rng.randint(1, max_layers)
    for index in range(count):
        name = f"f{index}"
        prev = layers[-1].name if layers else INPUT
        main, shape = _main_edge(rng, prev, shapes[prev], w_range, extreme)
        size = math.prod(shape)
        inputs = [main]
        if layers and rng.random() < 0.3:  # a dense skip from further back
            src = rng.choice([INPUT, *(la.name for la in layers[:-1])])
            inputs.append(Projection(src, _dense(rng, size, math.prod(shapes[src]), w_range,
                                                 extreme)))
        spiking = index < count - 1 or rng.random() < 0.8
        if rng.random() < 0.3:
            rec = rng.choice([name, *(la.name for la in layers)])
            if rec != name or spiking:  # (a non-spiking readout is no source)
                width = size if rec == name else math.prod(shapes[rec])
                inputs.append(Projection(rec, _dense(rng, size, width, w_range, extreme),
                                         recurrent=True))
        params = _neurons(rng, fmt, size, spiking, extreme)
        layers.append(LIFLayer(name, size, inputs=inputs, shape=tuple(shape), **params))
        shapes[name] = shape
    kind = rng.choice(("spike", "int"))
    net = Network(input_size=math.prod(in_shape), input_kind=kind, layers=layers,
                  output=layers[-1].name, fmt=fmt)
    need = max([2] + [net.required_acc_bits(layer) for layer in layers])
    return Network(input_size=net.input_size, input_kind=kind, layers=layers,
                   output=layers[-1].name,
                   fmt=dataclasses.replace(fmt, acc_bits=min(48, need + rng.choice((0, 1, 3)))))


def input_shape(net: Network) -> tuple[int, ...] | None:
    """The input's feature-map shape (from the first projection that reads it as one)."""
    for layer in net.layers:
        for p in layer.inputs:
            if p.source == INPUT and p.in_shape is not None:
                return tuple(p.in_shape)
    return None
