"""NIR graphs read and discretised into a float network (the NIR side of :mod:`.nir`).

NIR (the Neuromorphic Intermediate Representation, the ``nir`` package) is the
format snnTorch, Norse, SpikingJelly, Lava, Sinabs and Rockpool share.  NIR
states continuous-time dynamics and does not fix a discretisation, so the
importer pins one (``docs/nir.md`` states it in full):

* forward Euler with a step ``dt`` (default ``1e-4``, what snnTorch exports);
* ``LIF``: ``v[t] = beta v[t-1] + (1 - beta) v_leak + g I[t]`` with
  ``beta = 1 - dt/tau`` and input gain ``g = dt r / tau`` (snnTorch writes
  ``r = tau/dt``, so ``g = 1`` and ``beta`` is its ``beta``);
  ``IF``: ``beta = 1``, ``g = dt r``; ``LI``: as ``LIF`` without spikes;
  ``I`` (Integrator): as ``IF`` without spikes; ``CubaLIF`` / ``CubaLI`` only
  when ``tau_syn = dt`` (the synaptic current then follows its input in one
  step, ``g = w_in dt r / tau_mem``); otherwise they need a current state the
  integer LIF does not have and are refused;
* a spike when ``v > v_threshold`` (strict), then ``v = v_reset``;
* an edge that closes a cycle (found by a depth-first walk from the input, in
  edge order) is recurrent: it delivers the previous step's spikes; every
  other edge delivers the same step's, as in snnTorch's ``Sequential``.  A
  weight node with metadata ``spikeforge_recurrent = 1`` (written by
  :func:`.nir.export_nir`) is recurrent even without a cycle.

Each neuron node becomes one :class:`FloatLayer` (float64, per neuron), each
``Affine`` / ``Linear`` into it one input (``Flatten``, ``Identity`` and the
``Input`` / ``Output`` of nested graphs pass values through).  Anything that
does not map raises :class:`NirError` naming the node and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .integer import INPUT

__all__ = ["NirError", "DEFAULT_DT", "META_RESET", "META_RECURRENT", "FloatLayer",
           "FloatNetwork", "read_graph", "from_graph"]

DEFAULT_DT = 1e-4
"""The discretisation step snnTorch's NIR export assumes (``tau = dt / (1 - beta)``)."""

_NEURONS = ("LIF", "IF", "LI", "I", "CubaLIF", "CubaLI")
_WEIGHTS = ("Affine", "Linear")
_PASS = ("Flatten", "Identity")
_SPIKING = ("LIF", "IF", "CubaLIF")
_SUPPORTED = ("Input, Output, Affine, Linear, LIF, IF, LI, I (Integrator), CubaLIF and CubaLI "
              "(with tau_syn = dt), Flatten, Identity, nested graphs")
META_RESET = "spikeforge_reset"
"""Neuron node metadata: a reset NIR cannot express (``subtract``, ``none``)."""
META_RECURRENT = "spikeforge_recurrent"
"""Weight node metadata: 1 marks the edge recurrent even without a cycle."""


class NirError(ValueError):
    """A NIR graph that cannot become an integer network; the message names the node."""


# --------------------------------------------------------------- float model
@dataclass
class FloatLayer:
    """One NIR neuron node after discretisation (float64, per neuron).

    ``inputs``: ``(source, weight [size, source size], recurrent)`` with the input
    gain already folded into the weights; ``bias`` likewise includes the gain and
    the ``v_leak`` term.  ``threshold`` is ``None`` for a non-spiking node.
    """

    name: str
    kind: str
    size: int
    beta: np.ndarray
    bias: np.ndarray
    threshold: np.ndarray | None
    v_reset: float
    reset: str
    inputs: list[tuple[str, np.ndarray, bool]] = field(default_factory=list)

    @property
    def spiking(self) -> bool:
        return self.threshold is not None


