"""The network compiler: an integer network of the golden model
(:class:`~spikeforge.golden.integer.Network`) as the writes that load it into a
core of a given :class:`.config.CoreConfig`, or a :class:`FitError` naming the
limit it exceeds.  The memory layout it writes is :mod:`.config`'s."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..golden.integer import INPUT, Network
from .config import (
    EDGE_FIELDS,
    LAYER_FIELDS,
    OPERANDS,
    PARAM_FIELDS,
    RESET_CODES,
    SSM_FIELDS,
    CoreConfig,
    FitError,
    Region,
    pack,
)

__all__ = ["FitError", "Image", "compile_network", "ssm_skips"]


@dataclass
class Image:
    """What to write into the core for one network: ``writes`` is a list of
    ``(host address, data)``; ``layer_index`` maps layer names to table indices."""

    config: CoreConfig
    writes: list[tuple[int, int]]
    num_layers: int
    layer_index: dict[str, int]
    sbase: dict[str, int]
    ssbase: dict[str, int] = field(default_factory=dict)
    """SSM layers: the first state word per lane."""

    @property
    def reset_writes(self) -> list[tuple[int, int]]:
        """The writes that zero every membrane and SSM state (with a clear: a fresh state)."""
        shift = self.config.lane_bits + self.config.addr_bits
        return [(addr, 0) for addr, _ in self.writes
                if addr >> shift in (Region.MEMBRANES, Region.SSM_STATE)]


def _dense_weights(proj, layer: str, c: CoreConfig) -> list[list[int]]:
    """The projection's weights as the core's dense ``[size, source size]`` matrix: a
    feature-map edge (pool, convolution) is unrolled, exactly (``Projection.dense``)."""
    if not proj.structured:
        return proj.weight.tolist()
    w = proj.dense()
    lo, hi = -(1 << (c.w_bits - 1)), (1 << (c.w_bits - 1)) - 1
    if w.numel() and (int(w.min()) < lo or int(w.max()) > hi):
        raise FitError(f"layer {layer!r}: the input from {proj.source!r} unrolled into dense "
                       f"weights reaches [{int(w.min())}, {int(w.max())}] (the pool adds weights "
                       f"up), outside w_bits={c.w_bits}")
    return w.tolist()


def compile_network(net: Network, config: CoreConfig) -> Image:
    """Map an integer network onto the core's memories, or raise :class:`FitError`."""
    c = config
    fmt = net.fmt
    for name in ("w_bits", "u_bits", "frac_bits", "in_bits"):
        if getattr(fmt, name) != getattr(c, name):
            raise FitError(f"the network's {name}={getattr(fmt, name)} differs from the "
                           f"core's {name}={getattr(c, name)}")
    ssm_layers = [layer for layer in net.layers if layer.kind == "ssm"]
    if ssm_layers and not c.has_ssm:
        raise FitError(f"layer {ssm_layers[0].name!r} is an SSM layer and this core has no "
                       f"SSM unit (ssm_max_n=0)")
    if ssm_layers:
        for name in ("s_bits", "y_bits"):
            if getattr(fmt, name) != getattr(c, name):
                raise FitError(f"the network's {name}={getattr(fmt, name)} differs from the "
                               f"core's {name}={getattr(c, name)}")
    for layer in net.layers:
        if layer.kind != "lif":
            continue
        if layer.current_based:
            raise FitError(f"layer {layer.name!r} is current-based (a synaptic current "
                           f"state); the core has no current state")
        if layer.multi_spike or layer.v_min is not None:
            raise FitError(f"layer {layer.name!r} has multi-spikes or a membrane floor "
                           f"(v_min); the core's neurons have neither")
    if len(net.layers) > c.max_layers:
        raise FitError(f"{len(net.layers)} layers exceed max_layers={c.max_layers}")
    if net.input_size > c.max_inputs:
        raise FitError(f"input size {net.input_size} exceeds max_inputs={c.max_inputs}")
    edges = sum(len(layer.inputs) for layer in net.layers if layer.kind == "lif")
    if edges > c.max_edges:
        raise FitError(f"{edges} edges exceed max_edges={c.max_edges}")
    index = {layer.name: i for i, layer in enumerate(net.layers)}
    writes, sbase, ebase, wbase = [], {}, 0, 0
    next_sbase = 0
    ssm_state = {"ssbase": {}, "next": 0, "pnext": 0}
    P = c.lanes
    for i, layer in enumerate(net.layers):
        if layer.kind == "ssm":
            writes += _compile_ssm(net, c, layer, i, index, ssm_state)
            continue
        if layer.size > c.max_neurons:
            raise FitError(f"layer {layer.name!r} has {layer.size} neurons, more than "
                           f"max_neurons={c.max_neurons}")
        fanin = sum(net.source_size(p.source) for p in layer.inputs)
        if fanin > c.max_fanin:
            raise FitError(f"layer {layer.name!r} has a fan-in of {fanin}, more than "
                           f"max_fanin={c.max_fanin}")
        need = net.required_acc_bits(layer)
        if need > c.acc_bits:
            raise FitError(f"layer {layer.name!r} needs {need} accumulator bits, more than "
                           f"acc_bits={c.acc_bits}")
        rows = -(-layer.size // P)
        if next_sbase + rows > c.neuron_depth:
            raise FitError(f"the layers need more than neuron_depth={c.neuron_depth} "
                           f"neuron slots per lane")
        sbase[layer.name] = next_sbase
        for k in range(rows):
            for p in range(P):
                n = k * P + p
                if n < layer.size:
                    params = {"alpha": int(layer.alpha[n]), "theta": int(layer.theta[n]),
                              "bias": int(layer.bias[n])}
                else:  # padding neuron: never spikes, never read
                    params = {"alpha": 0, "theta": (1 << (c.u_bits - 1)) - 1, "bias": 0}
                writes.append((c.address(Region.PARAMS, p, next_sbase + k),
                               pack(PARAM_FIELDS(c), params)))
                writes.append((c.address(Region.MEMBRANES, p, next_sbase + k), 0))
        for proj in layer.inputs:
            nsrc = net.source_size(proj.source)
            if wbase + rows * nsrc > c.weight_depth:
                raise FitError(f"the weights need more than weight_depth={c.weight_depth} "
                               f"words per lane")
            src = 0 if proj.source == INPUT else 1 + index[proj.source]
            writes.append((c.address(Region.EDGES, 0, ebase),
                           pack(EDGE_FIELDS(c), {"src": src, "recurrent": int(proj.recurrent),
                                                 "wbase": wbase, "nsrc": nsrc})))
            w = _dense_weights(proj, layer.name, c)
            for k in range(rows):
                for p in range(P):
                    n = k * P + p
                    for j in range(nsrc):
                        value = w[n][j] if n < layer.size else 0
                        writes.append((c.address(Region.WEIGHTS, p, wbase + k * nsrc + j),
                                       value & ((1 << c.w_bits) - 1)))
            wbase += rows * nsrc
            ebase += 1
        writes.append((c.address(Region.LAYERS, 0, i), pack(LAYER_FIELDS(c), {
            "size": layer.size, "rows": rows, "sbase": next_sbase,
            "ebase": ebase - len(layer.inputs), "ecount": len(layer.inputs),
            "spiking": int(layer.spiking), "reset": RESET_CODES[layer.reset],
            "v_reset": layer.v_reset, "emit_values": int(layer.name == net.output),
            **({"ssm": 0} if c.has_ssm else {})})))
        next_sbase += rows
    writes.append((c.address(Region.CONTROL, 0, 0), len(net.layers)))
    return Image(config=c, writes=writes, num_layers=len(net.layers), layer_index=index,
                 sbase=sbase, ssbase=ssm_state["ssbase"])


def ssm_skips(net: Network, layer) -> bool:
    """Whether the core's pass skips the rows of ``layer`` whose ``k_i`` and ``q_i`` are
    both 0: when every decay (every table row) is 1.0, such a row's state is unchanged
    (``floor(2**F * S / 2**F) + 0 = S``) and it adds nothing to ``y``."""
    return bool((layer.decay == net.fmt.one).all())


def _compile_ssm(net: Network, c: CoreConfig, layer, i: int, index: dict, st: dict) -> list:
    """The writes of SSM layer ``layer`` (table index ``i``): its layer and SSM table
    entries, parameters (constants, decay table) and zeroed state."""
    P = c.lanes
    if layer.n > c.ssm_max_n:
        raise FitError(f"layer {layer.name!r} has n={layer.n}, more than "
                       f"ssm_max_n={c.ssm_max_n}")
    if layer.m > c.ssm_max_m:
        raise FitError(f"layer {layer.name!r} has m={layer.m}, more than "
                       f"ssm_max_m={c.ssm_max_m}")
    need = net.ssm_acc_bits(layer)
    if need > c.ssm_acc_bits:  # (cannot happen: constants fit in_bits; kept as a guard)
        raise FitError(f"layer {layer.name!r} needs {need} readout accumulator bits, more "
                       f"than the core's {c.ssm_acc_bits}")
    cols = -(-layer.m // P)
    ssbase = st["next"]
    if ssbase + layer.n * cols > c.ssm_depth:
        raise FitError(f"the SSM states need more than ssm_depth={c.ssm_depth} words per lane")
    decay = layer.decay if layer.mode == "selective" else layer.decay[None, :]
    pbase = st["pnext"]
    words = 2 * layer.n + layer.m + decay.numel()
    if pbase + words > c.ssm_param_depth:
        raise FitError(f"the SSM parameters need more than ssm_param_depth="
                       f"{c.ssm_param_depth} words")
    st["next"] += layer.n * cols
    st["pnext"] += words
    st["ssbase"][layer.name] = ssbase
    writes = []
    mask = (1 << c.param_bits) - 1
    params = []
    for op, length in (("k", layer.n), ("v", layer.m), ("q", layer.n)):
        operand = getattr(layer, op)
        params += operand.const.tolist() if operand.is_const else [0] * length
    params += decay.flatten().tolist()
    writes += [(c.address(Region.SSM_PARAMS, 0, pbase + a), value & mask)
               for a, value in enumerate(params)]
    writes += [(c.address(Region.SSM_STATE, p, ssbase + a), 0)
               for a in range(layer.n * cols) for p in range(P)]

    def src(name: str) -> int:
        return 0 if name == INPUT else 1 + index[name]

    entry = {"n": layer.n, "ssbase": ssbase, "pbase": pbase,
             "g_src": src(layer.gate) if layer.mode == "selective" else 0,
             "g_rec": int(layer.gate_recurrent), "selective": int(layer.mode == "selective"),
             "y_shift": layer.y_shift, "skip": int(ssm_skips(net, layer))}
    for op in OPERANDS:
        operand = getattr(layer, op)
        entry[f"{op}_src"] = 0 if operand.is_const else src(operand.source)
        entry[f"{op}_rec"] = int(operand.recurrent)
        entry[f"{op}_const"] = int(operand.is_const)
    writes.append((c.address(Region.SSM_LAYERS, 0, i), pack(SSM_FIELDS(c), entry)))
    writes.append((c.address(Region.LAYERS, 0, i), pack(LAYER_FIELDS(c), {
        "size": layer.m, "rows": cols, "sbase": 0, "ebase": 0, "ecount": 0, "spiking": 0,
        "reset": RESET_CODES["none"], "v_reset": 0,
        "emit_values": int(layer.name == net.output), "ssm": 1})))
    return writes
