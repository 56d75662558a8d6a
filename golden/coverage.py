"""Functional coverage of the integer model: which corners of its rules a set of
runs actually reached.

A bin is one corner of one rule (a saturation with a spike and a reset mode, a
threshold at its bound, an empty event list, ...), hit when some neuron, state
cell or edge of some step of some sample lands in it.  :class:`Coverage`
counts the hits of every bin over the runs it observes (through the golden
model's ``probe``, so it sees the values the model computed, not a
recomputation) and lists the bins left empty; the RTL suites steer their random
generator into the empty bins and fail while one stays empty.

The bins (``BINS``: name -> what hits it):

* LIF neuron updates, per reset mode of a spiking layer: ``v`` saturated high and
  a spike, in range with and without a spike, saturated low and no spike (the
  other two crosses cannot happen: ``1 <= theta <= u_max``); an LI layer's ``v``
  high, in range and low; far outside the range (``|v_wide| >= 2**u_bits``);
  ``v`` at ``theta`` (a spike) and at ``theta - 1`` (none); ``theta`` at 1 and at
  ``u_max``; ``alpha`` at 0, 1 and ``2**F`` on a nonzero membrane, and a leak that
  floors a negative product; ``bias`` at ``u_min`` and ``u_max``; a synaptic sum
  in the top half of the layer's worst case, either sign; a zero reset to a
  nonzero ``v_reset``.
* Edges: an event list empty, full (every source entry an event), a recurrent
  edge at step 0 and carrying events, negative input values.
* Feature maps and currents (with ``features=True``): Conv1d and Conv2d edges,
  stride, dilation and groups delivering events, an event on the border read
  through padding, a pool window summing two or more events, a pooled map read
  by a dense weight; a current-based layer's current saturated high and low, its
  decay 0 on a nonzero current and flooring a negative product; a multi-spike
  neuron emitting two or more spikes; a membrane at its floor ``v_min``.
* SSM layers (with ``ssm=True``): the state and the output saturated high and low
  in each decay mode; ``k``, ``v``, ``q`` each from a constant, from spikes and
  from multi-bit values, the eight constant/source combinations of the three, a
  recurrent operand; decay 0 on a nonzero state, a layer without decay (the
  hardware's idle-row skip), a decay that floors a negative state; gate rows 0
  and all ones, a recurrent gate; ``y_shift`` flooring a negative sum; with
  ``limits`` (a build's ``ssm_max_n``, ``ssm_max_m``), ``n`` and ``m`` at 1 and
  at the limit.
"""

from __future__ import annotations

import torch

from .integer import INPUT, Network, exact_matmul, signed_range

__all__ = ["BINS", "Coverage"]

RESETS = ("subtract", "zero", "none")

_LIF_BINS = {
    **{f"lif.{r}.{where}": f"spiking layer, reset {r}: {what}" for r in RESETS
       for where, what in (("high.spike", "v saturated high, spike"),
                           ("in.spike", "v in range, spike"),
                           ("in.quiet", "v in range, no spike"),
                           ("low.quiet", "v saturated low, no spike"))},
    "li.high": "LI layer: v saturated high",
    "li.in": "LI layer: v in range",
    "li.low": "LI layer: v saturated low",
    "lif.far_high": "v_wide >= 2**u_bits (far above the u range)",
    "lif.far_low": "v_wide < -2**u_bits (far below the u range)",
    "lif.v=theta": "v == theta, spike",
    "lif.v=theta-1": "v == theta - 1, no spike",
    "lif.theta=1": "theta == 1 on a spiking neuron",
    "lif.theta=u_max.spike": "theta == u_max, spike",
    "lif.theta=u_max.quiet": "theta == u_max, no spike",
    "lif.alpha=0": "alpha == 0 on a nonzero membrane",
    "lif.alpha=1": "alpha == 1 on a nonzero membrane",
    "lif.alpha=one": "alpha == 2**F on a nonzero membrane",
    "lif.leak.floor": "alpha * u negative and not a multiple of 2**F (floor, not truncation)",
    "lif.bias=u_min": "bias == u_min",
    "lif.bias=u_max": "bias == u_max",
    "lif.sum.top+": "synaptic sum in the top half of the layer's worst case, positive",
    "lif.sum.top-": "synaptic sum in the top half of the layer's worst case, negative",
    "lif.zero.v_reset": "zero reset to a nonzero v_reset",
    "edge.empty": "an edge's event list empty in a step",
    "edge.full": "an edge's event list full (every source entry an event)",
    "edge.recurrent.step0": "a recurrent edge at step 0 (delivers zeros)",
    "edge.recurrent.events": "a recurrent edge delivering events",
    "edge.input.negative": "a negative input value delivered",
}