@dataclass
class FloatNetwork:
    """The discretised NIR graph: what the integer model is compared against."""

    input_size: int
    layers: list[FloatLayer]
    output: str
    dt: float

    def layer(self, name: str) -> FloatLayer:
        return next(layer for layer in self.layers if layer.name == name)

    def run(self, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Run ``x`` (``[T, B, input_size]``, any numeric dtype) in float64.

        Returns ``{"spikes": {layer: [T,B,size]}, "membranes": {layer: [T,B,size]}}``
        (membranes after the reset; spikes only for spiking layers)."""
        x = x.to(torch.float64)
        steps, batch = x.shape[0], x.shape[1]
        u = {la.name: torch.zeros(batch, la.size, dtype=torch.float64) for la in self.layers}
        out = {la.name: torch.zeros(batch, la.size, dtype=torch.float64) for la in self.layers}
        spikes = {la.name: [] for la in self.layers if la.spiking}
        membranes = {la.name: [] for la in self.layers}
        params = {la.name: (torch.from_numpy(la.beta), torch.from_numpy(la.bias),
                            None if la.threshold is None else torch.from_numpy(la.threshold),
                            [(s, torch.from_numpy(w), r) for s, w, r in la.inputs])
                  for la in self.layers}
        for t in range(steps):
            prev = dict(out)
            now = {INPUT: x[t]}
            for la in self.layers:
                beta, bias, thr, inputs = params[la.name]
                current = torch.zeros(batch, la.size, dtype=torch.float64)
                for source, weight, recurrent in inputs:
                    current += (prev[source] if recurrent else now[source]) @ weight.T
                v = beta * u[la.name] + current + bias
                if thr is None:
                    s = torch.zeros_like(v)
                    u[la.name] = v
                else:
                    s = (v > thr).to(torch.float64)
                    if la.reset == "zero":
                        u[la.name] = torch.where(s.bool(), torch.full_like(v, la.v_reset), v)
                    elif la.reset == "subtract":
                        u[la.name] = v - thr * s
                    else:
                        u[la.name] = v
                    spikes[la.name].append(s)
                membranes[la.name].append(u[la.name])
                now[la.name] = s if thr is not None else u[la.name]
                out[la.name] = now[la.name]
        return {"spikes": {k: torch.stack(v) for k, v in spikes.items()},
                "membranes": {k: torch.stack(v) for k, v in membranes.items()}}


# ---------------------------------------------------------------- reading
def read_graph(path) -> object:
    """``nir.read`` with a clear error for a missing or unreadable file."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: no such NIR file")
    try:
        # Our own checks name the node; nir's type inference would also add Output
        # nodes for every node without successors.
        return nir.read(str(path), type_check=False)
    except Exception as exc:  # h5py / nir raise many kinds for a malformed file
        raise NirError(f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})") from exc


def _kind(node) -> str:
    return type(node).__name__


def _flatten(graph, prefix: str = "") -> tuple[dict, list, dict]:
    """Inline nested graphs: node names become ``outer.inner``.  Returns the nodes,
    the edges and, per nested graph, its (input, output) node names."""
    nodes, edges, ports = {}, [], {}
    for name, node in graph.nodes.items():
        full = f"{prefix}{name}"
        if _kind(node) == "NIRGraph":
            inner, inner_edges, inner_ports = _flatten(node, f"{full}.")
            ins = [k for k, v in node.nodes.items() if _kind(v) == "Input"]
            outs = [k for k, v in node.nodes.items() if _kind(v) == "Output"]
            if len(ins) != 1 or len(outs) != 1:
                raise NirError(f"node {full!r}: a nested graph needs exactly one Input and one "
                               f"Output node, not {len(ins)} and {len(outs)}")
            for k in (ins[0], outs[0]):
                inner[f"{full}.{k}"] = ("pass", inner[f"{full}.{k}"][1])
            nodes.update(inner)
            edges += inner_edges
            ports.update(inner_ports)
            ports[full] = (f"{full}.{ins[0]}", f"{full}.{outs[0]}")
        else:
            nodes[full] = (_kind(node), node)
    for edge in graph.edges:
        if not isinstance(edge, (tuple, list)) or len(edge) != 2:
            raise NirError(f"edge {edge!r} is not a (source, target) pair")
        a, b = (f"{prefix}{e}" for e in edge)
        for end in (a, b):
            if end not in nodes and end not in ports:
                raise NirError(f"edge ({a!r}, {b!r}): node {end!r} does not exist")
        a = ports[a][1] if a in ports else a
        b = ports[b][0] if b in ports else b
        edges.append((a, b))
    return nodes, edges, ports


