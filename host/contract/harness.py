"""Driving the core and checking it, independent of the simulator.

The same functions serve the Amaranth-simulator tests and the cocotb /
Verilator tests: :func:`input_events` turns one input step into the events the
core takes, :func:`decode_step` turns one step's output records into spikes and
values, and :func:`expected` gives the same structure from the golden model
(with the final membranes, from one golden run), so a test asserts
``decoded == expected`` for every step; :func:`expected_counters` gives what
the counters must read.
"""

from __future__ import annotations

import torch

from ..golden.integer import INPUT, Network, Trace
from .compiler import Image, ssm_skips
from .config import RECORD_FIELDS, CoreConfig, Region, unpack
from .timing import COMPACT, TimingProfile

__all__ = ["input_events", "decode_step", "expected", "expected_from_trace",
           "expected_states", "expected_counters", "StepResult", "membrane_reads",
           "decode_membranes"]

StepResult = dict
"""``{"spikes": {layer: sorted spiking indices}, "values": [u of each output neuron],
"out_spikes": [spike of each output neuron]}``.  An SSM layer's entry in ``spikes`` is
its nonzero outputs as ``(index, y)`` pairs; an SSM output layer's ``values`` are its
``y`` and its ``out_spikes`` whether each ``y`` is nonzero."""


def input_events(step: list[int]) -> list[tuple[int, int]]:
    """The nonzero entries of one input step as ``(index, value)`` events."""
    return [(j, v) for j, v in enumerate(step) if v != 0]


def decode_step(records: list[int], net: Network, image: Image) -> StepResult:
    """Decode one step's raw output records (the last must be the end-of-step record)."""
    c: CoreConfig = image.config
    names = [layer.name for layer in net.layers]
    fields = RECORD_FIELDS(c)
    spikes = {name: [] for name in names if name != net.output}
    out = net.layer(net.output)
    values: list[int | None] = [None] * out.out_size
    out_spikes: list[int | None] = [None] * out.out_size
    decoded = [unpack(fields, r) for r in records]
    if not decoded or decoded[-1]["kind"] != 2:
        raise AssertionError(f"step does not end with an end-of-step record: {decoded[-1:]}")
    for rec in decoded[:-1]:
        name = names[rec["layer"]]
        if rec["kind"] == 0:
            if net.layer(name).kind == "ssm":
                spikes[name].append((rec["index"], rec["value"]))
            else:
                spikes[name].append(rec["index"])
        elif rec["kind"] == 1:
            if name != net.output:
                raise AssertionError(f"value record from non-output layer {name!r}")
            if values[rec["index"]] is not None:
                raise AssertionError(f"two value records for {name}[{rec['index']}]")
            values[rec["index"]] = rec["value"]
            out_spikes[rec["index"]] = rec["spike"]
        else:
            raise AssertionError(f"unexpected record {rec}")
    return {"spikes": spikes, "values": values, "out_spikes": out_spikes}


def expected_from_trace(net: Network, trace: Trace, sample: int = 0
                        ) -> tuple[list[StepResult], dict[str, list[int]]]:
    """The golden results of one sample of a recorded run: per step what
    :func:`decode_step` gives, and every layer's membranes after the last step
    (what :func:`decode_membranes` gives)."""
    out = net.layer(net.output)
    steps = []

    def hidden(layer, t: int) -> list:
        if layer.kind == "ssm":
            y = trace.outputs[layer.name][t, sample].tolist()
            return [(j, value) for j, value in enumerate(y) if value != 0]
        if layer.spiking:
            return torch.nonzero(trace.spikes[layer.name][t, sample]).flatten().tolist()
        return []

    for t in range(trace.outputs[net.output].shape[0]):
        spikes = {layer.name: hidden(layer, t) for layer in net.layers
                  if layer.name != net.output}
        if out.kind == "ssm":
            values = trace.outputs[net.output][t, sample].tolist()
            out_spikes = [int(value != 0) for value in values]
        else:
            values = trace.membranes[net.output][t, sample].tolist()
            out_spikes = trace.spikes[net.output][t, sample].tolist() if out.spiking \
                else [0] * out.size
        steps.append({"spikes": spikes, "values": values, "out_spikes": out_spikes})
    membranes = {layer.name: (trace.state[f"{layer.name}.S"][sample].flatten()
                              if layer.kind == "ssm" else trace.state[f"{layer.name}.u"][sample])
                 .tolist() for layer in net.layers}
    return steps, membranes


def expected(net: Network, x: torch.Tensor) -> tuple[list[StepResult], dict[str, list[int]]]:
    """:func:`expected_from_trace` of one sample ``x`` (``[T, input_size]``)."""
    return expected_from_trace(net, net.run(x[:, None, :]))


