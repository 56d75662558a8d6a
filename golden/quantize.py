"""The quantizer: a trained float twin -> the integer model.

Per LIF layer one scale ``s`` (all edges into a layer share it, so their
currents add in one unit):

    s        = min( (2**(w_bits-1) - 1) / max|W|,  (2**(u_bits-1) - 1) / (headroom * theta) )
    W_int    = clamp(round(s W)),  bias_int = round(s b),  theta_int = round(s theta)
    alpha    = round(beta * 2**F)

so the integer membrane is ``s`` times the float one: the scale is folded into
thresholds and biases, and the weights use the full ``w_bits`` range.  The
``headroom`` (default 4) keeps membranes of a few thresholds from saturating.

:func:`enter_integer_mode` switches the twin to its integer-exact forward pass
for quantization-aware fine-tuning; :func:`to_integer` exports exactly what that
forward pass computes.
"""

from __future__ import annotations

import torch

from .integer import Format, LIFLayer, Network, Operand, Projection, SSMLayer, signed_range
from .twin import TwinNetwork

__all__ = ["pick_scale", "layer_scale", "enter_integer_mode", "to_integer", "predict",
           "READOUTS"]

READOUTS = ("last", "sum", "max")


def pick_scale(w_max: float, v_max: float, fmt: Format, headroom: float) -> float:
    """The scale rule (module docstring): the largest ``s`` that keeps ``s * w_max``
    within signed ``w_bits`` and ``headroom * s * v_max`` within signed ``u_bits``; a
    magnitude of 0 sets no limit, and with no limit the scale is 1.

    ``w_max``: the layer's largest weight magnitude; ``v_max``: the largest membrane
    magnitude it must hold (its threshold).  The quantizer and the NIR import use it.
    """
    _, w_hi = signed_range(fmt.w_bits)
    _, u_hi = signed_range(fmt.u_bits)
    limits = []
    if w_max > 0:
        limits.append(w_hi / w_max)
    if v_max > 0:
        limits.append(u_hi / (headroom * v_max))
    return min(limits) if limits else 1.0


def layer_scale(layer, fmt: Format, headroom: float = 4.0) -> float:
    """The scale ``s`` of a float LIF layer (:func:`pick_scale` with its threshold)."""
    w_max = max(float(w.detach().abs().max()) for w in layer.weights)
    return pick_scale(w_max, layer.theta, fmt, headroom)


def enter_integer_mode(twin: TwinNetwork, headroom: float = 4.0) -> TwinNetwork:
    """Fix each LIF layer's scale and switch the twin to its integer-exact forward.

    The twin is converted to float64 so that every integer it handles is exact.
    """
    twin.double()
    for layer in twin.layers:
        if layer.kind == "lif" and layer.scale is None:
            layer.scale = layer_scale(layer, twin.fmt, headroom)
    return twin


def to_integer(twin: TwinNetwork, headroom: float = 4.0) -> Network:
    """Quantize a twin into an integer :class:`Network` (scales chosen if not yet fixed)."""
    fmt = twin.fmt
    layers = []
    with torch.no_grad():
        for layer in twin.layers:
            if layer.kind == "lif":
                scale = layer.scale if layer.scale is not None \
                    else layer_scale(layer, fmt, headroom)
                q = layer.quantized(fmt, scale)
                layers.append(LIFLayer(
                    name=layer.name, size=layer.size,
                    alpha=_int(q["alpha"]).clamp(0, fmt.one),
                    theta=_int(q["theta"]), bias=_int(q["bias"]),
                    inputs=[Projection(src, _int(w), rec)
                            for (src, _, rec), w in zip(layer.edges, q["weights"], strict=True)],
                    reset="none" if not layer.spiking else layer.reset,
                    v_reset=int(q["v_reset"]), spiking=layer.spiking))
            else:
                ops = {}
                for what in ("k", "v", "q"):
                    if what in layer.consts:
                        c = torch.round(layer.consts[what]).clamp(*signed_range(fmt.in_bits))
                        ops[what] = Operand(const=_int(c))
                    else:
                        src, rec = layer.sources[what]
                        ops[what] = Operand(source=src, recurrent=rec)
                table = _int(layer.decay_q(fmt))
                selective = layer.mode == "selective"
                layers.append(SSMLayer(
                    name=layer.name, n=layer.n, m=layer.m, **ops,
                    decay=table if selective else table[0], mode=layer.mode,
                    gate=layer.gate[0] if selective else None,
                    gate_recurrent=bool(layer.gate[2]) if selective else False,
                    y_shift=layer.y_shift))
    return Network(input_size=twin.input_size, input_kind=twin.input_kind, layers=layers,
                   output=twin.output, fmt=fmt)


def _int(t: torch.Tensor) -> torch.Tensor:
    return torch.round(t.detach()).to(torch.int64)


def predict(outputs: torch.Tensor, readout: str) -> torch.Tensor:
    """Class decisions from an output trace ``[T, B, C]``: argmax of the last step's
    values (``last``), of their sum over steps (``sum``) or of their largest value
    over steps (``max``); ties go to the lowest index."""
    if readout == "last":
        return outputs[-1].argmax(dim=1)
    if readout == "sum":
        return outputs.sum(dim=0).argmax(dim=1)
    if readout == "max":
        return outputs.amax(dim=0).argmax(dim=1)
    raise ValueError(f"unknown readout {readout!r}; choose one of {READOUTS}")
