"""Whether a model fits a board, in seconds and before any tool runs.

For each board: the model compiled onto the board's :class:`CoreConfig` by the
compiler ``build`` and ``Device.load`` use (:func:`..contract.compiler.compile_network`;
its :class:`FitError` names the exceeded limit), every capacity the model uses
against its limit (:func:`usage`: the limiting one, or the tightest when it fits),
the estimated FPGA resources of the board's build (:mod:`.estimate`) and the
clocks per sample of the core on the model's own task data (:func:`step_clocks`),
in seconds at the board's NPU clock.

The clock model (``docs/gateware.md``, ``gateware/core/sequencer.py``), per step:
per LIF layer ``LAYER`` (1 clock), per row ``events + 2 * edges + row_overhead``
synaptic clocks (5 compact, 8 pipelined: what the core's ``syn_cycles`` counter
counts), FIRE and NEURON (2), NEURON waiting while the spike router still sends
the previous row's records (one a clock: the row's spikes; every neuron of the
output layer), then ``LAYER_END`` until the router has sent the last row's
(``records + 2`` clocks, 1 without records); per SSM layer ``LAYER``, the gather
(``10 + operand events + constant entries``), per chunk of ``P`` columns ``rows +
4`` pass clocks (``rows``: ``n``, or the active rows when every decay is 1.0),
each chunk after the first waiting for the router to send the previous one's
records (its nonzero ``y``; every ``y`` of an output layer), and ``LAYER_END`` as
for a LIF layer; 2 clocks per step (its start, ``STEP_END``); and a sample's first
step waits for its input events (one a clock, plus 3; later steps' inputs load
while a step runs).  Both profiles share it.  It equals the clock counts of the
core (the time between two steps' end records) on every step of the shipped
models' test splits on Verilator and of random networks on the Amaranth
simulation of both profiles (tests/test_fit.py), unless the output stream holds
the core back.  The link (UART bytes, the engine) is not included.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..contract.compiler import compile_network
from ..contract.config import CoreConfig, FitError
from ..contract.timing import TimingProfile
from ..golden.integer import INPUT, Network
from .defs import Board

__all__ = ["usage", "check_fit", "step_clocks", "sample_clocks", "task_inputs", "fit_board",
           "fit_report"]

I64 = torch.int64

LAYER_END, STEP, FIRST_STEP = 2, 2, 3
"""The clock model's constants (module docs): ``LAYER_END`` takes ``records +
LAYER_END`` clocks, a step ``STEP`` more, a sample's first step ``FIRST_STEP``
more than its input events."""


# ------------------------------------------------------------------ capacity
def usage(net: Network, config: CoreConfig) -> dict[str, dict]:
    """What ``net`` uses of every capacity of a core with ``config``: resource name ->
    ``{"used", "available", "ratio", "limit"}`` (``limit``: the :class:`CoreConfig`
    field; ``ratio`` ``used / available``, ``None`` when nothing is available).
    Neurons, synapses and SSM state count words of all lanes, as the compiler lays
    them out (a layer takes ``ceil(size / P)`` rows in every lane)."""
    c, P = config, config.lanes
    lif = [layer for layer in net.layers if layer.kind == "lif"]
    ssm = [layer for layer in net.layers if layer.kind == "ssm"]
    rows = {layer.name: -(-layer.size // P) for layer in lif}
    out = {}

    def put(resource: str, limit: str, used: int, available: int) -> None:
        out[resource] = {"used": int(used), "available": int(available),
                         "ratio": round(used / available, 4) if available else None,
                         "limit": limit}

    put("layers", "max_layers", len(net.layers), c.max_layers)
    put("edges", "max_edges", sum(len(layer.inputs) for layer in lif), c.max_edges)
    put("inputs", "max_inputs", net.input_size, c.max_inputs)
    put("neurons per layer", "max_neurons", max((layer.size for layer in lif), default=0),
        c.max_neurons)
    put("fan-in", "max_fanin", max((sum(net.source_size(p.source) for p in layer.inputs)
                                    for layer in lif), default=0), c.max_fanin)
    put("accumulator bits", "acc_bits",
        max((net.required_acc_bits(layer) for layer in lif), default=0), c.acc_bits)
    put("neuron slots", "neuron_depth", P * sum(rows.values()), P * c.neuron_depth)
    put("synapses", "weight_depth",
        P * sum(rows[layer.name] * net.source_size(p.source) for layer in lif
                for p in layer.inputs), P * c.weight_depth)
    if ssm:
        put("SSM state", "ssm_depth",
            P * sum(layer.n * -(-layer.m // P) for layer in ssm), P * c.ssm_depth)
        put("SSM rows", "ssm_max_n", max(layer.n for layer in ssm), c.ssm_max_n)
        put("SSM columns", "ssm_max_m", max(layer.m for layer in ssm), c.ssm_max_m)
        put("SSM parameters", "ssm_param_depth", sum(
            2 * layer.n + layer.m + layer.decay.numel() for layer in ssm), c.ssm_param_depth)
    return out


_FORMAT = ("w_bits", "u_bits", "frac_bits", "in_bits", "s_bits", "y_bits")


def _limit_of(message: str, used: dict) -> dict:
    """The capacity a :class:`FitError` message names, with its use and limit."""
    if "has no SSM unit" in message:
        resource = "SSM state"
    else:
        keys = re.findall(r"\b([a-z_]+)=", message)
        by_limit = {v["limit"]: k for k, v in used.items()}
        hits = [by_limit[k] for k in keys if k in by_limit]
        if hits:
            resource = hits[-1]
        elif any(k in _FORMAT for k in keys):
            return {"resource": "number format", "limit": next(k for k in keys if k in _FORMAT),
                    "also": []}
        elif "readout accumulator" in message:
            return {"resource": "SSM accumulator bits", "limit": "ssm_acc_bits", "also": []}
        else:
            return {"resource": "neuron model", "limit": None, "also": []}
    return {"resource": resource, **used[resource], "also": []}


def check_fit(net: Network, config: CoreConfig) -> dict:
    """``net`` compiled onto ``config``: ``fits``, ``error`` (the compiler's
    :class:`FitError` message, naming the limit), ``limiting`` (the capacity hit,
    or the tightest one when it fits) and ``usage`` (:func:`usage`)."""
    used = usage(net, config)
    try:
        compile_network(net, config)
    except FitError as exc:
        return {"fits": False, "error": str(exc), "limiting": _limit_of(str(exc), used),
                "usage": used}
    ratios = {k: v["ratio"] for k, v in used.items() if v["ratio"] is not None}
    top = max(ratios.values())
    tied = [k for k, r in ratios.items() if r == top]
    return {"fits": True, "error": None,
            "limiting": {"resource": tied[0], **used[tied[0]], "also": tied[1:]},
            "usage": used}


# -------------------------------------------------------------------- clocks
def _events(net: Network, x: torch.Tensor, trace, source: str, recurrent: bool):
    """Events a source delivers per step and sample, ``[T, B]``."""
    values = x if source == INPUT else trace.outputs[source]
    hits = (values != 0).sum(-1)
    return torch.cat([torch.zeros_like(hits[:1]), hits[:-1]]) if recurrent else hits


def _records(net: Network, layer, trace, P: int, rows: int, shape) -> torch.Tensor:
    """Records the router sends per row, ``[T, B, rows]``: every neuron of the output
    layer, else the row's spikes."""
    if layer.name == net.output:
        valid = torch.tensor([min(P, layer.size - k * P) for k in range(rows)], dtype=I64)
        return valid.expand(*shape, rows)
    if not layer.spiking:
        return torch.zeros(*shape, rows, dtype=I64)
    spikes = torch.nn.functional.pad(trace.spikes[layer.name], (0, rows * P - layer.size))
    return (spikes != 0).reshape(*shape, rows, P).sum(-1)