def _array(name: str, node, attr: str) -> np.ndarray:
    value = getattr(node, attr, None)
    if value is None:
        raise NirError(f"node {name!r}: parameter {attr!r} is missing")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise NirError(f"node {name!r}: parameter {attr!r} is not numeric") from exc
    if not np.all(np.isfinite(arr)) and attr not in ("tau", "tau_mem", "r"):
        raise NirError(f"node {name!r}: parameter {attr!r} has non-finite values")
    if np.any(np.isnan(arr)):
        raise NirError(f"node {name!r}: parameter {attr!r} has NaN values")
    return arr


def _vector(name: str, node, attr: str, size: int | None) -> np.ndarray:
    arr = _array(name, node, attr)
    if arr.ndim == 0 and size is not None:
        return np.full(size, float(arr))
    if arr.ndim != 1:
        raise NirError(f"node {name!r}: parameter {attr!r} has shape {arr.shape}; "
                       f"spikeforge maps 1-D neuron populations")
    if size is not None and arr.shape[0] != size:
        raise NirError(f"node {name!r}: parameter {attr!r} has {arr.shape[0]} entries, "
                       f"expected {size}")
    return arr


def _neuron_size(name: str, node, kind: str) -> int | None:
    attrs = {"LIF": "tau", "LI": "tau", "IF": "r", "I": "r", "CubaLIF": "tau_mem",
             "CubaLI": "tau_mem"}[kind]
    arr = _array(name, node, attrs)
    return None if arr.ndim == 0 else int(arr.shape[0]) if arr.ndim == 1 else -1


def _discretise(name: str, node, kind: str, size: int, dt: float) -> dict:
    """beta, gain, leak bias, threshold and v_reset of one neuron node (docs/nir.md)."""
    r = _vector(name, node, "r", size)
    if kind in ("IF", "I"):
        beta = np.ones(size)
        gain = dt * r
        leak = np.zeros(size)
    else:
        tau = _vector(name, node, "tau_mem" if kind.startswith("Cuba") else "tau", size)
        if np.any(tau <= 0):
            raise NirError(f"node {name!r}: tau must be positive, not {float(tau.min())!r}")
        v_leak = _vector(name, node, "v_leak", size)
        beta = 1.0 - dt / tau
        if np.any(beta < 0):
            raise NirError(f"node {name!r}: tau={float(tau.min())!r} is shorter than "
                           f"dt={dt!r}, so beta = 1 - dt/tau = {float(beta.min())!r} < 0 "
                           f"(forward Euler is unstable); use a smaller dt")
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = dt * r / tau
        leak = (dt / tau) * v_leak
        if kind.startswith("Cuba"):
            tau_syn = _vector(name, node, "tau_syn", size)
            if not np.allclose(tau_syn, dt, rtol=1e-6, atol=0.0):
                raise NirError(
                    f"node {name!r}: {kind} with tau_syn={float(tau_syn.max())!r} != dt={dt!r} "
                    f"has a synaptic current state that the integer LIF does not have (it maps "
                    f"only when tau_syn = dt, i.e. snnTorch alpha = 0)")
            gain = gain * _vector(name, node, "w_in", size)
    if not np.all(np.isfinite(gain)):
        raise NirError(f"node {name!r}: the input gain dt*r/tau is not finite")
    threshold = v_reset = None
    if kind in _SPIKING:
        threshold = _vector(name, node, "v_threshold", size)
        resets = _vector(name, node, "v_reset", size)
        if np.any(resets != resets[0]):
            raise NirError(f"node {name!r}: v_reset differs between neurons; the integer model "
                           f"has one v_reset per layer")
        v_reset = float(resets[0])
    reset = "zero" if kind in _SPIKING else "none"
    meta = getattr(node, "metadata", None) or {}
    if kind in _SPIKING and META_RESET in meta:
        reset = str(meta[META_RESET])
        if reset not in ("zero", "subtract", "none"):
            raise NirError(f"node {name!r}: metadata {META_RESET}={reset!r} is not a reset mode")
    return {"beta": beta, "gain": gain, "leak": leak, "threshold": threshold,
            "v_reset": 0.0 if v_reset is None else v_reset, "reset": reset}


def _marked(nodes: dict, weights: dict, name: str) -> bool:
    """A weight node that a spikeforge export marked recurrent."""
    meta = getattr(nodes[name][1], "metadata", None) or {}
    if name not in weights or META_RECURRENT not in meta:
        return False
    try:
        return bool(int(meta[META_RECURRENT]))
    except (TypeError, ValueError) as exc:
        raise NirError(f"node {name!r}: metadata {META_RECURRENT}="
                       f"{meta[META_RECURRENT]!r} is not 0 or 1") from exc


