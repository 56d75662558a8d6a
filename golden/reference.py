"""The naive reference: the integer model written out one sample, one event at a time.

This is the slow, obviously-correct model that the fast, batched one
(:meth:`spikeforge.golden.integer.Network.run`) is checked against, and the
model of the event-driven hardware.  It works on plain Python ints (tensors are
converted with ``.tolist()`` once, up front), so nothing can wrap or round
behind its back, and it follows the equations of :mod:`spikeforge.golden.integer`
literally:

* A LIF layer collects its input *events*: the nonzero entries ``x_e[j]`` of
  every source it reads (this step's output for a feed-forward edge, last
  step's for a recurrent one).  The events are delivered in natural order, or
  shuffled by the caller's ``random.Random`` (the hardware's arrival order is
  not fixed, and the result must not depend on it); each event adds
  ``w * x_e[j]`` to the accumulator of every target ``i`` on its fan-out list:
  the ``(i, w)`` pairs written out literally from the projection's definition
  (every target for a dense edge; through each pool window that holds ``j``,
  then each kernel tap that reads that window, for a feature-map edge).
  Every partial sum is checked against the ``acc_bits`` accumulator the
  network was validated for.  Then, per neuron: for a current-based layer the
  current ``c = sat_u((alpha_syn c >> F) + acc + bias)``; leak by ``>> F``,
  add the current and the bias (or ``c``), saturate to ``u_bits``, spike on
  ``v >= theta`` (``v // theta`` spikes with ``multi_spike``), reset, raise
  ``u`` to ``v_min`` if it has one.
* An SSM layer decays its state row by row (``(a_i * S[i][j]) >> F``), adds the
  outer product ``k v^T`` for the nonzero ``k_i`` only, saturates to
  ``s_bits``, then reads out ``y_j = sat_y((sum_i q_i * S[i][j]) >> y_shift)``
  from the nonzero ``q_i`` (in event order too).  In selective mode the decay
  row is ``g = sum_b s_b * 2**b`` from the gate layer's spikes.

``run_reference`` returns per-step outputs, membranes and spikes, the final
state (keyed like :attr:`Trace.state`), and the ``synops`` / ``ssm_ops`` counts
with the same definitions as :class:`~spikeforge.golden.integer.Trace`.
"""

from __future__ import annotations

import itertools
import math
import random

from .integer import INPUT, Network, NetworkError, Projection, signed_range

__all__ = ["run_reference"]


def _sat(value: int, bits: int) -> tuple[int, bool]:
    """Clamp ``value`` to signed ``bits`` bits; also say whether it was clamped."""
    lo, hi = signed_range(bits)
    if value < lo:
        return lo, True
    if value > hi:
        return hi, True
    return value, False


def _check_input(net: Network, x) -> list[list[int]]:
    if hasattr(x, "tolist"):
        x = x.tolist()
    steps = [list(row) for row in x]
    lo, hi = net.input_range()
    for t, row in enumerate(steps):
        if len(row) != net.input_size:
            raise NetworkError(f"input step {t} has {len(row)} values, expected "
                               f"{net.input_size}")
        for value in row:
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise NetworkError(f"input step {t}: value {value!r} is not an integer in "
                                   f"[{lo}, {hi}]")
    return steps


def _flat(shape, index) -> int:
    """The row-major position of ``index`` in an array of ``shape``."""
    flat = 0
    for n, i in zip(shape, index, strict=True):
        flat = flat * n + i
    return flat


def _windows(proj: Projection) -> tuple[list[list[int]], tuple[int, ...]]:
    """Per source entry, the flat positions of the pool windows that hold it (itself
    without a pool), and the pooled shape."""
    channels, *spatial = proj.in_shape
    if proj.pool is None:
        return [[j] for j in range(math.prod(proj.in_shape))], tuple(proj.in_shape)
    kernel, stride, padding = proj.pool.resolved(len(spatial))
    pooled = proj.pooled_shape
    windows: list[list[int]] = [[] for _ in range(math.prod(proj.in_shape))]
    for c in range(channels):
        for q in itertools.product(*(range(n) for n in pooled[1:])):
            for k in itertools.product(*(range(n) for n in kernel)):
                pos = [qd * s - p + kd for qd, s, p, kd in zip(q, stride, padding, k, strict=True)]
                if all(0 <= x < n for x, n in zip(pos, spatial, strict=True)):
                    windows[_flat(proj.in_shape, (c, *pos))].append(_flat(pooled, (c, *q)))
    return windows, pooled