def step_clocks(net: Network, x: torch.Tensor, trace, config: CoreConfig,
                timing: TimingProfile) -> torch.Tensor:
    """The core's clocks of every step of ``x`` (``[T, B, input_size]``, ``trace =
    net.run(x)``; from one step's end record to the next's: the busy clocks its
    ``step_cycles`` counter counts and the clock that starts it) by the clock model
    of the module docs, ``[T, B]``."""
    P, shape = config.lanes, tuple(x.shape[:2])
    total = torch.full(shape, STEP, dtype=I64)
    for layer in net.layers:
        if layer.kind == "ssm":
            cols = -(-layer.m // P)
            gather, rows = _ssm_clocks(net, layer, x, trace, P)
            if layer.name == net.output:  # (records per chunk of P columns)
                rec = torch.tensor([min(P, layer.m - c * P) for c in range(cols)],
                                   dtype=I64).expand(*shape, cols)
            else:
                y = torch.nn.functional.pad(trace.outputs[layer.name], (0, cols * P - layer.m))
                rec = (y != 0).reshape(*shape, cols, P).sum(-1)
            wait = (rec[..., :-1] - (rows + 4)[..., None]).clamp(min=0).sum(-1)
            last = rec[..., -1]
            total += 1 + gather + cols * (rows + 4) + wait + torch.where(
                last > 0, last + LAYER_END, 1)
            continue
        rows = -(-layer.size // P)
        events = sum((_events(net, x, trace, p.source, p.recurrent) for p in layer.inputs),
                     torch.zeros(shape, dtype=I64))
        syn = events + 2 * len(layer.inputs) + timing.row_overhead
        rec = _records(net, layer, trace, P, rows, shape)
        wait = (rec[..., :-1] - (syn + 2)[..., None]).clamp(min=0).sum(-1)
        last = rec[..., -1]
        total += 1 + rows * (syn + 2) + wait + torch.where(last > 0, last + LAYER_END, 1)
    return total


def _ssm_clocks(net: Network, layer, x, trace, P: int):
    """An SSM layer's gather clocks and the rows its pass walks, per step
    (``[T, B]`` each; docs/gateware.md, "The SSM unit", as
    :func:`..contract.harness.expected_counters` counts them)."""
    from ..contract.compiler import ssm_skips

    shape = tuple(x.shape[:2])
    gather = torch.full(shape, 10, dtype=I64)
    for what, op in layer.operands().items():
        if op.is_const:
            gather += layer.n if what != "v" else layer.m
        else:
            gather += _events(net, x, trace, op.source, op.recurrent)
    if layer.mode == "selective":
        gather += _events(net, x, trace, layer.gate, layer.gate_recurrent)
    rows = torch.full(shape, layer.n, dtype=I64)
    if ssm_skips(net, layer):
        def values(op):
            if op.is_const:
                return op.const.expand(*shape, -1)
            v = x if op.source == INPUT else trace.outputs[op.source]
            return torch.cat([torch.zeros_like(v[:1]), v[:-1]]) if op.recurrent else v
        rows = ((values(layer.k) != 0) | (values(layer.q) != 0)).sum(-1)
    return gather, rows


def sample_clocks(net: Network, x: torch.Tensor, trace, config: CoreConfig,
                  timing: TimingProfile) -> torch.Tensor:
    """Clocks per sample, ``[B]``: every step's (:func:`step_clocks`) plus the first
    step's wait for its input events (later steps' inputs load while a step runs)."""
    first = (x[0] != 0).sum(-1) + FIRST_STEP
    return step_clocks(net, x, trace, config, timing).sum(0) + first


def task_inputs(net: Network, meta: dict, *, limit: int | None = None):
    """The test split of the model's task (``[T, B, D]``), or ``None`` when the model
    file names no task it can build."""
    from ..golden.train import TASKS, check_task_meta, task_data

    if meta.get("task") not in TASKS:
        return None
    try:
        check_task_meta(meta, "test", net)
        x, _ = task_data(meta, "test")
    except (ValueError, KeyError):
        return None
    return x if limit is None else x[:, :limit]


def _bound_inputs(net: Network, config: CoreConfig, timing: TimingProfile) -> dict:
    """Clocks per step from none to every input and neuron active (a model without
    task data), by the clock model on two synthetic steps."""
    x = torch.stack([torch.zeros(1, net.input_size, dtype=I64),
                     torch.ones(1, net.input_size, dtype=I64)], dim=1)

    class Busy:
        outputs = {layer.name: torch.stack([torch.zeros(1, layer.out_size, dtype=I64),
                                            torch.ones(1, layer.out_size, dtype=I64)], dim=1)
                   for layer in net.layers}
        spikes = outputs

    clocks = step_clocks(net, x, Busy, config, timing)[0]
    return {"min": int(clocks[0]), "max": int(clocks[1])}


# -------------------------------------------------------------------- report
def fit_board(net: Network, board: Board, per_sample: torch.Tensor | None = None,
              timesteps: int | None = None, fit: dict | None = None) -> dict:
    """One board's entry of :func:`fit_report`: ``per_sample``: the clocks of each
    task sample of ``timesteps`` steps on the board (:func:`sample_clocks`; ``None``:
    no task data, a bound per step instead); ``fit``: :func:`check_fit`'s, if known."""
    from .estimate import estimate_resources

    config, mhz = board.config, board.target_mhz
    fit = fit or check_fit(net, config)
    entry = {"board": board.name, "device": board.device, "family": board.family,
             "lanes": config.lanes, "clock_mhz": mhz, "timing": board.timing.value, **fit,
             "resources": estimate_resources(board, config), "clocks": None}
    if not fit["fits"]:
        return entry
    if per_sample is None:
        bound = _bound_inputs(net, config, board.timing)
        entry["clocks"] = {
            "kind": "bound", "per_step": bound,
            "seconds_per_step": {k: v / (mhz * 1e6) for k, v in bound.items()},
            "basis": "no task data in the model file: from no input to every input and "
                     "neuron active in a step"}
        return entry
    mean = float(per_sample.double().mean())
    entry["clocks"] = {
        "kind": "estimate", "per_sample": round(mean, 1),
        "per_step": round(mean / timesteps, 1), "max_per_sample": int(per_sample.max()),
        "seconds_per_sample": mean / (mhz * 1e6), "samples": len(per_sample),
        "timesteps": timesteps,
        "basis": f"the core's clock model on the golden model's run of the task's "
                 f"{len(per_sample)} test samples (equal to the core's clock counts when "
                 f"its output is not held back); the link's transfer time is not included"}
    return entry


def fit_report(model: Path, boards: list[Board], *, limit: int | None = None,
               values: int = 1 << 22) -> dict:
    """The model file on each of ``boards`` (see the module docs); ``limit``: at most
    that many task samples for the clocks, run a few at a time (as many as record
    about ``values`` values)."""
    from ..golden.modelfile import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (small tensors: several threads only wait on each other)
    try:
        net, meta = load_model(model)
        fits = {}  # (boards share configurations)
        for board in boards:
            if board.config not in fits:
                fits[board.config] = check_fit(net, board.config)
        fitting = {(b.config, b.timing) for b in boards if fits[b.config]["fits"]}
        x = task_inputs(net, meta, limit=limit) if fitting else None
        clocks = {key: [] for key in fitting}
        if x is not None:
            neurons = net.input_size + sum(layer.out_size for layer in net.layers)
            batch = max(1, values // max(1, int(x.shape[0]) * neurons))
            for at in range(0, int(x.shape[1]), batch):
                xb = x[:, at:at + batch]
                trace = net.run(xb)
                for config, timing in fitting:
                    clocks[config, timing].append(sample_clocks(net, xb, trace, config,
                                                                timing))
        return {"model": str(model), "task": meta.get("task") if x is not None else None,
                "boards": [fit_board(net, b, torch.cat(clocks[b.config, b.timing])
                                     if x is not None and fits[b.config]["fits"] else None,
                                     x is not None and int(x.shape[0]), fit=fits[b.config])
                           for b in boards]}
    finally:
        torch.set_num_threads(threads)
