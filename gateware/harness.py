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
from .layout import RECORD_FIELDS, CoreConfig, Image, Region, unpack

__all__ = ["input_events", "decode_step", "expected", "expected_from_trace",
           "expected_counters", "StepResult", "membrane_reads", "decode_membranes"]

StepResult = dict
"""``{"spikes": {layer: sorted spiking indices}, "values": [u of each output neuron],
"out_spikes": [spike of each output neuron]}``."""


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
    values: list[int | None] = [None] * out.size
    out_spikes: list[int | None] = [None] * out.size
    decoded = [unpack(fields, r) for r in records]
    if not decoded or decoded[-1]["kind"] != 2:
        raise AssertionError(f"step does not end with an end-of-step record: {decoded[-1:]}")
    for rec in decoded[:-1]:
        name = names[rec["layer"]]
        if rec["kind"] == 0:
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
    for t in range(trace.outputs[net.output].shape[0]):
        spikes = {layer.name: torch.nonzero(trace.spikes[layer.name][t, sample]).flatten()
                  .tolist() if layer.spiking else []
                  for layer in net.layers if layer.name != net.output}
        values = trace.membranes[net.output][t, sample].tolist()
        out_spikes = trace.spikes[net.output][t, sample].tolist() if out.spiking \
            else [0] * out.size
        steps.append({"spikes": spikes, "values": values, "out_spikes": out_spikes})
    membranes = {layer.name: trace.state[f"{layer.name}.u"][sample].tolist()
                 for layer in net.layers}
    return steps, membranes


def expected(net: Network, x: torch.Tensor) -> tuple[list[StepResult], dict[str, list[int]]]:
    """:func:`expected_from_trace` of one sample ``x`` (``[T, input_size]``)."""
    return expected_from_trace(net, net.run(x[:, None, :]))


def expected_counters(net: Network, x: torch.Tensor, lanes: int) -> dict[str, dict[str, int]]:
    """Per layer, what the core's counters must read after running one sample ``x``:
    ``events`` delivered, ``spikes``, and ``syn_cycles`` by the cost model (per step
    and row: ``events + 2 * edges + 4``)."""
    trace = net.run(x[:, None, :])
    counts = {}
    for layer in net.layers:
        per_step = torch.zeros(len(x), dtype=torch.int64)
        for proj in layer.inputs:
            if proj.source == INPUT:
                per_step += (x != 0).sum(dim=1)
            else:
                src = trace.spikes[proj.source][:, 0].sum(dim=1)
                per_step += torch.cat([src.new_zeros(1), src[:-1]]) if proj.recurrent else src
        rows = -(-layer.size // lanes)
        counts[layer.name] = {
            "events": int(per_step.sum()),
            "spikes": int(trace.spikes[layer.name].sum()) if layer.spiking else 0,
            "syn_cycles": int((rows * (per_step + 2 * len(layer.inputs) + 4)).sum()),
        }
    return counts


def membrane_reads(net: Network, image: Image) -> list[int]:
    """Host addresses of every neuron's membrane, layer by layer, neuron by neuron."""
    c = image.config
    return [c.address(Region.MEMBRANES, n % c.lanes, image.sbase[layer.name] + n // c.lanes)
            for layer in net.layers for n in range(layer.size)]


def decode_membranes(words: list[int], net: Network, image: Image) -> dict[str, list[int]]:
    """The membranes read at :func:`membrane_reads`, per layer, as signed integers."""
    bits = image.config.u_bits
    values = [w - (1 << bits) if w >> (bits - 1) & 1 else w for w in words]
    out, i = {}, 0
    for layer in net.layers:
        out[layer.name] = values[i:i + layer.size]
        i += layer.size
    return out
