"""Export: an integer network as a NIR graph in integer units (scale 1), see docs/nir.md.

The discretisation of :mod:`.nirgraph` run backwards, so that the importer
reproduces the integer network exactly:

* a projection becomes a weight node ``<layer>_w<j>`` (``Affine`` / ``Linear``,
  or ``Conv1d`` / ``Conv2d`` with the shared kernel), after a ``SumPool2d``
  ``<layer>_p<j>`` (and a ``Flatten`` ``<layer>_f<j>`` before a dense weight) if
  it pools; the layer's bias rides on one weight node (a dense one, or a
  convolution if the bias is one value per output channel);
* a layer becomes ``LIF`` / ``IF`` / ``LI`` / ``I``, or ``CubaLIF`` / ``CubaLI``
  for a current-based one, with ``r = tau / dt`` and ``w_in = tau_syn / dt``
  (gain 1), ``v_threshold = theta - 0.5`` and its parameters shaped like the
  layer's ``shape``.
"""

from __future__ import annotations

import inspect
import json

import numpy as np

from .integer import INPUT, Format, LIFLayer, Network
from .nirchain import NirError
from .nirgraph import DEFAULT_DT, META_RECURRENT, META_RESET, META_V_RESET, new_graph
from .projection import Projection

__all__ = ["to_graph", "export_nir", "META_FORMAT", "META_KIND"]

META_FORMAT = "spikeforge_format"
META_KIND = "spikeforge_input_kind"


class _Names:
    """Node names no layer uses (layers keep their names)."""

    def __init__(self, taken):
        self.taken = set(taken)

    def fresh(self, base: str) -> str:
        while base in self.taken:
            base += "_"
        self.taken.add(base)
        return base


def _tau(decay: np.ndarray, fmt: Format, dt: float) -> np.ndarray:
    """``tau = dt / (1 - decay)``; no decay (``2**F``) as a finite tau whose decay rounds
    back to ``2**F``."""
    d = np.where(decay < 1, decay, 1 - 2.0 ** -(fmt.frac_bits + 2))
    return dt / (1 - d)


def _bias_carrier(layer: LIFLayer) -> int | None:
    """The projection whose weight node carries the layer's bias: the first dense one,
    else the first convolution whose output channels each have one bias."""
    for j, p in enumerate(layer.inputs):
        if p.conv is None:
            return j
    bias = layer.bias.reshape(layer.inputs[0].out_shape[0], -1)
    if bool((bias == bias[:, :1]).all()):
        return 0
    if not bool(layer.bias.any()):
        return None
    raise NirError(f"layer {layer.name!r}: its bias differs within an output channel and its "
                   f"inputs are all convolutions, whose NIR bias is one value per channel")


def _takes(cls, name: str) -> bool:
    """Whether this nir's node class takes the keyword ``name`` (nir 1.0.4, which Sinabs
    pins, has no ``v_reset`` and no metadata on ``Linear``)."""
    return name in inspect.signature(cls).parameters


def _weight_node(nir, proj: Projection, bias: np.ndarray | None, meta: dict):
    w = proj.weight.double().numpy()
    if proj.conv is None:
        if bias is None and (_takes(nir.Linear, "metadata") or not meta):
            return nir.Linear(weight=w, metadata=meta) if meta else nir.Linear(weight=w)
        return nir.Affine(weight=w, bias=np.zeros(w.shape[0]) if bias is None else bias,
                          metadata=meta)
    dims = len(proj.in_shape) - 1
    stride, padding, dilation = proj.conv.resolved(dims)
    spatial = proj.pooled_shape[1:]
    cls = nir.Conv1d if dims == 1 else nir.Conv2d
    per_channel = np.zeros(w.shape[0]) if bias is None \
        else bias.reshape(w.shape[0], -1)[:, 0].copy()
    if meta and not _takes(cls, "metadata"):
        raise NirError(f"the recurrent convolution from {proj.source!r} needs node metadata, "
                       f"which this nir's {cls.__name__} does not have")
    return cls(input_shape=spatial[0] if dims == 1 else tuple(spatial), weight=w,
               stride=stride if dims == 2 else stride[0],
               padding=padding if dims == 2 else padding[0],
               dilation=dilation if dims == 2 else dilation[0], groups=proj.conv.groups,
               bias=per_channel, **({"metadata": meta} if meta else {}))


def _projection_nodes(nir, layer: LIFLayer, j: int, proj: Projection, source: str,
                      names: _Names, bias: np.ndarray | None):
    """The nodes and edges of one projection, from node ``source`` to the layer."""
    nodes, edges, last = {}, [], source
    if proj.pool is not None:
        if len(proj.in_shape) != 3:
            raise NirError(f"layer {layer.name!r}: the pool of its input from {proj.source!r} "
                           f"is 1-D, and NIR has no 1-D pool node")
        kernel, stride, padding = proj.pool.resolved(2)
        key = names.fresh(f"{layer.name}_p{j}")
        nodes[key] = nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride),
                                   padding=np.array(padding))
        edges.append((last, key))
        last = key
        if proj.conv is None:
            key = names.fresh(f"{layer.name}_f{j}")
            nodes[key] = nir.Flatten(input_type={"input": np.array(proj.pooled_shape)},
                                     start_dim=0)
            edges.append((last, key))
            last = key
    key = names.fresh(f"{layer.name}_w{j}")
    nodes[key] = _weight_node(nir, proj, bias, {META_RECURRENT: 1} if proj.recurrent else {})
    edges += [(last, key), (key, layer.name)]
    return nodes, edges