_OPS = ("k", "v", "q")
_SSM_BINS = {
    **{f"ssm.{mode}.{what}.{side}": f"{mode} decay: {what} saturated {side}"
       for mode in ("fixed", "selective") for what in ("state", "y") for side in ("high", "low")},
    **{f"ssm.{op}.{kind}": f"operand {op} from {what}" for op in _OPS
       for kind, what in (("const", "a constant"), ("spikes", "spikes"),
                          ("values", "multi-bit values (int input, SSM y)"))},
    **{f"ssm.kvq.{a}{b}{c}": "k, v, q from (s)ources / (c)onstants as named"
       for a in "sc" for b in "sc" for c in "sc"},
    "ssm.operand.recurrent": "an operand from the previous step",
    "ssm.decay=0": "decay 0 on a nonzero state cell",
    "ssm.no_decay": "a layer whose decays are all 2**F (the idle-row skip)",
    "ssm.decay.floor": "decay * S negative and not a multiple of 2**F",
    "ssm.gate.row0": "selective: gate row 0",
    "ssm.gate.row_top": "selective: gate row with every bit set (two or more bits)",
    "ssm.gate.recurrent": "selective: the gate from the previous step",
    "ssm.y.floor": "y_shift flooring a negative readout",
}
_LIMIT_BINS = {f"ssm.{d}={v}": f"an SSM layer with {d} == {v}"
               for d in ("n", "m") for v in ("1", "max")}
_FEATURE_BINS = {
    "conv.1d": "a Conv1d edge delivering events",
    "conv.2d": "a Conv2d edge delivering events",
    "conv.stride": "a convolution with stride > 1 delivering events",
    "conv.dilation": "a convolution with dilation > 1 delivering events",
    "conv.groups": "a grouped (or depthwise) convolution delivering events",
    "conv.border": "an event on the map's border, read by windows that overhang into padding",
    "pool.window": "a pool window summing two or more events",
    "pool.dense": "a pooled map read by a dense weight, with events",
    "cuba.high": "current-based layer: the current saturated high",
    "cuba.low": "current-based layer: the current saturated low",
    "cuba.decay=0": "alpha_syn == 0 on a nonzero current",
    "cuba.decay.floor": "alpha_syn * c negative and not a multiple of 2**F",
    "multi.count>1": "a multi-spike neuron emitting two or more spikes in a step",
    "v_min.raised": "a membrane raised to its floor v_min",
}

BINS = {**_LIF_BINS, **_SSM_BINS, **_LIMIT_BINS, **_FEATURE_BINS}
"""Every bin's name and what hits it."""


def _any(mask) -> bool:
    return bool(torch.as_tensor(mask).any())