def _taps(proj: Projection, pooled: tuple[int, ...], size: int) -> list[list[tuple[int, int]]]:
    """Per pooled position, the ``(target, weight)`` pairs it reaches: every target of a
    dense weight, or every (output, kernel tap) of a convolution that reads it."""
    weight = proj.weight.tolist()
    if proj.conv is None:
        return [[(i, weight[i][p]) for i in range(size)] for p in range(math.prod(pooled))]
    channels, *spatial = pooled
    stride, padding, dilation = proj.conv.resolved(len(spatial))
    out = proj.out_shape
    per_group = channels // proj.conv.groups
    out_per_group = out[0] // proj.conv.groups
    kernel = proj.weight.shape[2:]
    taps: list[list[tuple[int, int]]] = [[] for _ in range(math.prod(pooled))]
    for oc in range(out[0]):
        for o in itertools.product(*(range(n) for n in out[1:])):
            for cl in range(per_group):
                c = oc // out_per_group * per_group + cl
                for k in itertools.product(*(range(n) for n in kernel)):
                    pos = [od * s - p + kd * d
                           for od, s, p, kd, d in zip(o, stride, padding, k, dilation, strict=True)]
                    if all(0 <= x < n for x, n in zip(pos, spatial, strict=True)):
                        w = weight[oc][cl]
                        for kd in k:
                            w = w[kd]
                        taps[_flat(pooled, (c, *pos))].append((_flat(out, (oc, *o)), w))
    return taps


def _fanout(proj: Projection, source_size: int, size: int) -> list[list[tuple[int, int]]]:
    """Per source entry ``j``, the ``(target, weight)`` pairs one event at ``j`` adds to."""
    if not proj.structured:
        weight = proj.weight.tolist()
        return [[(i, weight[i][j]) for i in range(size)] for j in range(source_size)]
    windows, pooled = _windows(proj)
    taps = _taps(proj, pooled, size)
    return [[t for p in windows[j] for t in taps[p]] for j in range(source_size)]


def _initial_state(net: Network) -> dict[str, list]:
    state: dict[str, list] = {}
    for layer in net.layers:
        if layer.kind == "lif":
            state[f"{layer.name}.u"] = [0] * layer.size
            if layer.current_based:
                state[f"{layer.name}.c"] = [0] * layer.size
        else:
            state[f"{layer.name}.S"] = [[0] * layer.m for _ in range(layer.n)]
        state[f"{layer.name}.out"] = [0] * layer.out_size
    return state


