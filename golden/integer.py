"""The integer model: the bit-exact contract between ``golden/`` and ``gateware/``.

Everything here is integer arithmetic on ``torch.int64`` tensors, batched over
samples and run over time steps.  The rules (see ``docs/integer-model.md``) are:

Per time step ``t`` the layers run in list order (which must be a topological
order of the feed-forward edges).  A feed-forward edge delivers its source's
output of step ``t``; a recurrent edge (``recurrent=True``, including a layer
feeding itself) delivers the output of step ``t - 1`` (zeros at ``t = 0``).

LIF layer, neuron ``i``::

    I_i    = sum_e (W_e * x_e)_i                            (exact, no saturation)
    v_i    = sat_u( floor(alpha_i * u_i[t-1] / 2**F) + I_i + bias_i )
    s_i[t] = 1 if v_i >= theta_i else 0                     (only if spiking)
    u_i[t] = v_i - theta_i * s_i      (reset "subtract")
           = v_reset if s_i else v_i  (reset "zero")
           = v_i                      (reset "none")

``(W_e * x_e)`` is edge ``e``'s projection (:mod:`.projection`): ``W_e x_e``
for a dense edge, a sum pooling and a dense or convolutional weight for an edge
that views its source as a feature map.  ``floor`` is an arithmetic shift
right, ``sat_u`` clamps to signed ``u_bits``.

A current-based LIF layer (``alpha_syn`` set: NIR's ``CubaLIF``, snnTorch's
``Synaptic``) has a synaptic current state ``c`` with its own Q0.F decay that
the input and bias feed and the membrane integrates::

    c_i[t] = sat_u( floor(alpha_syn_i * c_i[t-1] / 2**F) + I_i + bias_i )
    v_i    = sat_u( floor(alpha_i * u_i[t-1] / 2**F) + c_i[t] )

then spikes and resets as above (the current is not reset).  An IF neuron is a
LIF with ``alpha = 2**F`` (no leak).

A layer with ``multi_spike`` emits spike counts (Sinabs' ``MultiSpike``), and a
layer with ``v_min`` bounds its membrane from below after the reset (Sinabs'
``min_v_mem``)::

    s_i[t] = floor(v_i / theta_i) if v_i >= theta_i else 0     (multi_spike)
    u_i[t] = v_i - theta_i * s_i                               (reset "subtract")
    u_i[t] = max(u_i[t], v_min_i)                              (v_min)
A layer with ``spiking=False`` is a leaky integrator (LI readout): reset
``none``, no spikes, its membrane is its output.

SSM layer (state ``S`` of ``n x m``, signed ``s_bits``, saturating)::

    S[t] = sat_s( floor(a[t][:, None] * S[t-1] / 2**F) + k[t] v[t]^T )
    y[t] = sat_y( (S[t]^T q[t]) >> y_shift )

``k`` (length n), ``v`` (length m) and ``q`` (length n) come from a source (the
input, or a layer's output) or are constant integer vectors.  ``a`` is a fixed
per-row Q0.F vector, or in ``selective`` mode row ``g[t]`` of a table, where the
gate index ``g[t] = sum_b s_b[t] * 2**b`` is read from the spikes of a gate layer.

What a layer hands to the layers after it: a spiking LIF layer its spikes (0/1,
or counts with ``multi_spike``),
an SSM layer its ``y`` (signed ``y_bits``), the input its values (spikes 0/1 or
signed ``in_bits`` integers).  A non-spiking LI layer is an output only.

Inputs are ``[T, B, input_size]`` integer tensors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from .projection import Conv, Pool, Projection

__all__ = [
    "RESET_MODES",
    "DECAY_MODES",
    "Format",
    "Projection",
    "Conv",
    "Pool",
    "LIFLayer",
    "Operand",
    "SSMLayer",
    "Network",
    "Trace",
    "NetworkError",
    "floor_shift",
    "saturate",
    "signed_range",
    "bits_for",
]

RESET_MODES = ("subtract", "zero", "none")
DECAY_MODES = ("fixed", "selective")
INPUT = "input"


class NetworkError(ValueError):
    """A network description or an input that breaks the integer model's rules."""


def signed_range(bits: int) -> tuple[int, int]:
    """The inclusive range of a signed two's-complement integer of ``bits`` bits."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def bits_for(lo: int, hi: int) -> int:
    """The fewest signed bits that hold every integer in ``[lo, hi]``."""
    bits = 1
    while not (signed_range(bits)[0] <= lo and hi <= signed_range(bits)[1]):
        bits += 1
    return bits



def saturate(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Clamp to the signed range of ``bits`` bits."""
    lo, hi = signed_range(bits)
    return x.clamp(lo, hi)


