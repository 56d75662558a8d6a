"""NIR interchange: import NIR graphs into the integer model, export it back.

:mod:`.nirgraph` reads a NIR graph and discretises it into a float network;
here each of its layers becomes one integer LIF layer and each input one
projection.  Every neuron gets a scale ``s`` (the quantizer's rule,
:func:`.quantize.pick_scale`, over its group: itself, its output channel under a
convolution, or the whole layer if it does not spike or resets to a nonzero
``v_reset``; ``v_max`` the largest of ``|v_thr|`` and ``|v_reset|`` of a spiking
layer, 0 for a non-spiking one)::

    s        = min( (2**(w_bits-1) - 1) / max|g W|,  (2**(u_bits-1) - 1) / (headroom v_max) )
    W_int    = round(s g W)           bias_int = round(s (g b + (1 - beta) v_leak))
    alpha    = round(beta 2**F)       v_reset_int = round(s v_reset)
    theta    = floor(s v_thr) + 1     (so the integer v >= theta  <=>  v > s v_thr)

Anything that does not map raises :class:`.nirgraph.NirError` naming the node
and why.  :func:`fidelity` reports how closely the integer model follows the
float one; :func:`to_graph` / :func:`export_nir` (:mod:`.nirexport`) write an
integer network as a NIR graph in integer units.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .integer import Format, LIFLayer, Network, NetworkError, Projection, signed_range
from .nirexport import META_FORMAT, META_KIND, export_nir, to_graph
from .nirgraph import (
    FloatLayer,
    FloatNetwork,
    NirError,
    from_graph,
    legacy_nodes,
    read_graph,
)
from .nirreset import ConversionWarning
from .quantize import pick_scale

__all__ = ["NirImport", "import_nir", "fidelity", "random_input", "to_graph", "export_nir"]



# ------------------------------------------------------------- quantizing
@dataclass
class NirImport:
    """An imported NIR graph: the integer network, the float model it follows and
    each layer's scale (integer membrane = scale x float membrane): a float, or per
    neuron an array where a spiking layer's neurons (or channels) have their own."""

    net: Network
    float_net: FloatNetwork
    scales: dict[str, float]
    meta: dict


