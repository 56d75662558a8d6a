"""The float model of an imported NIR graph: each neuron node discretised (float64, per
neuron), what the integer model is compared against (:mod:`.nirgraph` builds it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .integer import INPUT
from .projection import Projection

__all__ = ["FloatLayer", "FloatNetwork"]


@dataclass
class FloatLayer:
    """One NIR neuron node after discretisation (float64, per neuron).

    ``inputs``: ``(projection, recurrent)``, the projection's weight float64 with the
    input gain already folded in; ``bias`` likewise includes the gain and the
    ``v_leak`` term.  ``threshold`` is ``None`` for a non-spiking node.
    ``alpha_syn``: the synaptic current's decay of a current-based node (``None``
    otherwise); its input and bias then feed the current, which the membrane
    integrates.  ``shape``: the neurons as the node's parameters lay them out.
    ``multi_spike``, ``inclusive`` and ``v_min``: Sinabs' firing rule
    (:data:`.nirgraph.FRAMEWORKS`): ``floor(v / threshold)`` spikes, when ``v >= threshold``
    rather than ``>``, and the membrane's floor after the reset.
    """

    name: str
    kind: str
    size: int
    beta: np.ndarray
    bias: np.ndarray
    threshold: np.ndarray | None
    v_reset: float
    reset: str
    inputs: list[tuple[Projection, bool]] = field(default_factory=list)
    alpha_syn: np.ndarray | None = None
    shape: tuple[int, ...] | None = None
    multi_spike: bool = False
    inclusive: bool = False
    v_min: np.ndarray | None = None

    @property
    def spiking(self) -> bool:
        return self.threshold is not None


@dataclass
class FloatNetwork:
    """The discretised NIR graph: what the integer model is compared against.
    ``conventions``: what the importer read from the file and applied (dt, ...);
    ``warnings``: what it had to assume or could not carry over exactly."""

    input_size: int
    layers: list[FloatLayer]
    output: str
    dt: float
    input_shape: tuple[int, ...] = ()
    conventions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def layer(self, name: str) -> FloatLayer:
        return next(layer for layer in self.layers if layer.name == name)

    def run(self, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Run ``x`` (``[T, B, input_size]``, any numeric dtype) in float64.

        Returns ``{"spikes": {layer: [T,B,size]}, "membranes": {layer: [T,B,size]}}``
        (membranes after the reset; spikes only for spiking layers)."""
        x = x.to(torch.float64)
        steps, batch = x.shape[0], x.shape[1]
        zeros = {la.name: torch.zeros(batch, la.size, dtype=torch.float64) for la in self.layers}
        u, c, out = dict(zeros), dict(zeros), dict(zeros)
        spikes = {la.name: [] for la in self.layers if la.spiking}
        membranes = {la.name: [] for la in self.layers}
        for t in range(steps):
            prev = dict(out)
            now = {INPUT: x[t]}
            for la in self.layers:
                drive = torch.from_numpy(la.bias).expand(batch, -1).clone()
                for proj, recurrent in la.inputs:
                    src = prev[proj.source] if recurrent else now[proj.source]
                    drive += proj.linear(src, proj.weight)
                if la.alpha_syn is not None:
                    c[la.name] = torch.from_numpy(la.alpha_syn) * c[la.name] + drive
                    drive = c[la.name]
                v = torch.from_numpy(la.beta) * u[la.name] + drive
                if la.threshold is None:
                    u[la.name] = v
                    now[la.name] = v
                else:
                    thr = torch.from_numpy(la.threshold)
                    s = ((v >= thr) if la.inclusive else (v > thr)).to(torch.float64)
                    if la.multi_spike:
                        s = s * torch.floor(v / thr)
                    if la.reset == "zero":
                        u[la.name] = torch.where(s.bool(), torch.full_like(v, la.v_reset), v)
                    elif la.reset == "subtract":
                        u[la.name] = v - thr * s
                    else:
                        u[la.name] = v
                    if la.v_min is not None:
                        u[la.name] = torch.maximum(u[la.name], torch.from_numpy(la.v_min))
                    spikes[la.name].append(s)
                    now[la.name] = s
                membranes[la.name].append(u[la.name])
                out[la.name] = now[la.name]
        return {"spikes": {k: torch.stack(v) for k, v in spikes.items()},
                "membranes": {k: torch.stack(v) for k, v in membranes.items()}}
