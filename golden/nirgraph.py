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
* a spike when ``v > v_threshold`` (strict), then ``v = v_reset``; node metadata
  ``spikeforge_reset`` or the caller's ``reset`` may say otherwise, e.g.
  ``subtract-next``, snnTorch's subtraction (:mod:`.nirreset`);
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

import numpy as np
import torch

from .integer import INPUT
from .nirchain import MAX_NEURONS, POOLS, WEIGHTS, ChainStep, NirError, chain_projection
from .nirfile import (
    MAX_INPUTS,
    SPIKING_KINDS,
    legacy_nodes,
    new_graph,
    read_graph,
)
from .nirfloat import FloatLayer, FloatNetwork
from .nirreset import RESETS, SUBTRACT_NEXT, next_step_correction, snntorch_zero_warning
from .projection import Projection

__all__ = ["NirError", "DEFAULT_DT", "FRAMEWORKS", "META_RESET", "META_V_RESET",
           "META_RECURRENT", "MAX_WEIGHTS", "FloatLayer", "FloatNetwork", "read_graph", "new_graph",
           "legacy_nodes", "from_graph"]

DEFAULT_DT = 1e-4
"""The discretisation step snnTorch's NIR export assumes (``tau = dt / (1 - beta)``)."""

_NEURONS = ("LIF", "IF", "LI", "I", "CubaLIF", "CubaLI")
_PASS = ("Flatten", "Identity")
_CHAIN = WEIGHTS + POOLS + _PASS + ("pass",)
_SPIKING = SPIKING_KINDS
_SUPPORTED = ("Input, Output, Affine, Linear, Conv1d, Conv2d, SumPool2d, AvgPool2d, LIF, IF, "
              "LI, I (Integrator), CubaLIF, CubaLI, Flatten, Identity, nested graphs")
META_RESET = "spikeforge_reset"
"""Neuron node metadata: a reset NIR cannot express (``subtract``, ``none``)."""
META_V_RESET = "spikeforge_v_reset"
"""Neuron node metadata: the zero reset's ``v_reset`` where the nir has no ``v_reset``."""
META_RECURRENT = "spikeforge_recurrent"
"""Weight node metadata: 1 marks the edge recurrent even without a cycle."""
MAX_WEIGHTS = 1 << 23
"""The most weights the imported projections may hold in all (the identities of direct
edges and the matrices of folded chains included: they come from no data in the file)."""


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
    """A neuron parameter as a vector over the population (a feature-map-shaped
    parameter is flattened row-major; a scalar is broadcast)."""
    arr = _array(name, node, attr)
    if arr.ndim == 0 and size is not None:
        return np.full(size, float(arr))
    arr = arr.reshape(-1)
    if size is not None and arr.shape[0] != size:
        raise NirError(f"node {name!r}: parameter {attr!r} has {arr.shape[0]} entries, "
                       f"expected {size}")
    return arr


_SIZE_ATTR = {"LIF": "tau", "LI": "tau", "IF": "r", "I": "r", "CubaLIF": "tau_mem",
              "CubaLI": "tau_mem"}


def _neuron_shape(name: str, node, kind: str) -> tuple[int, ...] | None:
    """The population's shape from its parameters (``None`` for scalar parameters)."""
    arr = _array(name, node, _SIZE_ATTR[kind])
    return None if arr.ndim == 0 else tuple(int(n) for n in arr.shape)