def _groups(la: FloatLayer) -> np.ndarray:
    """Per neuron, the group that shares a scale: a spiking layer's output channel when
    a convolution (a shared kernel) feeds it, else the neuron itself; one group for a
    non-spiking layer (its membranes are compared with each other) or a zero reset
    to a nonzero v_reset (the integer layer has one v_reset)."""
    if not la.spiking or (la.reset == "zero" and la.v_reset != 0):
        return np.zeros(la.size, dtype=np.int64)
    convs = [p for p, _ in la.inputs if p.conv is not None]
    if convs:
        channels = convs[0].out_shape[0]
        return np.repeat(np.arange(channels), la.size // channels)
    return np.arange(la.size)


def _row_max(proj: Projection, size: int) -> np.ndarray:
    """Per target neuron, the largest |weight| that reaches it."""
    w = proj.weight.abs()
    if proj.conv is None:
        return w.amax(dim=1).numpy() if w.numel() else np.zeros(size)
    per_channel = w.reshape(w.shape[0], -1).amax(dim=1).numpy()
    return np.repeat(per_channel, size // w.shape[0])


def _scales(la: FloatLayer, fmt: Format, headroom: float) -> np.ndarray:
    """Per neuron, the scale of its membrane (:func:`.quantize.pick_scale` per group of
    :func:`_groups`, each made exact on the threshold where Sinabs' rule needs it)."""
    groups = _groups(la)
    w_max = np.max([_row_max(p, la.size) for p, _ in la.inputs], axis=0)
    v_max = np.maximum(np.abs(la.threshold), abs(la.v_reset)) if la.spiking \
        else np.zeros(la.size)
    scales = np.empty(la.size)
    for g in np.unique(groups):
        members = groups == g
        s = pick_scale(float(w_max[members].max()), float(v_max[members].max()), fmt, headroom)
        scales[members] = _integer_threshold(la, s, members)
    return scales


def _scaled_weight(proj: Projection, scales: np.ndarray) -> torch.Tensor:
    """The projection's weight times each target's scale (a kernel: its channel's)."""
    s = torch.from_numpy(scales)
    if proj.conv is None:
        return proj.weight * s[:, None]
    per_channel = s.reshape(proj.weight.shape[0], -1)[:, 0]
    return proj.weight * per_channel.reshape(-1, *([1] * (proj.weight.dim() - 1)))


def _quantize_layer(la: FloatLayer, fmt: Format, scale: float | None,
                    headroom: float) -> tuple[LIFLayer, float | np.ndarray]:
    w_lo, w_hi = signed_range(fmt.w_bits)
    u_lo, u_hi = signed_range(fmt.u_bits)
    scales = np.full(la.size, scale) if scale is not None else _scales(la, fmt, headroom)
    inputs = []
    for proj, recurrent in la.inputs:
        w = torch.round(_scaled_weight(proj, scales))
        if w.numel() and (w.min() < w_lo or w.max() > w_hi):
            raise NirError(f"node {la.name!r}: weights from {proj.source!r} reach "
                           f"[{float(w.min()):.0f}, {float(w.max()):.0f}] at scale "
                           f"{scales.max():.6g}, outside w_bits={fmt.w_bits}")
        inputs.append(Projection(proj.source, w.to(torch.int64), recurrent,
                                 in_shape=proj.in_shape, pool=proj.pool, conv=proj.conv))
    bias = np.round(scales * la.bias)
    if bias.size and (bias.min() < u_lo or bias.max() > u_hi):
        raise NirError(f"node {la.name!r}: the bias (with the v_leak term) reaches "
                       f"{np.abs(bias).max():.0f} at scale {scales.max():.6g}, outside u_bits="
                       f"{fmt.u_bits}")
    if la.spiking:
        # v > s thr <=> v >= floor(s thr) + 1 for an integer v; v >= s thr <=> v >= ceil(s thr)
        theta = np.ceil(scales * la.threshold) if la.inclusive \
            else np.floor(scales * la.threshold) + 1
        if theta.min() < 1 or theta.max() > u_hi:
            raise NirError(f"node {la.name!r}: v_threshold in [{la.threshold.min():.6g}, "
                           f"{la.threshold.max():.6g}] maps to theta in [{theta.min():.0f}, "
                           f"{theta.max():.0f}], outside 1..{u_hi} (integer thresholds are "
                           f"positive)")
        v_reset = round(float(scales[0]) * la.v_reset)  # (one scale if v_reset != 0)
        if not u_lo <= v_reset <= u_hi:
            raise NirError(f"node {la.name!r}: v_reset {la.v_reset!r} maps to {v_reset}, outside "
                           f"u_bits={fmt.u_bits}")
    else:
        theta, v_reset = np.ones(la.size), 0
    alpha = _decay(la.name, "beta", la.beta, fmt)
    alpha_syn = None if la.alpha_syn is None else _decay(la.name, "alpha_syn", la.alpha_syn, fmt)
    if alpha_syn is not None and np.any((alpha_syn == 0) & (la.alpha_syn > 0)):
        raise NirError(f"node {la.name!r}: the synaptic current's decay 1 - dt/tau_syn = "
                       f"{float(la.alpha_syn[(alpha_syn == 0)].max()):.6g} rounds to 0 at "
                       f"frac_bits={fmt.frac_bits} (the current would not integrate); use more "
                       f"frac_bits or a smaller dt")

    def t(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(torch.int64)

    # u >= s v_min <=> u >= ceil(s v_min) for an integer u.
    v_min = None if la.v_min is None else np.clip(np.ceil(scales * la.v_min), u_lo, u_hi)
    layer = LIFLayer(name=la.name, size=la.size, alpha=t(alpha), theta=t(theta), bias=t(bias),
                     inputs=inputs, reset=la.reset if la.spiking else "none",
                     v_reset=int(v_reset), spiking=la.spiking,
                     alpha_syn=None if alpha_syn is None else t(alpha_syn),
                     shape=la.shape if la.shape and len(la.shape) > 1 else None,
                     multi_spike=la.multi_spike, v_min=None if v_min is None else t(v_min))
    return layer, float(scales[0]) if np.all(scales == scales[0]) else scales


def _integer_threshold(la: FloatLayer, scale: float, members: np.ndarray) -> float:
    """With Sinabs' rule (``v >= thr``, subtract ``thr`` per spike, ``floor(v / thr)``
    spikes) and one threshold for the ``members``, the scale made a little smaller so
    that ``scale * thr`` is an integer: the integer layer then subtracts and divides
    by exactly the float threshold (else each spike would lose the rounding)."""
    if not (la.spiking and la.inclusive):
        return scale
    thr = np.unique(la.threshold[members])
    if thr.size != 1 or not thr[0] > 0 or scale * thr[0] < 1:
        return scale
    return float(np.floor(scale * thr[0]) / thr[0])


def _decay(name: str, what: str, value: np.ndarray, fmt: Format) -> np.ndarray:
    """A decay in [0, 1] as Q0.F."""
    q = np.round(value * fmt.one)
    if q.min() < 0 or q.max() > fmt.one:
        raise NirError(f"node {name!r}: {what} outside [0, 1]")
    return q


def import_nir(source, *, fmt: Format | None = None, input_kind: str | None = None,
               dt: float | None = None, headroom: float = 4.0,
               reset: str | None = None, framework: str | None = None) -> NirImport:
    """Import a NIR file (path) or graph into an integer network.

    ``fmt``: the integer formats (default ``Format()``, or the one a spikeforge
    export recorded); ``input_kind``: ``"spike"`` (default) or ``"int"``; ``dt``:
    the discretisation step (default: detected from the file, see
    :func:`.nirgraph.from_graph`; the import's ``meta["conventions"]`` says what
    was detected).  A graph written by
    :func:`export_nir` keeps its format, scale 1 and resets, so the round trip is
    exact; with an explicit ``fmt`` it is quantized afresh like any other graph.
    ``reset``: ``"zero"``, ``"subtract"`` or ``"subtract-next"`` (snnTorch's,
    :mod:`.nirreset`) for every spiking node the file does not mark (default: zero to
    ``v_reset``, or subtraction where the file carries no ``v_reset``, NIR <= 1.0.4).
    ``framework``: the firing rule, :data:`.nirgraph.FRAMEWORKS` (default: detected).
    What the import had to assume is warned (:class:`.nirreset.ConversionWarning`) and
    kept in ``meta["warnings"]``.
    """
    path = source if isinstance(source, (str, Path)) else None
    graph = read_graph(path) if path is not None else source
    legacy = legacy_nodes(path) if path is not None else frozenset()
    meta = getattr(graph, "metadata", None) or {}
    if not isinstance(meta, dict):
        meta = {}
    ours = META_FORMAT in meta and fmt is None  # a spikeforge export, read as written
    if fmt is None:
        if ours:
            try:
                import json

                fmt = Format(**json.loads(str(meta[META_FORMAT])))
            except (ValueError, TypeError) as exc:
                raise NirError(f"graph metadata {META_FORMAT} is not a valid format: "
                               f"{exc}") from exc
        else:
            fmt = Format()
    if input_kind is None:
        input_kind = str(meta.get(META_KIND, "spike"))
    if input_kind not in ("spike", "int"):
        raise NirError(f"input_kind must be 'spike' or 'int', not {input_kind!r}")
    if not isinstance(headroom, (int, float)) or not headroom > 0:
        raise NirError(f"headroom must be positive, not {headroom!r}")
    if dt is None and ours and "spikeforge_dt" in meta:
        dt = float(meta["spikeforge_dt"])
    float_net = from_graph(graph, dt=dt, legacy=legacy, reset=reset, framework=framework)
    for message in float_net.warnings:
        warnings.warn(message, ConversionWarning, stacklevel=2)
    layers, scales = [], {}
    for la in float_net.layers:
        layer, scales[la.name] = _quantize_layer(la, fmt, 1.0 if ours else None, headroom)
        layers.append(layer)
    try:
        net = Network(input_size=float_net.input_size, input_kind=input_kind, layers=layers,
                      output=float_net.output, fmt=fmt)
    except NetworkError as exc:
        raise NirError(f"the imported network breaks the integer model's limits: {exc}") from exc
    info = {"source": "nir", "dt": float_net.dt, "headroom": headroom,
            "conventions": list(float_net.conventions),
            "scales": {k: v if isinstance(v, float) else [float(v.min()), float(v.max())]
                       for k, v in scales.items()},
            "input_shape": list(float_net.input_shape),
            "nir_nodes": {la.name: la.kind for la in float_net.layers},
            **({"warnings": list(float_net.warnings)} if float_net.warnings else {})}
    return NirImport(net=net, float_net=float_net, scales=scales, meta=info)


# ---------------------------------------------------------------- fidelity
def random_input(net: Network, steps: int, batch: int, *, seed: int = 0,
                 rate: float = 0.2) -> torch.Tensor:
    """Random inputs for a fidelity check: Bernoulli(``rate``) spikes, or uniform
    signed ``in_bits`` integers for an int input (torch generator ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    if net.input_kind == "spike":
        return (torch.rand(steps, batch, net.input_size, generator=gen) < rate).to(torch.int64)
    lo, hi = net.input_range()
    return torch.randint(lo, hi + 1, (steps, batch, net.input_size), generator=gen)


def _scale(imported: NirImport, name: str) -> torch.Tensor:
    """A layer's scale as a tensor (a float, or one per neuron)."""
    return torch.as_tensor(imported.scales[name], dtype=torch.float64)


FIDELITY_VALUES = 1 << 21
"""The most (step, sample, neuron) values one chunk of the fidelity run records (the
run goes a few samples at a time: the traces of a large network need not fit)."""


def fidelity(imported: NirImport, x: torch.Tensor, reference: torch.Tensor | None = None, *,
             progress: bool = False) -> dict:
    """How closely the integer model follows the discretised NIR dynamics on ``x``.

    Per layer: ``spike_agreement`` (the fraction of (step, sample, neuron) spike
    values that are equal), spike counts of both, and for every layer the
    membrane error ``membrane_rmse`` (integer membrane / scale vs float, in NIR
    units) relative to the float membranes' RMS.  ``reference`` (optional,
    ``[T, B, output size]``): the output spikes (or LI membranes) another
    simulator (e.g. snnTorch) produced on ``x``; the report then adds
    ``reference_agreement`` of the integer model and of the float model with it.
    Both models run :data:`FIDELITY_VALUES` values' worth of samples at a time
    (``progress``: a bar over the samples).
    """
    net = imported.net
    x = net.check_input(x)
    steps, samples = int(x.shape[0]), int(x.shape[1])
    if not steps or not samples:
        raise ValueError(f"the inputs have shape {list(x.shape)}: no steps or no samples "
                         f"to compare on")
    out = net.layer(net.output)
    if reference is not None:
        reference = torch.as_tensor(reference)
        want_shape = (steps, samples, out.size)
        if tuple(reference.shape) != want_shape:
            raise NirError(f"the reference output has shape {tuple(reference.shape)}, expected "
                           f"{want_shape}")
    sums = {layer.name: dict.fromkeys(("equal", "integer", "float", "ref_sq", "err_sq"), 0)
            for layer in net.layers}
    against = dict.fromkeys(("integer", "float", "ref_sq"), 0)
    neurons = sum(layer.size for layer in net.layers)
    chunk = max(1, FIDELITY_VALUES // max(1, steps * neurons))
    bar = tqdm(total=samples, desc="fidelity check", unit="sample", disable=not progress,
               leave=False)
    for start in range(0, samples, chunk):
        xb = x[:, start:start + chunk]
        trace = net.run(xb)
        ref = imported.float_net.run(xb)
        for layer in net.layers:
            s = sums[layer.name]
            if layer.spiking:
                got, want = trace.spikes[layer.name], ref["spikes"][layer.name]
                s["equal"] += int((got == want.to(torch.int64)).sum())
                s["integer"] += int(got.sum())
                s["float"] += int(want.sum())
            u_int = trace.membranes[layer.name].double() / _scale(imported, layer.name)
            u_ref = ref["membranes"][layer.name]
            s["ref_sq"] += float(u_ref.pow(2).sum())
            s["err_sq"] += float((u_int - u_ref).pow(2).sum())
        if reference is not None:
            rb = reference[:, start:start + chunk]
            if out.spiking:
                r = (rb != 0).to(torch.int64)
                against["integer"] += int((trace.spikes[net.output] == r).sum())
                against["float"] += int((ref["spikes"][net.output].to(torch.int64) == r).sum())
            else:
                r = rb.double()
                scale = _scale(imported, net.output)
                against["ref_sq"] += float(r.pow(2).sum())
                against["integer"] += float(
                    (trace.membranes[net.output].double() / scale - r).pow(2).sum())
                against["float"] += float((ref["membranes"][net.output] - r).pow(2).sum())
        del trace, ref
        bar.update(int(xb.shape[1]))
    bar.close()
    layers = {}
    for layer in net.layers:
        s, count = sums[layer.name], steps * samples * layer.size
        entry = {}
        if layer.spiking:
            entry.update(spike_agreement=s["equal"] / count, spikes_integer=s["integer"],
                         spikes_float=s["float"])
        rms, err = math.sqrt(s["ref_sq"] / count), math.sqrt(s["err_sq"] / count)
        entry.update(membrane_rmse=err, membrane_rms=rms,
                     membrane_relative_error=err / rms if rms > 0 else None)
        layers[layer.name] = entry
    report = {"steps": steps, "samples": samples, "layers": layers, "output": net.output}
    if out.spiking:
        report["spike_agreement"] = layers[net.output]["spike_agreement"]
        report["all_layers_spike_agreement"] = float(np.mean(
            [v["spike_agreement"] for v in layers.values() if "spike_agreement" in v]))
    if reference is not None:
        count = steps * samples * out.size
        if out.spiking:
            report["reference_agreement"] = {"integer": against["integer"] / count,
                                             "float": against["float"] / count}
        else:
            rms = math.sqrt(against["ref_sq"] / count) or 1.0
            report["reference_agreement"] = {
                "integer_relative_error": math.sqrt(against["integer"] / count) / rms,
                "float_relative_error": math.sqrt(against["float"] / count) / rms,
            }
    return report