def from_graph(graph, *, dt: float = DEFAULT_DT) -> FloatNetwork:
    """Discretise a NIR graph (see the module docstring) or raise :class:`NirError`."""
    if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not dt > 0 \
            or not math.isfinite(dt):
        raise NirError(f"dt must be a positive number, not {dt!r}")
    if _kind(graph) != "NIRGraph":
        raise NirError(f"expected a NIR graph, not a {_kind(graph)}")
    nodes, edges, _ = _flatten(graph)
    for name, (kind, _node) in nodes.items():
        if kind not in _NEURONS + _WEIGHTS + _PASS + ("Input", "Output", "pass"):
            hint = " (convolutions are not mapped: flatten them into Linear layers first)" \
                if "Conv" in kind or "Pool" in kind else ""
            raise NirError(f"node {name!r}: {kind} is not supported{hint}; spikeforge maps "
                           f"{_SUPPORTED}")
    preds = {n: [] for n in nodes}
    succs = {n: [] for n in nodes}
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    inputs = [n for n, (k, _) in nodes.items() if k == "Input"]
    outputs = [n for n, (k, _) in nodes.items() if k == "Output"]
    if len(inputs) != 1:
        raise NirError(f"the graph needs exactly one Input node, not {len(inputs)} ({inputs})")
    if len(outputs) != 1:
        raise NirError(f"the graph needs exactly one Output node (the integer model has one "
                       f"output layer), not {len(outputs)} ({outputs})")
    in_name, out_name = inputs[0], outputs[0]
    if preds[in_name]:
        raise NirError(f"node {in_name!r}: the Input node has incoming edges from "
                       f"{preds[in_name]}")
    in_type = getattr(nodes[in_name][1], "input_type", None) or {}
    shape = np.asarray(next(iter(in_type.values()))) if in_type else None
    if shape is None or shape.size == 0 or np.any(shape < 1):
        raise NirError(f"node {in_name!r}: the Input node has no valid input_type "
                       f"({in_type!r})")
    input_size = int(np.prod(shape))

    def origin(name: str, seen=()) -> str:
        """Follow pass-through nodes back to a real source."""
        if nodes[name][0] not in _PASS + ("pass",):
            return name
        if name in seen:
            raise NirError(f"node {name!r}: a cycle of pass-through nodes")
        if len(preds[name]) != 1:
            raise NirError(f"node {name!r}: a {nodes[name][0]} node needs exactly one input, "
                           f"not {len(preds[name])}")
        return origin(preds[name][0], (*seen, name))

    size = {in_name: input_size}
    # Weight nodes: one source each, checked shapes.
    weights = {}
    for name, (kind, node) in nodes.items():
        if kind not in _WEIGHTS:
            continue
        if len(preds[name]) != 1:
            raise NirError(f"node {name!r}: an {kind} node needs exactly one input, "
                           f"not {len(preds[name])} ({preds[name]})")
        if not succs[name]:
            raise NirError(f"node {name!r}: the {kind} node's output goes nowhere")
        w = _array(name, node, "weight")
        if w.ndim != 2:
            raise NirError(f"node {name!r}: weight has shape {w.shape}, expected [out, in]")
        b = _vector(name, node, "bias", w.shape[0]) if kind == "Affine" else np.zeros(w.shape[0])
        src = origin(preds[name][0])
        if nodes[src][0] not in _NEURONS + ("Input",):
            raise NirError(f"node {name!r}: its input {src!r} is a {nodes[src][0]}; spikeforge "
                           f"maps weights whose input is the Input or a neuron node")
        weights[name] = (src, w, b)
    # Neuron sizes (a 0-d parameter set broadcasts to the size of its weights).
    for name, (kind, node) in nodes.items():
        if kind in _NEURONS:
            n = _neuron_size(name, node, kind)
            if n == -1:
                raise NirError(f"node {name!r}: parameters are not 1-D; spikeforge maps 1-D "
                               f"neuron populations")
            if n is None:
                rows = {weights[p][1].shape[0] for p in preds[name] if p in weights}
                if len(rows) != 1:
                    raise NirError(f"node {name!r}: scalar parameters and no single weight size "
                                   f"to take the population size from")
                n = rows.pop()
            size[name] = n
    for name, (src, w, _b) in weights.items():
        if w.shape[1] != size[src]:
            raise NirError(f"node {name!r}: weight has {w.shape[1]} inputs but its source "
                           f"{src!r} has {size[src]} outputs")
    # Projections into every neuron node.
    proj: dict[str, list[tuple[str, np.ndarray, np.ndarray, str]]] = {}
    for name, (kind, _node) in nodes.items():
        if kind not in _NEURONS:
            continue
        proj[name] = []
        for p in preds[name]:
            p0 = origin(p)
            if p0 in weights:
                src, w, b = weights[p0]
                if w.shape[0] != size[name]:
                    raise NirError(f"node {p0!r}: weight has {w.shape[0]} outputs but its "
                                   f"target {name!r} has {size[name]} neurons")
            elif nodes[p0][0] in _NEURONS + ("Input",):
                src = p0
                if size[src] != size[name]:
                    raise NirError(f"node {name!r}: direct input from {src!r} has {size[src]} "
                                   f"values, expected {size[name]}")
                w, b = np.eye(size[name]), np.zeros(size[name])
            else:
                raise NirError(f"node {name!r}: input {p0!r} is a {nodes[p0][0]} node")
            if src != in_name and nodes[src][0] not in _SPIKING:
                raise NirError(f"node {src!r}: the non-spiking {nodes[src][0]} node feeds "
                               f"{name!r}; the integer model's leaky integrators are outputs "
                               f"only")
            proj[name].append((src, w, b, p0))
        if not proj[name]:
            raise NirError(f"node {name!r}: the {kind} node has no inputs")
    out_preds = [origin(p) for p in preds[out_name]]
    if len(out_preds) != 1:
        raise NirError(f"node {out_name!r}: the Output node needs exactly one input, "
                       f"not {len(out_preds)}")
    if nodes[out_preds[0]][0] not in _NEURONS:
        raise NirError(f"node {out_name!r}: the Output node's input {out_preds[0]!r} is a "
                       f"{nodes[out_preds[0]][0]}; the integer model's output is a neuron layer")
    # Order: depth-first from the input along the neuron graph; back edges are recurrent.
    targets = {n: [] for n in [in_name, *proj]}
    marked = set()  # edges a spikeforge export marked recurrent (weight node metadata)
    for name, plist in proj.items():
        for src, _w, _b, p0 in plist:
            if _marked(nodes, weights, p0):
                marked.add((src, name))
            elif name not in targets[src]:
                targets[src].append(name)
    state, order, back = {}, [], set()

    def visit(n: str) -> None:
        state[n] = "open"
        for m in targets[n]:
            if state.get(m) == "open":
                back.add((n, m))
            elif m not in state:
                visit(m)
        state[n] = "done"
        order.append(n)

    reach, todo = {in_name}, [in_name]  # reachability counts marked edges too
    while todo:
        n = todo.pop()
        for m in [*targets[n], *(t for a, t in marked if a == n)]:
            if m not in reach:
                reach.add(m)
                todo.append(m)
    unreached = [n for n in proj if n not in reach]
    if unreached:
        raise NirError(f"node {unreached[0]!r} is not reachable from the Input node")
    visit(in_name)
    for n in proj:  # layers fed only through marked recurrent edges
        if n not in state:
            visit(n)
    order = [n for n in reversed(order) if n != in_name]
    layers = []
    for name in order:
        kind, node = nodes[name]
        d = _discretise(name, node, kind, size[name], dt)
        bias = d["leak"].copy()
        inputs = []
        for src, w, b, p0 in proj[name]:
            inputs.append((INPUT if src == in_name else src, d["gain"][:, None] * w,
                           (src, name) in back or _marked(nodes, weights, p0)))
            bias += d["gain"] * b
        layers.append(FloatLayer(name=name, kind=kind, size=size[name], beta=d["beta"],
                                 bias=bias, threshold=d["threshold"], v_reset=d["v_reset"],
                                 reset=d["reset"], inputs=inputs))
    if any(la.name == INPUT for la in layers):
        raise NirError(f"node {INPUT!r}: a neuron node may not be named {INPUT!r}")
    return FloatNetwork(input_size=input_size, layers=layers, output=out_preds[0], dt=float(dt))