def expected_states(net: Network, x: torch.Tensor) -> list[dict[str, list[int]]]:
    """Every layer's state after each step of one sample ``x`` (``[T, input_size]``),
    as :func:`decode_membranes` gives it from the words at :func:`membrane_reads`:
    a LIF layer's membranes ``u[t]``, an SSM layer's ``S[t]`` row by row."""
    states: list[dict[str, list[int]]] = [{} for _ in range(len(x))]

    def probe(t: int, layer, values: dict) -> None:
        state = values["S"][0].flatten() if layer.kind == "ssm" else values["u"][0]
        states[t][layer.name] = state.tolist()

    net.run(x[:, None, :], probe=probe)
    return states


def expected_counters(net: Network, x: torch.Tensor, lanes: int,
                      timing: TimingProfile | None = None) -> dict[str, dict[str, int]]:
    """Per layer, what the core's counters must read after running one sample ``x``:
    ``events`` delivered, ``spikes``, and ``syn_cycles`` by the cost model (per step
    and row: ``events + 2 * edges + timing.row_overhead``, 5 or 8).

    SSM layers: ``events``: the events of its source operands (``k``, ``v``, ``q``,
    gate) read by the gather; ``spikes``: nonzero ``y`` routed; ``syn_cycles``: the
    gather, per step ``10 + events + constant entries``; ``neuron_cycles``: the pass,
    per step ``ceil(m / P) * (rows + 4)`` with ``rows = n``, or when every decay is 1.0
    (:func:`.compiler.ssm_skips`) the rows with a nonzero ``k_i`` or ``q_i`` (exact when
    the router never waits: no output backpressure and ``P <= rows + 3``; else a lower
    bound)."""
    trace = net.run(x[:, None, :])
    counts = {}

    def source_values(source: str, recurrent: bool) -> torch.Tensor:
        values = x if source == INPUT else trace.outputs[source][:, 0]
        return torch.cat([torch.zeros_like(values[:1]), values[:-1]]) if recurrent else values

    def source_events(source: str, recurrent: bool) -> torch.Tensor:
        return (source_values(source, recurrent) != 0).sum(dim=1)

    for layer in net.layers:
        if layer.kind == "ssm":
            events = torch.zeros(len(x), dtype=torch.int64)
            consts = 0
            for what, op in layer.operands().items():
                if op.is_const:
                    consts += layer.n if what != "v" else layer.m
                else:
                    events += source_events(op.source, op.recurrent)
            if layer.mode == "selective":
                events += source_events(layer.gate, layer.gate_recurrent)
            cols = -(-layer.m // lanes)
            rows = torch.full((len(x),), layer.n, dtype=torch.int64)
            if ssm_skips(net, layer):
                k, q = ((op.const.expand(len(x), -1) if op.is_const
                         else source_values(op.source, op.recurrent)) for op in (layer.k, layer.q))
                rows = ((k != 0) | (q != 0)).sum(dim=1)
            counts[layer.name] = {
                "events": int(events.sum()),
                "spikes": int((trace.outputs[layer.name] != 0).sum()),
                "syn_cycles": int((10 + consts + events).sum()),
                "neuron_cycles_min": int((cols * (rows + 4)).sum()),
                "pass_rows": rows.tolist(),
            }
            continue
        per_step = torch.zeros(len(x), dtype=torch.int64)
        for proj in layer.inputs:
            per_step += source_events(proj.source, proj.recurrent)
        rows = -(-layer.size // lanes)
        overhead = 2 * len(layer.inputs) + (timing or COMPACT).row_overhead
        counts[layer.name] = {
            "events": int(per_step.sum()),
            "spikes": int(trace.spikes[layer.name].sum()) if layer.spiking else 0,
            "syn_cycles": int((rows * (per_step + overhead)).sum()),
        }
    return counts


def membrane_reads(net: Network, image: Image) -> list[int]:
    """Host addresses of every neuron's membrane, layer by layer, neuron by neuron;
    for an SSM layer, of its state ``S`` (row by row)."""
    c = image.config
    addrs = []
    for layer in net.layers:
        if layer.kind == "ssm":
            cols = -(-layer.m // c.lanes)
            addrs += [c.address(Region.SSM_STATE, j % c.lanes,
                                image.ssbase[layer.name] + i * cols + j // c.lanes)
                      for i in range(layer.n) for j in range(layer.m)]
        else:
            addrs += [c.address(Region.MEMBRANES, n % c.lanes,
                                image.sbase[layer.name] + n // c.lanes)
                      for n in range(layer.size)]
    return addrs


def decode_membranes(words: list[int], net: Network, image: Image) -> dict[str, list[int]]:
    """The words read at :func:`membrane_reads`, per layer, as signed integers
    (an SSM layer's ``S`` flattened row by row)."""
    out, i = {}, 0
    for layer in net.layers:
        size = layer.n * layer.m if layer.kind == "ssm" else layer.size
        bits = image.config.s_bits if layer.kind == "ssm" else image.config.u_bits
        out[layer.name] = [w - (1 << bits) if w >> (bits - 1) & 1 else w
                           for w in words[i:i + size]]
        i += size
    return out