def run_reference(net: Network, x, *, event_order: random.Random | None = None,
                  state: dict | None = None) -> dict:
    """Run one sample of ``net`` over the steps of ``x``, event by event, in Python ints.

    ``x`` is a list of ``T`` steps, each a list of ``input_size`` ints (or a
    ``[T, input_size]`` tensor).  ``event_order``: a ``random.Random`` that
    shuffles the order in which each layer's input events (and each SSM's
    ``k`` / ``q`` events) are processed; ``None`` keeps the natural order.
    ``state``: a previous run's ``"state"`` (one sample, keyed like
    :attr:`Trace.state`) to continue from; ``None`` starts from zeros.

    Returns a dict:

    ``outputs[name]``: list over steps of the layer's output (spikes, LI
    membrane, or SSM ``y``) for every layer; ``membranes[name]`` (every LIF
    layer, ``u[t]`` after the reset) and ``spikes[name]`` (spiking LIF layers):
    lists over steps; ``state``: ``{name}.u`` (LIF), ``{name}.S`` (SSM, ``n``
    rows of ``m``), ``{name}.out`` (last output, what recurrent edges read);
    ``synops``: events times fan-out summed over steps and edges; ``ssm_ops``:
    ``(nonzero k + nonzero q) * m`` summed over steps and SSM layers;
    ``saturated``: how many times ``u`` (``"u"``), a synaptic current (``"c"``),
    a state cell (``"s"``) or an SSM output (``"y"``) was clamped (a diagnostic,
    not part of the model).
    """
    fmt = net.fmt
    F = fmt.frac_bits
    acc_lo, acc_hi = signed_range(fmt.acc_bits)
    steps = _check_input(net, x)

    # Plain-Python copies of every parameter.
    params = {}
    for layer in net.layers:
        if layer.kind == "lif":
            params[layer.name] = {
                "alpha": layer.alpha.tolist(),
                "theta": layer.theta.tolist(),
                "bias": layer.bias.tolist(),
                "alpha_syn": None if layer.alpha_syn is None else layer.alpha_syn.tolist(),
                "v_min": None if layer.v_min is None else layer.v_min.tolist(),
                "edges": [(p.source, p.recurrent,
                           _fanout(p, net.source_size(p.source), layer.size))
                          for p in layer.inputs],
            }
        else:
            ops = {}
            for what, op in layer.operands().items():
                ops[what] = (None, False, op.const.tolist()) if op.is_const \
                    else (op.source, op.recurrent, None)
            params[layer.name] = {
                "ops": ops,
                "decay": layer.decay.tolist(),
                "acc_bits": net.ssm_acc_bits(layer),
            }

    if state is None:
        state = _initial_state(net)
    else:
        state = {key: [list(row) if isinstance(row, list) else row for row in value]
                 for key, value in state.items()}

    outputs: dict[str, list] = {layer.name: [] for layer in net.layers}
    membranes: dict[str, list] = {layer.name: [] for layer in net.layers if layer.kind == "lif"}
    spikes: dict[str, list] = {layer.name: [] for layer in net.layers
                               if layer.kind == "lif" and layer.spiking}
    synops = 0
    ssm_ops = 0
    saturated = {"u": 0, "c": 0, "s": 0, "y": 0}

    def in_order(events: list) -> list:
        if event_order is not None:
            event_order.shuffle(events)
        return events

    for x_t in steps:
        prev = {layer.name: list(state[f"{layer.name}.out"]) for layer in net.layers}
        now: dict[str, list[int]] = {INPUT: x_t}

        def fetch(source: str, recurrent: bool) -> list[int]:
            return prev[source] if recurrent else now[source]  # noqa: B023

        for layer in net.layers:
            p = params[layer.name]
            if layer.kind == "lif":
                # Synaptic phase: one event per nonzero source entry, in event order.
                events = []
                for weight_index, (source, recurrent, _) in enumerate(p["edges"]):
                    for j, value in enumerate(fetch(source, recurrent)):
                        if value != 0:
                            events.append((weight_index, j, value))
                acc = [0] * layer.size
                for weight_index, j, value in in_order(events):
                    fanout = p["edges"][weight_index][2][j]
                    for i, weight in fanout:
                        acc[i] += weight * value
                        if not acc_lo <= acc[i] <= acc_hi:
                            raise AssertionError(
                                f"layer {layer.name!r}: accumulator {acc[i]} overflows "
                                f"acc_bits={fmt.acc_bits} (validation should prevent this)")
                    synops += len(fanout)
                # Neuron phase.
                u_prev = state[f"{layer.name}.u"]
                drive = [a + b for a, b in zip(acc, p["bias"], strict=True)]
                if layer.current_based:
                    c_prev = state[f"{layer.name}.c"]
                    for i in range(layer.size):
                        drive[i], clamped = _sat(((p["alpha_syn"][i] * c_prev[i]) >> F)
                                                 + drive[i], fmt.u_bits)
                        saturated["c"] += clamped
                    state[f"{layer.name}.c"] = list(drive)
                u_new, s_new = [], []
                for i in range(layer.size):
                    leak = (p["alpha"][i] * u_prev[i]) >> F
                    v, clamped = _sat(leak + drive[i], fmt.u_bits)
                    saturated["u"] += clamped
                    s = 1 if layer.spiking and v >= p["theta"][i] else 0
                    if s and layer.multi_spike:
                        s = v // p["theta"][i]
                    if layer.reset == "subtract":
                        u = v - p["theta"][i] * s
                    elif layer.reset == "zero":
                        u = layer.v_reset if s else v
                    else:
                        u = v
                    if p["v_min"] is not None:
                        u = max(u, p["v_min"][i])
                    u_new.append(u)
                    s_new.append(s)
                state[f"{layer.name}.u"] = u_new
                membranes[layer.name].append(list(u_new))
                if layer.spiking:
                    spikes[layer.name].append(list(s_new))
                out = s_new if layer.spiking else list(u_new)
            else:
                ops = {}
                for what, (source, recurrent, const) in p["ops"].items():
                    ops[what] = const if source is None else fetch(source, recurrent)
                k, v, q = ops["k"], ops["v"], ops["q"]
                if layer.mode == "fixed":
                    a = p["decay"]
                else:
                    bits = fetch(layer.gate, layer.gate_recurrent)
                    g = sum(bit * 2 ** b for b, bit in enumerate(bits))
                    a = p["decay"][g]
                S_prev = state[f"{layer.name}.S"]
                # Decay, row by row.
                S = [[(a[i] * S_prev[i][j]) >> F for j in range(layer.m)]
                     for i in range(layer.n)]
                # Outer product k v^T, one row per nonzero k_i.
                k_events = in_order([i for i in range(layer.n) if k[i] != 0])
                for i in k_events:
                    for j in range(layer.m):
                        S[i][j] += k[i] * v[j]
                ssm_ops += len(k_events) * layer.m
                for i in range(layer.n):
                    for j in range(layer.m):
                        S[i][j], clamped = _sat(S[i][j], fmt.s_bits)
                        saturated["s"] += clamped
                state[f"{layer.name}.S"] = S
                # Readout y = sat_y((S^T q) >> y_shift), one row per nonzero q_i.
                r_lo, r_hi = signed_range(p["acc_bits"])
                y_wide = [0] * layer.m
                q_events = in_order([i for i in range(layer.n) if q[i] != 0])
                for i in q_events:
                    for j in range(layer.m):
                        y_wide[j] += q[i] * S[i][j]
                        if not r_lo <= y_wide[j] <= r_hi:
                            raise AssertionError(
                                f"layer {layer.name!r}: readout {y_wide[j]} overflows "
                                f"{p['acc_bits']} bits (ssm_acc_bits should prevent this)")
                ssm_ops += len(q_events) * layer.m
                out = []
                for j in range(layer.m):
                    y, clamped = _sat(y_wide[j] >> layer.y_shift, fmt.y_bits)
                    saturated["y"] += clamped
                    out.append(y)
            now[layer.name] = out
            state[f"{layer.name}.out"] = list(out)
            outputs[layer.name].append(list(out))

    return {
        "outputs": outputs,
        "membranes": membranes,
        "spikes": spikes,
        "state": state,
        "synops": synops,
        "ssm_ops": ssm_ops,
        "saturated": saturated,
    }