def floor_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``floor(x / 2**shift)``: an arithmetic shift right (rounds towards -inf)."""
    return torch.bitwise_right_shift(x, shift)


@dataclass(frozen=True)
class Format:
    """Bit widths and fixed-point formats; every one is a generator parameter.

    ``w_bits``: signed weights. ``u_bits``: signed membranes (saturating).
    ``frac_bits``: F, the fraction bits of the unsigned Q0.F decays (0..2**F).
    ``in_bits``: signed multi-bit input values. ``s_bits``: signed SSM state.
    ``y_bits``: signed SSM outputs. ``acc_bits``: the synaptic accumulator; the
    network is rejected if a layer's worst-case sum needs more.
    """

    w_bits: int = 8
    u_bits: int = 16
    frac_bits: int = 8
    in_bits: int = 8
    s_bits: int = 16
    y_bits: int = 8
    acc_bits: int = 24

    def __post_init__(self):
        for name in ("w_bits", "u_bits", "in_bits", "s_bits", "y_bits", "acc_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 48:
                raise NetworkError(f"Format.{name} must be an integer in 2..48, not {value!r}")
        if (not isinstance(self.frac_bits, int) or isinstance(self.frac_bits, bool)
                or not 0 <= self.frac_bits <= 16):
            raise NetworkError(f"Format.frac_bits must be an integer in 0..16, not "
                               f"{self.frac_bits!r}")

    @property
    def one(self) -> int:
        """The Q0.F value 1.0 (no decay)."""
        return 1 << self.frac_bits

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class LIFLayer:
    """A layer of leaky integrate-and-fire neurons (or a leaky integrator).

    ``alpha`` (Q0.F, 0..2**F), ``theta`` (> 0), ``bias``: integer vectors of
    length ``size``.  ``reset`` is one of ``subtract``, ``zero``, ``none``;
    ``v_reset`` is used by ``zero``.  ``spiking=False`` makes an LI readout.
    ``alpha_syn`` (Q0.F vector, optional): the decay of a synaptic current state,
    which makes the layer current-based.  ``multi_spike``: a spike is the count
    ``floor(v / theta)``; ``v_min`` (vector, optional): the membrane's lower bound
    after the reset.  ``shape`` (optional): the neurons as a
    feature map ``(C, *spatial)`` (row-major; the product is ``size``), for
    readers and exporters; the arithmetic never depends on it.
    """

    name: str
    size: int
    alpha: torch.Tensor
    theta: torch.Tensor
    bias: torch.Tensor
    inputs: list[Projection] = field(default_factory=list)
    reset: str = "subtract"
    v_reset: int = 0
    spiking: bool = True
    alpha_syn: torch.Tensor | None = None
    shape: tuple[int, ...] | None = None
    multi_spike: bool = False
    v_min: torch.Tensor | None = None

    kind = "lif"

    @property
    def out_size(self) -> int:
        return self.size

    @property
    def current_based(self) -> bool:
        """Whether the layer has a synaptic current state (``alpha_syn`` set)."""
        return self.alpha_syn is not None


@dataclass
class Operand:
    """Where an SSM operand (k, v or q) comes from: a source's output or a constant vector."""

    source: str | None = None
    const: torch.Tensor | None = None
    recurrent: bool = False

    @property
    def is_const(self) -> bool:
        return self.source is None


@dataclass
class SSMLayer:
    """A state-space / associative-memory unit with state ``S`` of ``n x m``.

    ``decay`` is a length-``n`` Q0.F vector (``mode="fixed"``) or a
    ``[2**len(gate layer), n]`` table (``mode="selective"``, rows picked by the
    gate layer's spikes read as a binary number, bit ``b`` = neuron ``b``).
    """

    name: str
    n: int
    m: int
    k: Operand
    v: Operand
    q: Operand
    decay: torch.Tensor
    mode: str = "fixed"
    gate: str | None = None
    gate_recurrent: bool = False
    y_shift: int = 0

    kind = "ssm"

    @property
    def out_size(self) -> int:
        return self.m

    def operands(self) -> dict[str, Operand]:
        return {"k": self.k, "v": self.v, "q": self.q}