def _current(name: str, node, kind: str, size: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """A CubaLIF / CubaLI node's current decay ``1 - dt/tau_syn`` and its input gain
    ``dt w_in / tau_syn`` (forward Euler of ``tau_syn dI/dt = -I + w_in x``)."""
    tau_syn = _vector(name, node, "tau_syn", size)
    if np.any(tau_syn <= 0):
        raise NirError(f"node {name!r}: tau_syn must be positive, not {float(tau_syn.min())!r}")
    alpha_syn = 1.0 - dt / tau_syn
    if np.any(alpha_syn < 0):
        raise NirError(f"node {name!r}: tau_syn={float(tau_syn.min())!r} is shorter than "
                       f"dt={dt!r} (1 - dt/tau_syn < 0: forward Euler is unstable)")
    if np.any(_vector(name, node, "v_leak", size) != 0):
        raise NirError(f"node {name!r}: {kind} with v_leak != 0: the leak would enter the "
                       f"membrane beside the current, which the integer current-based LIF "
                       f"does not have")
    return alpha_syn, dt / tau_syn * _vector(name, node, "w_in", size)


def _discretise(name: str, node, kind: str, size: int, dt: float, legacy: bool = False,
                reset_as: str | None = None) -> dict:
    """beta, gain, leak bias, threshold, v_reset (and alpha_syn) of one neuron node
    (docs/nir.md).  ``legacy``: the node carries no ``v_reset`` (NIR <= 1.0.4, whose
    spiking neurons subtract the threshold); ``reset_as``: a reset forced by the caller."""
    r = _vector(name, node, "r", size)
    alpha_syn = None
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
            alpha_syn, syn_gain = _current(name, node, kind, size, dt)
            gain = gain * syn_gain
            if not np.any(alpha_syn):  # tau_syn = dt: the current is this step's input
                alpha_syn = None
    if not np.all(np.isfinite(gain)):
        raise NirError(f"node {name!r}: the input gain dt*r/tau is not finite")
    threshold = v_reset = None
    reset = "none"
    if kind in _SPIKING:
        threshold = _vector(name, node, "v_threshold", size)
        legacy = legacy or getattr(node, "v_reset", None) is None
        resets = np.zeros(size) if legacy else _vector(name, node, "v_reset", size)
        marked = (getattr(node, "metadata", None) or {}).get(META_V_RESET)
        if legacy and marked is not None:
            try:
                resets = np.full(size, float(marked))
            except (TypeError, ValueError) as exc:
                raise NirError(f"node {name!r}: metadata {META_V_RESET}={marked!r} is not a "
                               f"number") from exc
        if np.any(resets != resets[0]):
            raise NirError(f"node {name!r}: v_reset differs between neurons; the integer model "
                           f"has one v_reset per layer")
        v_reset = float(resets[0])
        reset = reset_as or ("subtract" if legacy else "zero")
    meta = getattr(node, "metadata", None) or {}
    if kind in _SPIKING and META_RESET in meta:
        reset = str(meta[META_RESET])
        if reset not in ("zero", "subtract", "none", SUBTRACT_NEXT):
            raise NirError(f"node {name!r}: metadata {META_RESET}={reset!r} is not a reset mode")
    return {"beta": beta, "gain": gain, "leak": leak, "threshold": threshold,
            "v_reset": 0.0 if v_reset is None else v_reset, "reset": reset,
            "alpha_syn": alpha_syn}


def _marked(nodes: dict, name: str) -> bool:
    """A weight node that a spikeforge export marked recurrent."""
    meta = getattr(nodes[name][1], "metadata", None) or {}
    if nodes[name][0] not in WEIGHTS or META_RECURRENT not in meta:
        return False
    try:
        return bool(int(meta[META_RECURRENT]))
    except (TypeError, ValueError) as exc:
        raise NirError(f"node {name!r}: metadata {META_RECURRENT}="
                       f"{meta[META_RECURRENT]!r} is not 0 or 1") from exc


def _check_dt(dt) -> None:
    if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not dt > 0 \
            or not math.isfinite(dt):
        raise NirError(f"dt must be a positive number, not {dt!r}")


def _ends(nodes: dict, preds: dict) -> tuple[str, str]:
    """The single Input and Output node."""
    inputs = [n for n, (k, _) in nodes.items() if k == "Input"]
    outputs = [n for n, (k, _) in nodes.items() if k == "Output"]
    if len(inputs) != 1:
        raise NirError(f"the graph needs exactly one Input node, not {len(inputs)} ({inputs})")
    if len(outputs) != 1:
        raise NirError(f"the graph needs exactly one Output node (the integer model has one "
                       f"output layer), not {len(outputs)} ({outputs})")
    if preds[inputs[0]]:
        raise NirError(f"node {inputs[0]!r}: the Input node has incoming edges from "
                       f"{preds[inputs[0]]}")
    return inputs[0], outputs[0]


def _input_shape(name: str, node) -> tuple[int, ...]:
    in_type = getattr(node, "input_type", None) or {}
    shape = np.asarray(next(iter(in_type.values()))) if isinstance(in_type, dict) and in_type \
        else None
    if shape is None or shape.size == 0 or shape.dtype.kind not in "iu" or np.any(shape < 1):
        raise NirError(f"node {name!r}: the Input node has no valid input_type ({in_type!r}): "
                       f"expected positive integers")
    if math.prod(int(n) for n in shape.reshape(-1)) > MAX_INPUTS:
        raise NirError(f"node {name!r}: the input has {math.prod(shape.tolist())} values, more "
                       f"than {MAX_INPUTS}")
    return tuple(int(n) for n in shape.reshape(-1))


def _chain(nodes: dict, preds: dict, start: str) -> tuple[str, list[ChainStep]]:
    """Walk back from ``start`` (a predecessor of a neuron node) through single-input
    chain nodes to the source; returns the source and the chain in source order."""
    steps, name, seen = [], start, set()
    while nodes[name][0] in _CHAIN:
        if name in seen:
            raise NirError(f"node {name!r}: a cycle of weight, pool or pass-through nodes")
        seen.add(name)
        if len(preds[name]) != 1:
            raise NirError(f"node {name!r}: a {nodes[name][0]} node needs exactly one input, "
                           f"not {len(preds[name])} ({preds[name]})")
        steps.append(ChainStep(name, *nodes[name]))
        name = preds[name][0]
    if nodes[name][0] not in _NEURONS + ("Input",):
        raise NirError(f"node {start!r}: its input {name!r} is a {nodes[name][0]}; spikeforge "
                       f"maps chains from the Input or a neuron node")
    return name, steps[::-1]


def _fold_gain(name: str, proj: Projection, gain: np.ndarray) -> Projection:
    """The projection with the target's input gain folded into its weight; a shared
    kernel needs one gain per output channel."""
    if proj.conv is None:
        weight = torch.from_numpy(gain)[:, None] * proj.weight
        return Projection(proj.source, weight, in_shape=proj.in_shape, pool=proj.pool)
    per_channel = gain.reshape(proj.out_shape[0], -1)
    if not np.allclose(per_channel, per_channel[:, :1], rtol=1e-12, atol=0):
        raise NirError(f"node {name!r}: the input gain differs within a channel, which a "
                       f"shared kernel cannot absorb")
    scale = torch.from_numpy(per_channel[:, 0]).reshape(-1, *([1] * (proj.weight.dim() - 1)))
    return Projection(proj.source, proj.weight * scale, in_shape=proj.in_shape, pool=proj.pool,
                      conv=proj.conv)


class _Graph:
    """A flattened NIR graph being turned into a :class:`FloatNetwork`."""

    def __init__(self, graph):
        self.nodes, edges, _ = _flatten(graph)
        metadata = getattr(graph, "metadata", None)
        self.metadata = metadata if isinstance(metadata, dict) else {}
        for name, (kind, _node) in self.nodes.items():
            if kind not in _NEURONS + _CHAIN + ("Input", "Output"):
                raise NirError(f"node {name!r}: {kind} is not supported; spikeforge maps "
                               f"{_SUPPORTED}")
        self.preds = {n: [] for n in self.nodes}
        self.succs = {n: [] for n in self.nodes}
        for a, b in edges:
            self.preds[b].append(a)
            self.succs[a].append(b)
        self.input, self.output = _ends(self.nodes, self.preds)
        self.weights = 0  # built so far (MAX_WEIGHTS)
        self.shapes = {self.input: _input_shape(self.input, self.nodes[self.input][1])}
        self.chains = {n: [_chain(self.nodes, self.preds, p) for p in self.preds[n]]
                       for n, (k, _) in self.nodes.items() if k in _NEURONS}
        for name, (kind, _node) in self.nodes.items():
            if kind in WEIGHTS and not self.succs[name]:
                raise NirError(f"node {name!r}: the {kind} node's output goes nowhere")

    def shape(self, name: str) -> tuple[int, ...]:
        """A source's output shape: the Input's type, a neuron node's parameters, or
        (scalar parameters) the output of the chain into it, found by walking back
        along first inputs (iteratively: such chains may be thousands of nodes long)."""
        path, seen, node_name = [], set(), name
        while node_name not in self.shapes:
            kind, node = self.nodes[node_name]
            own = _neuron_shape(node_name, node, kind)
            if own is not None:
                self.shapes[node_name] = own
                break
            seen.add(node_name)
            feed = [(s, c) for s, c in self.chains[node_name] if s not in seen]
            if not feed:
                raise NirError(f"node {node_name!r}: scalar parameters and no input to take "
                               f"the population size from")
            path.append((node_name, *feed[0]))
            node_name = feed[0][0]
        for node_name, source, steps in reversed(path):
            shape = self.shapes[source]
            if any(step.kind in WEIGHTS + POOLS for step in steps):
                shape = chain_projection(source, shape, steps)[2]
            self.shapes[node_name] = shape
        return self.shapes[name]

    def projections(self, name: str) -> list[tuple[Projection, np.ndarray, list[ChainStep]]]:
        """The float projections into neuron node ``name`` (before the gain); all the
        projections built hold at most :data:`MAX_WEIGHTS` weights."""
        size = math.prod(self.shape(name))
        out = []
        for src, steps in self.chains[name]:
            proj, bias, shape = chain_projection(src, self.shape(src), steps)
            self.weights += proj.weight.numel()
            if self.weights > MAX_WEIGHTS:
                where = steps[-1].name if steps else src
                raise NirError(f"node {where!r}: the imported projections would hold "
                               f"{self.weights} weights, more than {MAX_WEIGHTS}")
            if math.prod(shape) != size:
                where = steps[-1].name if steps else name
                raise NirError(f"node {where!r}: its output has {math.prod(shape)} values but "
                               f"its target {name!r} has {size} neurons")
            if src != self.input and self.nodes[src][0] not in _SPIKING:
                raise NirError(f"node {src!r}: the non-spiking {self.nodes[src][0]} node feeds "
                               f"{name!r}; the integer model's leaky integrators are outputs "
                               f"only")
            out.append((proj, bias, steps))
        if not out:
            raise NirError(f"node {name!r}: the {self.nodes[name][0]} node has no inputs")
        return out


def _chain_marked(g: _Graph, steps: list[ChainStep]) -> bool:
    return any(_marked(g.nodes, s.name) for s in steps)


def _order(g: _Graph) -> tuple[list[str], set]:
    """Layer order: depth-first from the input along the neuron graph's unmarked
    edges; returns it and the back edges (recurrent, like the marked ones)."""
    targets = {n: [] for n in [g.input, *g.chains]}
    marked = set()
    for name, chains in g.chains.items():
        for src, steps in chains:
            if _chain_marked(g, steps):
                marked.add((src, name))
            elif name not in targets[src]:
                targets[src].append(name)
    state, order, back = {}, [], set()

    def visit(root: str) -> None:
        """Depth-first, iteratively (a graph may be thousands of layers deep)."""
        state[root] = "open"
        stack = [(root, iter(targets[root]))]
        while stack:
            n, successors = stack[-1]
            m = next(successors, None)
            if m is None:
                state[n] = "done"
                order.append(n)
                stack.pop()
            elif state.get(m) == "open":
                back.add((n, m))
            elif m not in state:
                state[m] = "open"
                stack.append((m, iter(targets[m])))

    reach, todo = {g.input}, [g.input]  # reachability counts marked edges too
    while todo:
        n = todo.pop()
        for m in [*targets[n], *(t for a, t in marked if a == n)]:
            if m not in reach:
                reach.add(m)
                todo.append(m)
    unreached = [n for n in g.chains if n not in reach]
    if unreached:
        raise NirError(f"node {unreached[0]!r} is not reachable from the Input node")
    visit(g.input)
    for n in g.chains:  # layers fed only through marked recurrent edges
        if n not in state:
            visit(n)
    return [n for n in reversed(order) if n != g.input], back


FRAMEWORKS = ("nir", "sinabs")
"""How spiking nodes fire: ``nir`` (one spike when ``v > v_threshold``) or ``sinabs``
(Sinabs' IAF as its NIR import builds it: ``floor(v / v_threshold)`` spikes when
``v >= v_threshold``, reset by subtraction, membrane floor ``-v_threshold``)."""


def _sinabs_graph(nodes: dict) -> bool:
    """Every neuron node IF / I with r = 1: what Sinabs' exporter writes."""
    kinds = {k for k, _ in nodes.values() if k in _NEURONS}
    return bool(kinds) and kinds <= {"IF", "I"} and all(
        np.all(np.asarray(node.r) == 1) for k, node in nodes.values() if k in kinds)


def _conventions(g: _Graph, order: list[str], dt, legacy, reset, framework):
    """The step, the nodes with NIR <= 1.0.4's reset, the firing rule and what to report."""
    notes = [f"dt = {dt:g} (given)"] if dt is not None else []
    sinabs = _sinabs_graph(g.nodes)
    if dt is None:
        dt = 1.0 if sinabs else DEFAULT_DT
        notes.append("dt = 1: every neuron is IF / I with r = 1 (Sinabs' export: the membrane "
                     "adds its input once per step)" if sinabs else
                     f"dt = {DEFAULT_DT:g} (snnTorch's export: tau = dt / (1 - beta), "
                     f"r = tau / dt)")
    if framework is None:
        framework = "sinabs" if sinabs else "nir"
        if sinabs:
            notes.append("Sinabs' IAF: floor(v / v_threshold) spikes when v >= v_threshold, "
                         "reset by subtraction, membrane floor -v_threshold (--framework nir "
                         "for NIR's one spike when v > v_threshold)")
    else:
        notes.append(f"framework {framework!r} (given)")
    old = sorted(n for n in order if g.nodes[n][0] in _SPIKING
                 and (n in legacy or getattr(g.nodes[n][1], "v_reset", None) is None))
    if reset is not None:
        notes.append(f"reset {reset!r} (given)")
    elif old and framework == "nir":
        notes.append(f"reset by subtraction in {len(old)} spiking node(s) that carry no "
                     f"v_reset (NIR <= 1.0.4's IF / LIF / CubaLIF: v -= v_threshold on a "
                     f"spike; --reset zero for an exporter that meant a reset to 0)")
    unmarked = [n for n in order if g.nodes[n][0] in _SPIKING and n not in old
                and META_RESET not in (getattr(g.nodes[n][1], "metadata", None) or {})]
    ours = "spikeforge_format" in (g.metadata or {})  # export-nir's file (nirexport)
    warning = None if reset is not None or framework != "nir" or ours \
        else snntorch_zero_warning(g.nodes, unmarked, dt)
    return dt, old, framework, notes, [warning] if warning else []


def _subtract_next(g: _Graph, name: str, d: dict, warnings: list) -> list:
    """Reset ``subtract-next`` (:mod:`.nirreset`): the integer ``subtract`` and the
    recurrent correction edge, if any, as ``[(projection, True)]``."""
    d["reset"] = "subtract"
    if d["alpha_syn"] is not None:
        warnings.append(f"node {name!r}: snnTorch's reset by subtraction at the next step "
                        f"cannot be exact in a current-based layer (a correction edge would "
                        f"feed its current): it subtracts in the spiking step, before the "
                        f"decay, so its membrane after a spike is (1 - beta) v_threshold "
                        f"higher than snnTorch's")
        return []
    edge = next_step_correction(name, d["beta"], d["threshold"])
    if edge is None:
        return []
    g.weights += edge.weight.numel()
    if g.weights > MAX_WEIGHTS:
        raise NirError(f"node {name!r}: reset subtract-next needs a {edge.weight.shape[0]} x "
                       f"{edge.weight.shape[0]} recurrent correction, bringing the projections "
                       f"to {g.weights} weights, more than {MAX_WEIGHTS} (reset 'subtract' "
                       f"needs none)")
    return [(edge, True)]


def _float_layer(g: _Graph, name: str, back: set, d: dict, sinabs: bool,
                 warnings: list) -> FloatLayer:
    kind = g.nodes[name][0]
    shape = g.shape(name)
    bias = d["leak"].copy()
    inputs = []
    for proj, b, steps in g.projections(name):
        recurrent = (proj.source, name) in back or _chain_marked(g, steps)
        folded = _fold_gain(name, proj, d["gain"])
        folded.source = INPUT if proj.source == g.input else proj.source
        inputs.append((folded, recurrent))
        bias += d["gain"] * b
    spiking = d["threshold"] is not None
    if spiking and d["reset"] == SUBTRACT_NEXT:
        inputs += _subtract_next(g, name, d, warnings)
    return FloatLayer(name=name, kind=kind, size=math.prod(shape), beta=d["beta"], bias=bias,
                      threshold=d["threshold"], v_reset=d["v_reset"], reset=d["reset"],
                      inputs=inputs, alpha_syn=d["alpha_syn"], shape=shape,
                      multi_spike=sinabs and spiking, inclusive=sinabs and spiking,
                      v_min=-d["threshold"] if sinabs and spiking else None)


def from_graph(graph, *, dt: float | None = None, legacy: frozenset = frozenset(),
               reset: str | None = None, framework: str | None = None) -> FloatNetwork:
    """Discretise a NIR graph (see the module docstring) or raise :class:`NirError`.
    ``dt``: the step; ``None`` detects it from the file (``conventions`` says how).
    ``legacy``: the spiking nodes whose file entry has no ``v_reset``
    (:func:`legacy_nodes`); ``reset``: one of :data:`.nirreset.RESETS` for every
    spiking node the file does not mark, instead of what the file implies;
    ``framework``: the firing rule (:data:`FRAMEWORKS`; ``None`` detects it).
    ``warnings`` of the result: what the import had to assume (:mod:`.nirreset`)."""
    if dt is not None:
        _check_dt(dt)
    if reset not in (None, *RESETS):
        raise NirError(f"reset must be one of {', '.join(map(repr, RESETS))}, not {reset!r}")
    if framework not in (None, *FRAMEWORKS):
        raise NirError(f"framework must be one of {FRAMEWORKS}, not {framework!r}")
    if _kind(graph) != "NIRGraph":
        raise NirError(f"expected a NIR graph, not a {_kind(graph)}")
    g = _Graph(graph)
    out_preds = [_chain(g.nodes, g.preds, p)[0] if g.nodes[p][0] in _PASS + ("pass",) else p
                 for p in g.preds[g.output]]
    if len(out_preds) != 1:
        raise NirError(f"node {g.output!r}: the Output node needs exactly one input, "
                       f"not {len(out_preds)}")
    if g.nodes[out_preds[0]][0] not in _NEURONS:
        raise NirError(f"node {g.output!r}: the Output node's input {out_preds[0]!r} is a "
                       f"{g.nodes[out_preds[0]][0]}; the integer model's output is a neuron "
                       f"layer")
    order, back = _order(g)
    dt, old, framework, notes, warnings = _conventions(g, order, dt, legacy, reset, framework)
    sinabs = framework == "sinabs"
    layers, neurons, nexts = [], 0, []
    for name in order:
        kind, node = g.nodes[name]
        neurons += math.prod(g.shape(name))
        if neurons > MAX_NEURONS:
            raise NirError(f"node {name!r}: the network would have {neurons} neurons up to "
                           f"this node, more than {MAX_NEURONS}")
        d = _discretise(name, node, kind, math.prod(g.shape(name)), dt, name in old,
                        reset or ("subtract" if sinabs else None))
        nexts += [name] if d["reset"] == SUBTRACT_NEXT else []
        layers.append(_float_layer(g, name, back, d, sinabs, warnings))
    if nexts:
        notes.append(f"reset subtract-next in {', '.join(map(repr, nexts))} (snnTorch's: "
                     f"v_threshold subtracted at the step after a spike, after the decay; "
                     f"the integer subtract plus a recurrent edge -(1 - beta) v_threshold)")
    if any(la.name == INPUT for la in layers):
        raise NirError(f"node {INPUT!r}: a neuron node may not be named {INPUT!r}")
    in_shape = g.shapes[g.input]
    return FloatNetwork(input_size=math.prod(in_shape), layers=layers, output=out_preds[0],
                        dt=float(dt), input_shape=in_shape, conventions=notes, warnings=warnings)