def _neuron_node(nir, layer: LIFLayer, fmt: Format, dt: float, notes: list[str]):
    shape = layer.shape or (layer.size,)

    def shaped(values) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).reshape(shape)

    alpha = layer.alpha.double().numpy() / fmt.one
    tau = shaped(_tau(alpha, fmt, dt))
    zeros = shaped(np.zeros(layer.size))
    meta = {}
    spiking = {}
    if layer.spiking:
        spiking["v_threshold"] = shaped(layer.theta.double().numpy() - 0.5)
        if _takes(nir.LIF, "v_reset"):
            spiking["v_reset"] = shaped(np.full(layer.size, float(
                layer.v_reset if layer.reset == "zero" else 0)))
        elif layer.reset != "subtract":  # this nir's neurons subtract the threshold
            meta[META_RESET] = layer.reset
            meta[META_V_RESET] = float(layer.v_reset)
            notes.append(f"layer {layer.name!r}: reset {layer.reset!r} has no node in this nir "
                         f"({nir.__version__}, whose neurons subtract the threshold); "
                         f"spikeforge restores it from the node metadata")
        if layer.reset != "zero" and "v_reset" in spiking:
            meta[META_RESET] = layer.reset
            notes.append(f"layer {layer.name!r}: reset {layer.reset!r} is written as NIR's "
                         f"reset to v_reset=0 (other tools will reset to zero); spikeforge "
                         f"restores it from the node metadata")
    if layer.current_based:
        tau_syn = shaped(_tau(layer.alpha_syn.double().numpy() / fmt.one, fmt, dt))
        cls = nir.CubaLIF if layer.spiking else getattr(nir, "CubaLI", None)
        if cls is None:
            raise NirError(f"layer {layer.name!r}: a non-spiking current-based layer is a "
                           f"CubaLI node, which this nir ({nir.__version__}) does not have")
        return cls(tau_syn=tau_syn, tau_mem=tau, r=tau / dt, v_leak=zeros, w_in=tau_syn / dt,
                   **spiking, metadata=meta)
    leaky = bool((alpha < 1).any())
    if layer.spiking:
        return nir.LIF(tau=tau, r=tau / dt, v_leak=zeros, **spiking, metadata=meta) if leaky \
            else nir.IF(r=shaped(np.full(layer.size, 1 / dt)), **spiking, metadata=meta)
    return nir.LI(tau=tau, r=tau / dt, v_leak=zeros) if leaky \
        else nir.I(r=shaped(np.full(layer.size, 1 / dt)))


def _input_shape(net: Network) -> tuple[int, ...]:
    for layer in net.layers:
        for p in layer.inputs:
            if p.source == INPUT and p.in_shape is not None:
                return tuple(p.in_shape)
    return (net.input_size,)


def to_graph(net: Network, *, dt: float = DEFAULT_DT):
    """The integer network as a NIR graph in integer units (module docstring).

    Returns ``(graph, notes)``; ``notes`` lists what other tools will read
    differently (resets NIR cannot express).  SSM layers, 1-D pools and biases a
    NIR node cannot carry raise :class:`NirError`.
    """
    import nir

    for layer in net.layers:
        if layer.kind != "lif":
            raise NirError(f"layer {layer.name!r}: {layer.kind} layers have no NIR node")
        if layer.multi_spike or layer.v_min is not None:
            raise NirError(f"layer {layer.name!r}: spike counts and a membrane floor (Sinabs' "
                           f"IAF) have no NIR node")
    names = _Names(layer.name for layer in net.layers)
    in_node = names.fresh("input")
    nodes = {in_node: nir.Input(input_type={"input": np.array(_input_shape(net))})}
    edges, notes = [], []
    for layer in net.layers:
        carrier = _bias_carrier(layer)
        bias = layer.bias.double().numpy()
        for j, proj in enumerate(layer.inputs):
            source = in_node if proj.source == INPUT else proj.source
            new, links = _projection_nodes(nir, layer, j, proj, source, names,
                                           bias if j == carrier else None)
            nodes.update(new)
            edges += links
        nodes[layer.name] = _neuron_node(nir, layer, net.fmt, dt, notes)
    out_node = names.fresh("output")
    out_size = net.layer(net.output).size
    nodes[out_node] = nir.Output(output_type={"output": np.array([out_size])})
    edges.append((net.output, out_node))
    meta = {META_FORMAT: json.dumps(net.fmt.to_dict(), sort_keys=True), META_KIND: net.input_kind,
            "spikeforge_dt": float(dt)}
    graph = new_graph(nodes, edges, meta)
    return graph, notes


def export_nir(net: Network, path, *, dt: float = DEFAULT_DT) -> list[str]:
    """Write ``net`` as a NIR file (``nir.write``); returns :func:`to_graph`'s notes."""
    import nir

    graph, notes = to_graph(net, dt=dt)
    nir.write(str(path), graph)
    return notes
