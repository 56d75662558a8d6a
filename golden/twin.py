"""Trainable float twins of the integer layers, with surrogate gradients.

A :class:`TwinNetwork` has the same graph as an integer
:class:`~spikeforge.golden.integer.Network` (the same layer kinds, edges,
recurrence and order) with float parameters.  Inputs and every source's output
are in the integer model's units (spikes 0/1, raw integer inputs, SSM ``y``),
so only the layers' own parameters carry a scale.

Float LIF, per step (``theta`` is 1.0, ``beta`` in [0, 1])::

    v = beta * u[t-1] + sum_e W_e x_e + b
    s = H(v - theta)            forward: Heaviside; backward: the surrogate
    u = v - theta * s | (v_reset if s else v) | v      (subtract | zero | none)

Surrogates (``x = (v - theta) / theta``), selected by name:

    fast-sigmoid  dH/dx ~ 1 / (1 + k|x|)**2          k = 10
    arctan        dH/dx ~ 1 / (1 + (pi x)**2)
    triangle      dH/dx ~ max(0, 1 - |x|)
    none          dH/dx = 0   (the true derivative of the step almost everywhere)

Integer-exact mode (:func:`~spikeforge.golden.quantize.enter_integer_mode`, used
for quantization-aware fine-tuning): every LIF layer works in integer units with its scale ``s``:
``W_q = clamp(round(s W))``, ``b_q = round(s b)``, ``theta_q = round(s theta)``,
``alpha_q = round(beta 2**F)`` and the integer model's floor and saturation,
with straight-through gradients for ``round`` and ``floor``.  Its forward pass
is then exactly the integer model's.  The SSM twin is always integer-exact:
with binary or integer ``k, v, q`` its state holds integers, the decay is
``round(a 2**F) / 2**F`` and ``floor`` / saturation are applied as in hardware.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .integer import INPUT, Format, signed_range

__all__ = ["SURROGATES", "spike", "TwinLIF", "TwinSSM", "TwinNetwork"]

SURROGATES = ("fast-sigmoid", "arctan", "triangle", "none")


def _derivative(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "fast-sigmoid":
        return 1.0 / (1.0 + 10.0 * x.abs()) ** 2
    if name == "arctan":
        return 1.0 / (1.0 + (math.pi * x) ** 2)
    if name == "triangle":
        return (1.0 - x.abs()).clamp(min=0.0)
    return torch.zeros_like(x)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, name):
        ctx.save_for_backward(x)
        ctx.name = name
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _derivative(ctx.name, x), None


def spike(x: torch.Tensor, surrogate: str) -> torch.Tensor:
    """Heaviside step ``x >= 0`` with the named surrogate derivative."""
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; choose one of {SURROGATES}")
    return _Spike.apply(x, surrogate)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.floor(x) - x).detach()


class TwinLIF(nn.Module):
    """Float twin of :class:`~spikeforge.golden.integer.LIFLayer`.

    ``inputs`` is a list of ``(source, source_size, recurrent)``.
    """

    kind = "lif"

    def __init__(self, name: str, size: int, inputs, *, reset: str = "subtract",
                 spiking: bool = True, beta: float = 0.9, learn_beta: bool = True,
                 v_reset: float = 0.0, gain: float = 1.0):
        super().__init__()
        self.name, self.size, self.reset, self.spiking = name, size, reset, spiking
        self.edges = [(src, n, bool(rec)) for src, n, rec in inputs]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(size, n) * gain / math.sqrt(n)) for _, n, _ in self.edges)
        self.bias = nn.Parameter(torch.zeros(size))
        self.beta = nn.Parameter(torch.full((size,), float(beta)), requires_grad=learn_beta)
        self.theta = 1.0
        self.v_reset = float(v_reset)
        self.scale: float | None = None  # set by quantize_: integer-exact mode

    @property
    def out_size(self) -> int:
        return self.size

    def quantized(self, fmt: Format, scale: float | None = None) -> dict[str, torch.Tensor]:
        """The integer parameters at ``scale`` (default: the fixed one), with
        straight-through gradients."""
        s = self.scale if scale is None else scale
        w_lo, w_hi = signed_range(fmt.w_bits)
        u_lo, u_hi = signed_range(fmt.u_bits)
        # float64 throughout, so that every integer below 2**53 is exact.
        return {
            "weights": [round_ste(w.double() * s).clamp(w_lo, w_hi) for w in self.weights],
            "bias": round_ste(self.bias.double() * s).clamp(u_lo, u_hi),
            "theta": torch.full((self.size,), float(max(1, round(self.theta * s))),
                                dtype=torch.float64),
            "alpha": round_ste(self.beta.double().clamp(0.0, 1.0) * fmt.one),
            "v_reset": float(round(self.v_reset * s)),
        }

    def step(self, sources, u, surrogate: str, fmt: Format):
        if self.scale is None:
            current = sum(x @ w.T for (x, w) in zip(sources, self.weights, strict=True))
            v = self.beta.clamp(0.0, 1.0) * u + current + self.bias
            theta, v_reset = self.theta, self.v_reset
        else:
            q = self.quantized(fmt)
            current = sum(x @ w.T for (x, w) in zip(sources, q["weights"], strict=True))
            v = floor_ste(q["alpha"] * u / fmt.one) + current + q["bias"]
            v = v.clamp(*signed_range(fmt.u_bits))
            theta, v_reset = q["theta"], q["v_reset"]
        if not self.spiking:
            return v, v
        s = spike((v - theta) / theta, surrogate)
        if self.reset == "subtract":
            u = v - theta * s
        elif self.reset == "zero":
            u = v * (1 - s) + v_reset * s
        else:
            u = v
        return s, u


class TwinSSM(nn.Module):
    """Twin of :class:`~spikeforge.golden.integer.SSMLayer` (integer-exact forward).

    ``operands`` maps ``k``, ``v``, ``q`` to ``(source, recurrent)`` or to
    ``("const", init_tensor)``.  ``gate`` is ``(source, bits, recurrent)`` for
    selective mode.  Decays are learned in [0, 1] and used as Q0.F.
    """

    kind = "ssm"

    def __init__(self, name: str, n: int, m: int, operands: dict, *, mode: str = "fixed",
                 gate=None, decay: float = 1.0, y_shift: int = 0):
        super().__init__()
        self.name, self.n, self.m, self.mode, self.y_shift = name, n, m, mode, y_shift
        self.sources = {}
        self.consts = nn.ParameterDict()
        for what, spec in operands.items():
            if spec[0] == "const":
                self.consts[what] = nn.Parameter(torch.as_tensor(spec[1], dtype=torch.float32))
            else:
                self.sources[what] = (spec[0], bool(spec[1]))
        self.gate = gate
        rows = 1 << gate[1] if mode == "selective" else 1
        self.decay = nn.Parameter(torch.full((rows, n), float(decay)))

    @property
    def out_size(self) -> int:
        return self.m

    def decay_q(self, fmt: Format) -> torch.Tensor:
        return round_ste(self.decay.clamp(0.0, 1.0) * fmt.one)

    def step(self, ops: dict, gate_bits, S, fmt: Format):
        for what, c in self.consts.items():
            ops[what] = round_ste(c).clamp(*signed_range(fmt.in_bits)).expand(S.shape[0], -1)
        table = self.decay_q(fmt)
        if self.mode == "fixed":
            a = table[0].expand(S.shape[0], -1)
        else:
            # Soft lookup: for binary gate bits this picks exactly row sum_b s_b 2**b,
            # and it lets the gradient reach the gate layer through its surrogate.
            rows = torch.arange(table.shape[0])
            select = torch.ones(S.shape[0], table.shape[0], dtype=S.dtype)
            for b in range(gate_bits.shape[1]):
                bit = ((rows >> b) & 1).to(S.dtype)
                g = gate_bits[:, b:b + 1]
                select = select * (g * bit + (1 - g) * (1 - bit))
            a = select @ table
        S = floor_ste(a[:, :, None] * S / fmt.one) + ops["k"][:, :, None] * ops["v"][:, None, :]
        S = S.clamp(*signed_range(fmt.s_bits))
        y_wide = (ops["q"][:, None, :] @ S)[:, 0, :]
        y = floor_ste(y_wide / (1 << self.y_shift)).clamp(*signed_range(fmt.y_bits))
        return y, S, y_wide


class TwinNetwork(nn.Module):
    """A float twin network: layers in topological order, one output layer."""

    def __init__(self, *, input_size: int, input_kind: str, layers, output: str,
                 fmt: Format | None = None, surrogate: str = "fast-sigmoid"):
        super().__init__()
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; choose one of {SURROGATES}")
        self.input_size, self.input_kind, self.output = input_size, input_kind, output
        self.layers = nn.ModuleList(layers)
        self.fmt = fmt or Format()
        self.surrogate = surrogate

    def layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run ``x`` (``[T, B, input_size]``) and return per-layer outputs ``[T, B, size]``
        plus ``"<ssm>.y_wide"`` (the SSM readout before shift and saturation)."""
        dtype = next(self.parameters()).dtype
        x = x.to(dtype)
        steps, batch = x.shape[0], x.shape[1]
        u, out = {}, {}
        for layer in self.layers:
            if layer.kind == "lif":
                u[layer.name] = torch.zeros(batch, layer.size, dtype=dtype)
            else:
                u[layer.name] = torch.zeros(batch, layer.n, layer.m, dtype=dtype)
            out[layer.name] = torch.zeros(batch, layer.out_size, dtype=dtype)
        trace = {layer.name: [] for layer in self.layers}
        wide = {layer.name: [] for layer in self.layers if layer.kind == "ssm"}
        for t in range(steps):
            prev = dict(out)
            now = {INPUT: x[t]}
            for layer in self.layers:
                def fetch(src, rec):
                    return prev[src] if rec else now[src]  # noqa: B023
                if layer.kind == "lif":
                    srcs = [fetch(src, rec) for src, _, rec in layer.edges]
                    o, u[layer.name] = layer.step(srcs, u[layer.name], self.surrogate, self.fmt)
                else:
                    ops = {w: fetch(*spec) for w, spec in layer.sources.items()}
                    gate = fetch(layer.gate[0], layer.gate[2]) if layer.mode == "selective" \
                        else None
                    o, u[layer.name], yw = layer.step(ops, gate, u[layer.name], self.fmt)
                    wide[layer.name].append(yw)
                now[layer.name] = out[layer.name] = o
                trace[layer.name].append(o)
        result = {name: torch.stack(v) for name, v in trace.items()}
        result.update({f"{name}.y_wide": torch.stack(v) for name, v in wide.items()})
        return result