@dataclass
class Trace:
    """What a run produced.

    ``outputs[name]``: ``[T, B, size]`` per layer: spikes (spiking LIF), membrane
    (LI), or ``y`` (SSM).  ``spikes[name]`` / ``membranes[name]`` for every LIF
    layer (membranes are ``u[t]`` after the reset).  ``state``: the state after
    the last step (pass it back to ``run`` to continue).  ``synops``: per sample,
    the synaptic operations (events times fan-out) summed over steps and edges;
    ``ssm_ops``: per sample, state cells written by ``k v^T`` plus cells read by
    the readout, counting only nonzero ``k``, ``q`` entries (what event-driven
    hardware would do).
    """

    outputs: dict[str, torch.Tensor]
    spikes: dict[str, torch.Tensor]
    membranes: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor]
    synops: torch.Tensor
    ssm_ops: torch.Tensor


class Network:
    """A layer graph in the integer model.  Validated on construction."""

    def __init__(self, *, input_size: int, input_kind: str, layers: list, output: str,
                 fmt: Format | None = None):
        self.input_size = input_size
        self.input_kind = input_kind
        self.layers = list(layers)
        self.output = output
        self.fmt = fmt if fmt is not None else Format()
        self.validate()

    # ----------------------------------------------------------------- checks
    def layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise NetworkError(f"no layer named {name!r}")

    def source_size(self, name: str) -> int:
        if name == INPUT:
            return self.input_size
        return self.layer(name).out_size

    def source_bound(self, name: str) -> int:
        """The largest magnitude a source's output can take."""
        if name == INPUT:
            return 1 if self.input_kind == "spike" else 1 << (self.fmt.in_bits - 1)
        layer = self.layer(name)
        if layer.kind == "ssm":
            return 1 << (self.fmt.y_bits - 1)
        if layer.multi_spike:  # the most spikes a saturated membrane holds
            return max(1, signed_range(self.fmt.u_bits)[1] // int(layer.theta.min()))
        return 1

    def required_acc_bits(self, layer: LIFLayer) -> int:
        """Signed bits that hold the worst-case synaptic sum of ``layer``."""
        worst = 0
        for proj in layer.inputs:
            worst += int(proj.abs_row_sums().max()) * self.source_bound(proj.source) \
                if proj.weight.numel() else 0
        return bits_for(-worst, worst)

    def operand_bound(self, op: Operand) -> int:
        if op.is_const:
            return int(op.const.abs().max()) if op.const.numel() else 0
        return self.source_bound(op.source)

    def ssm_acc_bits(self, layer: SSMLayer) -> int:
        """Signed bits of the readout accumulator ``S^T q`` (before the shift)."""
        worst = layer.n * (1 << (self.fmt.s_bits - 1)) * self.operand_bound(layer.q)
        return bits_for(-worst, worst)

    def validate(self) -> None:
        """Check the description against the rules of :mod:`.netcheck`; a NetworkError
        names the first one broken."""
        from .netcheck import check_network  # (netcheck builds on this module)

        check_network(self)

    # -------------------------------------------------------------- execution
    def initial_state(self, batch: int) -> dict[str, torch.Tensor]:
        """All-zero state: LIF membranes, SSM states and last outputs (for recurrent edges)."""
        state = {}
        for layer in self.layers:
            if layer.kind == "lif":
                state[f"{layer.name}.u"] = torch.zeros(batch, layer.size, dtype=torch.int64)
                if layer.current_based:
                    state[f"{layer.name}.c"] = torch.zeros(batch, layer.size, dtype=torch.int64)
            else:
                state[f"{layer.name}.S"] = torch.zeros(batch, layer.n, layer.m, dtype=torch.int64)
            state[f"{layer.name}.out"] = torch.zeros(batch, layer.out_size, dtype=torch.int64)
        return state

    def input_range(self) -> tuple[int, int]:
        """The inclusive range of an input value: 0/1 spikes, or signed ``in_bits``."""
        return (0, 1) if self.input_kind == "spike" else signed_range(self.fmt.in_bits)

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate an input ``[T, B, input_size]`` and return it as int64 (a float or
        bool tensor is taken if every value is an integer)."""
        if not isinstance(x, torch.Tensor):
            raise NetworkError(f"input must be a tensor, not {type(x).__name__}")
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise NetworkError(f"input has shape {tuple(x.shape)}, expected "
                               f"[T, B, {self.input_size}]")
        from .data import as_integer_tensor  # (data builds on this module)

        x = as_integer_tensor(x, "input", error=NetworkError)
        lo, hi = self.input_range()
        if x.numel() and (int(x.min()) < lo or int(x.max()) > hi):
            kind = "spike input must be 0/1" if self.input_kind == "spike" else \
                f"int input must fit signed {self.fmt.in_bits} bits"
            raise NetworkError(f"{kind}: values in [{int(x.min())}, {int(x.max())}] are outside "
                               f"[{lo}, {hi}]")
        return x

    def run(self, x: torch.Tensor, state: dict[str, torch.Tensor] | None = None,
            *, record: bool = True, probe=None) -> Trace:
        """Run the network over the ``T`` steps of ``x`` (``[T, B, input_size]``).

        With ``record=False`` only the output layer is kept per step (less memory).

        ``probe``: called as ``probe(t, layer, values)`` after each layer's update at
        step ``t``, with the rule's intermediate values (``[B, ...]`` tensors; for
        coverage and per-step checks).  A LIF layer: ``sources`` (per projection,
        the events it delivered), ``current`` (``I``), for a current-based layer
        ``c_prev``, ``c_wide`` (before ``sat_u``) and ``c``, then ``u_prev``,
        ``v_wide`` (before ``sat_u``), ``v``, ``s``, ``u``.  An SSM layer: ``ops`` (``k``, ``v``,
        ``q``), ``gate`` (the table row, selective mode), ``a``, ``S_prev``,
        ``S_wide`` (before ``sat_s``), ``S``, ``y_wide`` (after the shift, before
        ``sat_y``), ``y``.
        """
        x = self.check_input(x)
        steps, batch = x.shape[0], x.shape[1]
        fresh = self.initial_state(batch)
        if state is not None:
            if set(state) != set(fresh):
                raise NetworkError(f"state has keys {sorted(state)}, expected {sorted(fresh)}")
            for key, value in state.items():
                if tuple(value.shape) != tuple(fresh[key].shape):
                    raise NetworkError(f"state {key!r} has shape {tuple(value.shape)}, "
                                       f"expected {tuple(fresh[key].shape)}")
            fresh = state
        state = {k: v.clone() for k, v in fresh.items()}
        keep = [layer.name for layer in self.layers] if record else [self.output]
        outputs = {n: [] for n in keep}
        spikes = {n: [] for n in keep if self.layer(n).kind == "lif" and self.layer(n).spiking}
        membranes = {n: [] for n in keep if self.layer(n).kind == "lif"}
        synops = torch.zeros(batch, dtype=torch.int64)
        ssm_ops = torch.zeros(batch, dtype=torch.int64)
        fanouts = {layer.name: [p.fanout() for p in layer.inputs]
                   for layer in self.layers if layer.kind == "lif"}
        for t in range(steps):
            prev = {layer.name: state[f"{layer.name}.out"] for layer in self.layers}
            now = {INPUT: x[t]}

            def fetch(source: str, recurrent: bool) -> torch.Tensor:
                return prev[source] if recurrent else now[source]  # noqa: B023

            for layer in self.layers:
                if layer.kind == "lif":
                    sources = [fetch(p.source, p.recurrent) for p in layer.inputs]
                    for src, fanout in zip(sources, fanouts[layer.name], strict=True):
                        synops += (src != 0).to(torch.int64) @ fanout
                    values = self._lif_step(layer, sources, state)
                    out = values["s"] if layer.spiking else values["u"]
                    if layer.name in membranes:
                        membranes[layer.name].append(values["u"])
                    if layer.name in spikes:
                        spikes[layer.name].append(values["s"])
                else:
                    values = self._ssm_step(layer, fetch, state, batch)
                    out = values["y"]
                    ssm_ops += ((values["ops"]["k"] != 0).sum(dim=1)
                                + (values["ops"]["q"] != 0).sum(dim=1)) * layer.m
                if probe is not None:
                    probe(t, layer, values)
                now[layer.name] = out
                state[f"{layer.name}.out"] = out
                if layer.name in outputs:
                    outputs[layer.name].append(out)
        stack = {n: torch.stack(v) if v else torch.zeros(0, batch, self.layer(n).out_size,
                                                        dtype=torch.int64)
                 for n, v in outputs.items()}
        return Trace(
            outputs=stack,
            spikes={n: torch.stack(v) for n, v in spikes.items() if v},
            membranes={n: torch.stack(v) for n, v in membranes.items() if v},
            state=state,
            synops=synops,
            ssm_ops=ssm_ops,
        )

    def _lif_step(self, layer: LIFLayer, sources: list[torch.Tensor],
                  state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One step of a LIF layer (module docstring) from its projections' sources;
        updates ``state`` and returns the rule's values (see :meth:`run`'s ``probe``)."""
        fmt = self.fmt
        current = sum((p.apply(src) for p, src in zip(layer.inputs, sources, strict=True)),
                      torch.zeros(sources[0].shape[0], layer.size, dtype=torch.int64))
        values = {"sources": sources, "current": current}
        drive = current + layer.bias
        if layer.current_based:
            c_prev = state[f"{layer.name}.c"]
            c_wide = floor_shift(layer.alpha_syn * c_prev, fmt.frac_bits) + drive
            drive = saturate(c_wide, fmt.u_bits)
            state[f"{layer.name}.c"] = drive
            values.update(c_prev=c_prev, c_wide=c_wide, c=drive)
        u_prev = state[f"{layer.name}.u"]
        v_wide = floor_shift(layer.alpha * u_prev, fmt.frac_bits) + drive
        v = saturate(v_wide, fmt.u_bits)
        s = (v >= layer.theta).to(torch.int64) if layer.spiking else torch.zeros_like(v)
        if layer.multi_spike:
            s = s * torch.div(v, layer.theta, rounding_mode="floor")
        if layer.reset == "subtract":
            u = v - layer.theta * s
        elif layer.reset == "zero":
            u = torch.where(s.bool(), torch.full_like(v, layer.v_reset), v)
        else:
            u = v
        if layer.v_min is not None:
            u = torch.maximum(u, layer.v_min)
        state[f"{layer.name}.u"] = u
        values.update(u_prev=u_prev, v_wide=v_wide, v=v, s=s, u=u)
        return values

    def _ssm_step(self, layer: SSMLayer, fetch, state: dict[str, torch.Tensor],
                  batch: int) -> dict[str, torch.Tensor]:
        """One step of an SSM layer (module docstring); updates ``state`` and returns
        the rule's values (see :meth:`run`'s ``probe``)."""
        fmt = self.fmt
        ops = {what: op.const.expand(batch, -1) if op.is_const else fetch(op.source, op.recurrent)
               for what, op in layer.operands().items()}
        gate = None
        if layer.mode == "fixed":
            a = layer.decay.expand(batch, -1)
        else:
            bits = fetch(layer.gate, layer.gate_recurrent)
            gate = (bits * (1 << torch.arange(bits.shape[1], dtype=torch.int64))).sum(dim=1)
            a = layer.decay[gate]
        S_prev = state[f"{layer.name}.S"]
        S_wide = floor_shift(a[:, :, None] * S_prev, fmt.frac_bits) \
            + ops["k"][:, :, None] * ops["v"][:, None, :]
        S = saturate(S_wide, fmt.s_bits)
        state[f"{layer.name}.S"] = S
        y_wide = floor_shift(exact_matmul(ops["q"][:, None, :], S,
                                          self.ssm_acc_bits(layer))[:, 0, :], layer.y_shift)
        return {"ops": ops, "gate": gate, "a": a, "S_prev": S_prev, "S_wide": S_wide, "S": S,
                "y_wide": y_wide, "y": saturate(y_wide, fmt.y_bits)}

    # ----------------------------------------------------------------- counts
    def counts(self) -> dict[str, int]:
        """Neurons, synapses (weights) and SSM state cells of the network."""
        neurons = sum(layer.size for layer in self.layers if layer.kind == "lif")
        synapses = sum(p.weight.numel() for layer in self.layers if layer.kind == "lif"
                       for p in layer.inputs)
        cells = sum(layer.n * layer.m for layer in self.layers if layer.kind == "ssm")
        return {"neurons": neurons, "synapses": synapses, "ssm_state_cells": cells}


def exact_matmul(a: torch.Tensor, b: torch.Tensor, bound_bits: int) -> torch.Tensor:
    """Integer ``a @ b`` computed exactly.

    When every partial sum is known to fit ``bound_bits`` signed bits and that is
    at most 53, float64 BLAS is exact (all partial sums are integers below
    2**53) and much faster than int64 matmul; otherwise int64 is used.
    """
    if bound_bits <= 53:
        return torch.matmul(a.to(torch.float64), b.to(torch.float64)).to(torch.int64)
    return torch.matmul(a, b)