class Coverage:
    """Hit counts of :data:`BINS` over the runs observed.

    ``ssm``: whether the SSM bins apply (a core with an SSM unit); ``limits``:
    ``{"n": ssm_max_n, "m": ssm_max_m}`` of a build, for the ``n``/``m`` bins
    (without it they do not apply).  ``input_kinds``: the input kinds the suite
    drives (``edge.input.negative`` applies only with ``"int"``); ``frac_bits``:
    the build's F, if fixed (with F = 0 no product is floored, so the two floor
    bins do not apply).  ``features``: whether the feature-map and current-based
    bins apply (the golden suites of those layer kinds).
    """

    def __init__(self, *, ssm: bool = False, limits: dict[str, int] | None = None,
                 input_kinds: tuple[str, ...] = ("spike", "int"),
                 frac_bits: int | None = None, features: bool = False):
        names = list(_LIF_BINS)
        if "int" not in input_kinds:
            names.remove("edge.input.negative")
        if ssm:
            names += list(_SSM_BINS)
            if limits is not None:
                names += list(_LIMIT_BINS)
        if features:
            names += list(_FEATURE_BINS)
        if frac_bits == 0:
            names = [n for n in names if n not in ("lif.leak.floor", "ssm.decay.floor",
                                                   "cuba.decay.floor")]
        self.limits = limits
        self.counts = dict.fromkeys(names, 0)

    # ---------------------------------------------------------------- results
    @property
    def missing(self) -> list[str]:
        """The bins no observed run hit, in :data:`BINS` order."""
        return [name for name, n in self.counts.items() if n == 0]

    def merge(self, other: Coverage) -> None:
        for name, n in other.counts.items():
            if name in self.counts:
                self.counts[name] += n

    def table(self) -> str:
        """A Markdown table: bin, hits, what hits it (empty bins marked)."""
        rows = ["| bin | hits | what |", "|---|---:|---|"]
        rows += [f"| {name} | {n if n else '**0**'} | {BINS[name]} |"
                 for name, n in self.counts.items()]
        return "\n".join(rows)

    # ------------------------------------------------------------ observation
    def observe(self, net: Network, x: torch.Tensor):
        """Run ``net`` on ``x`` (``[T, B, input_size]``) in the golden model, count
        every bin the run hits (each at most once per run), return the trace."""
        hit = set()
        trace = net.run(x, probe=lambda t, layer, values: hit.update(
            self._bins(net, x, t, layer, values)))
        hit |= self._structure(net)
        for name in hit:
            if name in self.counts:
                self.counts[name] += 1
        return trace

    def hits(self, net: Network, x: torch.Tensor) -> set[str]:
        """The bins one run hits (without counting them)."""
        probe = Coverage(ssm=True, limits=self.limits, features=True)
        probe.observe(net, x)
        return {name for name, n in probe.counts.items() if n and name in self.counts}

    def _structure(self, net: Network) -> set[str]:
        hit = set()
        for layer in net.layers:
            if layer.kind != "ssm":
                continue
            combo = "".join("c" if op.is_const else "s" for op in layer.operands().values())
            hit.add(f"ssm.kvq.{combo}")
            if bool((layer.decay == net.fmt.one).all()):
                hit.add("ssm.no_decay")
            if self.limits is not None:
                for d in ("n", "m"):
                    size = getattr(layer, d)
                    hit |= {f"ssm.{d}=1"} if size == 1 else set()
                    hit |= {f"ssm.{d}=max"} if size == self.limits[d] else set()
        return hit

    def _bins(self, net, x, t, layer, values) -> set[str]:
        if layer.kind == "lif":
            return self._lif(net, t, layer, values)
        return self._ssm(net, t, layer, values)

    def _lif(self, net: Network, t: int, layer, val) -> set[str]:
        fmt = net.fmt
        u_lo, u_hi = signed_range(fmt.u_bits)
        wide, v, s, u_prev = val["v_wide"], val["v"], val["s"].bool(), val["u_prev"]
        high, low = wide > u_hi, wide < u_lo
        inside = ~high & ~low
        hit = set()
        if layer.spiking:
            for where, mask in (("high.spike", high & s), ("in.spike", inside & s),
                                ("in.quiet", inside & ~s), ("low.quiet", low & ~s)):
                if _any(mask):
                    hit.add(f"lif.{layer.reset}.{where}")
            theta = layer.theta
            checks = {"lif.v=theta": (v == theta) & s, "lif.v=theta-1": v == theta - 1,
                      "lif.theta=1": (theta == 1).expand_as(v),
                      "lif.theta=u_max.spike": (theta == u_hi) & s,
                      "lif.theta=u_max.quiet": (theta == u_hi) & ~s}
            if layer.reset == "zero" and layer.v_reset != 0:
                checks["lif.zero.v_reset"] = s
            hit |= {name for name, mask in checks.items() if _any(mask)}
        else:
            hit |= {name for name, mask in (("li.high", high), ("li.in", inside),
                                            ("li.low", low)) if _any(mask)}
        far = 1 << fmt.u_bits
        live = u_prev != 0
        product = layer.alpha * u_prev
        checks = {
            "lif.far_high": wide >= far, "lif.far_low": wide < -far,
            "lif.alpha=0": (layer.alpha == 0) & live, "lif.alpha=1": (layer.alpha == 1) & live,
            "lif.alpha=one": (layer.alpha == fmt.one) & live,
            "lif.leak.floor": (product < 0) & (product % fmt.one != 0),
            "lif.bias=u_min": (layer.bias == u_lo).expand_as(v),
            "lif.bias=u_max": (layer.bias == u_hi).expand_as(v),
        }
        need = net.required_acc_bits(layer)
        if need >= 2:
            top = 1 << (need - 2)
            checks["lif.sum.top+"] = val["current"] >= top
            checks["lif.sum.top-"] = val["current"] < -top
        hit |= {name for name, mask in checks.items() if _any(mask)}
        for proj, src in zip(layer.inputs, val["sources"], strict=True):
            hit |= self._edge(proj.source, proj.recurrent, t, src)
            hit |= _feature_edge(proj, src)
        if layer.current_based:
            hit |= _current(fmt, layer, val)
        if layer.multi_spike and _any(val["s"] >= 2):
            hit.add("multi.count>1")
        if layer.v_min is not None and _any(val["u"] == layer.v_min):
            hit.add("v_min.raised")
        return hit

    @staticmethod
    def _edge(source: str, recurrent: bool, t: int, src: torch.Tensor) -> set[str]:
        events = src != 0
        hit = set()
        if _any(~events.any(dim=1)):
            hit.add("edge.empty")
        if _any(events.all(dim=1)):
            hit.add("edge.full")
        if recurrent and t == 0:
            hit.add("edge.recurrent.step0")
        if recurrent and _any(events):
            hit.add("edge.recurrent.events")
        if source == INPUT and _any(src < 0):
            hit.add("edge.input.negative")
        return hit

    def _ssm(self, net: Network, t: int, layer, val) -> set[str]:
        fmt = net.fmt
        s_lo, s_hi = signed_range(fmt.s_bits)
        y_lo, y_hi = signed_range(fmt.y_bits)
        mode = layer.mode
        checks = {
            f"ssm.{mode}.state.high": val["S_wide"] > s_hi,
            f"ssm.{mode}.state.low": val["S_wide"] < s_lo,
            f"ssm.{mode}.y.high": val["y_wide"] > y_hi,
            f"ssm.{mode}.y.low": val["y_wide"] < y_lo,
        }
        S_prev, a = val["S_prev"], val["a"][:, :, None]
        product = a * S_prev
        checks["ssm.decay=0"] = (a == 0) & (S_prev != 0)
        checks["ssm.decay.floor"] = (product < 0) & (product % fmt.one != 0)
        if layer.y_shift > 0:
            acc = exact_matmul(val["ops"]["q"][:, None, :], val["S"],
                               net.ssm_acc_bits(layer))[:, 0, :]
            checks["ssm.y.floor"] = (acc < 0) & (acc % (1 << layer.y_shift) != 0)
        hit = {name for name, mask in checks.items() if _any(mask)}
        for what, op in layer.operands().items():
            if op.is_const:
                hit.add(f"ssm.{what}.const")
                continue
            spikes = net.source_bound(op.source) == 1  # a spike input or a LIF layer
            hit.add(f"ssm.{what}.{'spikes' if spikes else 'values'}")
            if op.recurrent:
                hit.add("ssm.operand.recurrent")
        if mode == "selective":
            gate, bits = val["gate"], net.layer(layer.gate).size
            if _any(gate == 0):
                hit.add("ssm.gate.row0")
            if bits >= 2 and _any(gate == (1 << bits) - 1):
                hit.add("ssm.gate.row_top")
            if layer.gate_recurrent:
                hit.add("ssm.gate.recurrent")
        return hit


