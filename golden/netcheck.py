"""The rules an integer network description must follow (:meth:`.integer.Network.validate`).

The input (``input_size``, ``input_kind``), at least one layer, unique layer
names other than ``input``, an output that is a layer; every edge's source
exists, is not a non-spiking LI layer, comes earlier in the layer order unless
the edge is recurrent, and is not a recurrent input; every projection's
geometry (:meth:`.projection.Projection.check`); every LIF and SSM layer's
sizes, tensor types, shapes, value ranges and modes; and worst-case sums that
fit ``acc_bits`` (LIF) and the int64 model (SSM).  The first rule broken raises
:class:`~.integer.NetworkError` naming the layer and the rule.
"""

from __future__ import annotations

import math

import torch

from .integer import (
    DECAY_MODES,
    INPUT,
    RESET_MODES,
    LIFLayer,
    Network,
    NetworkError,
    SSMLayer,
    bits_for,
    signed_range,
)

__all__ = ["check_network"]


def check_network(net: Network) -> None:
    """Raise NetworkError for the first rule ``net`` breaks (module docstring)."""
    fmt = net.fmt
    if not isinstance(net.input_size, int) or net.input_size < 1:
        raise NetworkError(f"input_size must be a positive integer, not {net.input_size!r}")
    if net.input_kind not in ("spike", "int"):
        raise NetworkError(f"input_kind must be 'spike' or 'int', not {net.input_kind!r}")
    if not net.layers:
        raise NetworkError("a network needs at least one layer")
    names = [layer.name for layer in net.layers]
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name or name == INPUT:
            raise NetworkError(f"layer name {name!r} is not allowed")
        if name in names[:i]:
            raise NetworkError(f"layer name {name!r} is used twice")
    if net.output not in names:
        raise NetworkError(f"output {net.output!r} is not a layer (layers: {names})")
    position = {name: i for i, name in enumerate(names)}

    def check_source(owner: str, source: str, recurrent: bool, what: str) -> None:
        if not isinstance(recurrent, bool):
            raise NetworkError(f"layer {owner!r}: the recurrent flag of {what} source "
                               f"{source!r} must be True or False, not {recurrent!r}")
        if source != INPUT and source not in position:
            raise NetworkError(f"layer {owner!r}: {what} source {source!r} does not exist")
        if source == INPUT:
            if recurrent:
                # The state keeps no previous input, so a delayed input edge cannot run.
                raise NetworkError(f"layer {owner!r}: {what} source {source!r} cannot be "
                                   f"recurrent (the model keeps no previous input)")
            return
        src = net.layer(source)
        if src.kind == "lif" and not src.spiking:
            raise NetworkError(f"layer {owner!r}: {what} source {source!r} is a non-spiking "
                               f"LI layer, which can only be an output")
        if not recurrent and position[source] >= position[owner]:
            raise NetworkError(
                f"layer {owner!r}: feed-forward {what} source {source!r} does not come "
                f"earlier in the layer order; mark the edge recurrent or reorder the layers")

    w_lo, w_hi = signed_range(fmt.w_bits)
    u_lo, u_hi = signed_range(fmt.u_bits)
    for layer in net.layers:
        if layer.kind == "lif":
            _check_lif(net, layer, check_source, w_lo, w_hi, u_lo, u_hi)
        elif layer.kind == "ssm":
            _check_ssm(net, layer, check_source)
        else:  # pragma: no cover - LIFLayer and SSMLayer are the only kinds
            raise NetworkError(f"layer {layer.name!r}: unknown kind {layer.kind!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _vector(owner: str, what: str, t: torch.Tensor, size: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.int64:
        raise NetworkError(f"layer {owner!r}: {what} must be an int64 tensor")
    if tuple(t.shape) != (size,):
        raise NetworkError(f"layer {owner!r}: {what} has shape {tuple(t.shape)}, "
                           f"expected ({size},)")


def _in_range(owner: str, what: str, t: torch.Tensor, lo: int, hi: int) -> None:
    if t.numel() and (int(t.min()) < lo or int(t.max()) > hi):
        raise NetworkError(f"layer {owner!r}: {what} has values in "
                           f"[{int(t.min())}, {int(t.max())}], outside [{lo}, {hi}]")


def _check_lif(net: Network, layer: LIFLayer, check_source, w_lo, w_hi, u_lo, u_hi) -> None:
    fmt = net.fmt
    if not _is_int(layer.size) or layer.size < 1:
        raise NetworkError(f"layer {layer.name!r}: size must be a positive integer, "
                           f"not {layer.size!r}")
    if not isinstance(layer.spiking, bool):
        raise NetworkError(f"layer {layer.name!r}: spiking must be True or False, "
                           f"not {layer.spiking!r}")
    if not _is_int(layer.v_reset):
        raise NetworkError(f"layer {layer.name!r}: v_reset must be an integer, "
                           f"not {layer.v_reset!r}")
    if layer.reset not in RESET_MODES:
        raise NetworkError(f"layer {layer.name!r}: reset must be one of {RESET_MODES}, "
                           f"not {layer.reset!r}")
    if not layer.spiking and layer.reset != "none":
        raise NetworkError(f"layer {layer.name!r}: a non-spiking LI layer must use "
                           f"reset 'none', not {layer.reset!r}")
    for what in ("alpha", "theta", "bias"):
        _vector(layer.name, what, getattr(layer, what), layer.size)
    _in_range(layer.name, "alpha", layer.alpha, 0, fmt.one)
    _in_range(layer.name, "theta", layer.theta, 1, u_hi)
    _in_range(layer.name, "bias", layer.bias, u_lo, u_hi)
    if not isinstance(layer.multi_spike, bool):
        raise NetworkError(f"layer {layer.name!r}: multi_spike must be True or False, "
                           f"not {layer.multi_spike!r}")
    if layer.multi_spike and not layer.spiking:
        raise NetworkError(f"layer {layer.name!r}: a non-spiking LI layer cannot have "
                           f"multi_spike")
    if layer.v_min is not None:
        _vector(layer.name, "v_min", layer.v_min, layer.size)
        _in_range(layer.name, "v_min", layer.v_min, u_lo, u_hi)
    if layer.alpha_syn is not None:
        _vector(layer.name, "alpha_syn", layer.alpha_syn, layer.size)
        _in_range(layer.name, "alpha_syn", layer.alpha_syn, 0, fmt.one)
    shape = layer.shape
    if shape is not None and (not isinstance(shape, tuple)
                              or not all(_is_int(n) and n >= 1 for n in shape)
                              or math.prod(shape) != layer.size):
        raise NetworkError(f"layer {layer.name!r}: shape {layer.shape!r} is not a tuple of "
                           f"positive integers whose product is the size {layer.size}")
    if not u_lo <= layer.v_reset <= u_hi:
        raise NetworkError(f"layer {layer.name!r}: v_reset {layer.v_reset!r} is outside "
                           f"[{u_lo}, {u_hi}]")
    if not layer.inputs:
        raise NetworkError(f"layer {layer.name!r} has no inputs")
    for proj in layer.inputs:
        check_source(layer.name, proj.source, proj.recurrent, "input")
        if not isinstance(proj.weight, torch.Tensor) or proj.weight.dtype != torch.int64:
            raise NetworkError(f"layer {layer.name!r}: weight from {proj.source!r} must be "
                               f"an int64 tensor")
        try:
            proj.check(net.source_size(proj.source), layer.size)
        except ValueError as exc:
            raise NetworkError(f"layer {layer.name!r}: {exc}") from None
        _in_range(layer.name, f"weight from {proj.source!r}", proj.weight, w_lo, w_hi)
    need = net.required_acc_bits(layer)
    if need > fmt.acc_bits:
        raise NetworkError(f"layer {layer.name!r}: the worst-case synaptic sum needs {need} "
                           f"accumulator bits, more than acc_bits={fmt.acc_bits}")


def _check_ssm(net: Network, layer: SSMLayer, check_source) -> None:
    fmt = net.fmt
    for what in ("n", "m"):
        value = getattr(layer, what)
        if not _is_int(value) or value < 1:
            raise NetworkError(f"layer {layer.name!r}: {what} must be a positive integer, "
                               f"not {value!r}")
    sizes = {"k": layer.n, "v": layer.m, "q": layer.n}
    for what, op in layer.operands().items():
        if op.is_const:
            if op.const is None:
                raise NetworkError(f"layer {layer.name!r}: operand {what} has neither a "
                                   f"source nor a constant")
            if op.recurrent:
                raise NetworkError(f"layer {layer.name!r}: constant operand {what} cannot "
                                   f"be recurrent")
            _vector(layer.name, f"constant {what}", op.const, sizes[what])
            _in_range(layer.name, f"constant {what}", op.const,
                           *signed_range(fmt.in_bits))
        else:
            if op.const is not None:
                raise NetworkError(f"layer {layer.name!r}: operand {what} has both a source "
                                   f"and a constant")
            check_source(layer.name, op.source, op.recurrent, f"operand {what}")
            if net.source_size(op.source) != sizes[what]:
                raise NetworkError(
                    f"layer {layer.name!r}: operand {what} source {op.source!r} has "
                    f"{net.source_size(op.source)} outputs, expected {sizes[what]}")
    if layer.mode not in DECAY_MODES:
        raise NetworkError(f"layer {layer.name!r}: mode must be one of {DECAY_MODES}, "
                           f"not {layer.mode!r}")
    d = layer.decay
    if not isinstance(d, torch.Tensor) or d.dtype != torch.int64:
        raise NetworkError(f"layer {layer.name!r}: decay must be an int64 tensor")
    if layer.mode == "fixed":
        if layer.gate is not None or layer.gate_recurrent:
            raise NetworkError(f"layer {layer.name!r}: a gate needs mode 'selective'")
        _vector(layer.name, "decay", d, layer.n)
    else:
        if layer.gate is None:
            raise NetworkError(f"layer {layer.name!r}: selective mode needs a gate layer")
        check_source(layer.name, layer.gate, layer.gate_recurrent, "gate")
        if layer.gate == INPUT or net.layer(layer.gate).kind != "lif" \
                or net.layer(layer.gate).multi_spike:
            raise NetworkError(f"layer {layer.name!r}: the gate {layer.gate!r} must be a "
                               f"spiking LIF layer (one spike per neuron)")
        gate_bits = net.layer(layer.gate).size
        if gate_bits > 8:
            raise NetworkError(f"layer {layer.name!r}: gate layer {layer.gate!r} has "
                               f"{gate_bits} neurons; at most 8 (a 256-entry table)")
        expected = (1 << gate_bits, layer.n)
        if tuple(d.shape) != expected:
            raise NetworkError(f"layer {layer.name!r}: decay table has shape "
                               f"{tuple(d.shape)}, expected {expected}")
    _in_range(layer.name, "decay", d, 0, fmt.one)
    if not isinstance(layer.y_shift, int) or not 0 <= layer.y_shift <= 32:
        raise NetworkError(f"layer {layer.name!r}: y_shift must be an integer in 0..32, "
                           f"not {layer.y_shift!r}")
    # The update floor(a*S/2**F) + k*v and the readout S^T q run in int64: reject
    # formats whose worst case would wrap instead of producing wrong numbers silently.
    update = net.operand_bound(layer.k) * net.operand_bound(layer.v) \
        + (1 << (fmt.s_bits - 1))
    need = max(bits_for(-update, update), net.ssm_acc_bits(layer))
    if need > 64:
        raise NetworkError(f"layer {layer.name!r}: the state update or readout needs {need} "
                           f"bits, more than the 64 of the int64 model")