def _feature_edge(proj, src: torch.Tensor) -> set[str]:
    """The feature-map bins an edge's events hit."""
    if not proj.structured or not _any(src != 0):
        return set()
    dims = len(proj.in_shape) - 1
    pooled = proj.pooled((src != 0).to(torch.float64))
    hit = set()
    if proj.pool is not None:
        hit |= {"pool.window"} if _any(pooled >= 2) else set()
        hit |= {"pool.dense"} if proj.conv is None else set()
    if proj.conv is not None:
        stride, padding, dilation = proj.conv.resolved(dims)
        hit.add(f"conv.{dims}d")
        hit |= {name for name, on in (("conv.stride", max(stride) > 1),
                                      ("conv.dilation", max(dilation) > 1),
                                      ("conv.groups", proj.conv.groups > 1)) if on}
        for d, pad in enumerate(padding):
            edge = pooled.narrow(2 + d, 0, 1), pooled.narrow(2 + d, pooled.shape[2 + d] - 1, 1)
            if pad > 0 and any(_any(e > 0) for e in edge):
                hit.add("conv.border")
    return hit


def _current(fmt, layer, val) -> set[str]:
    """The current-based bins of one step of a layer."""
    lo, hi = signed_range(fmt.u_bits)
    product = layer.alpha_syn * val["c_prev"]
    checks = {"cuba.high": val["c_wide"] > hi, "cuba.low": val["c_wide"] < lo,
              "cuba.decay=0": (layer.alpha_syn == 0) & (val["c_prev"] != 0),
              "cuba.decay.floor": (product < 0) & (product % fmt.one != 0)}
    return {name for name, mask in checks.items() if _any(mask)}
