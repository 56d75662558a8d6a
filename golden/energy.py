"""An energy ESTIMATE: operation counts times per-operation energies from a cited table.

This is not a measurement.  It multiplies what the network did (synaptic
accumulates, neuron updates, memory reads; from the golden model's run or from
the core's hardware counters) by per-operation energies of a 45 nm process, and
sets it next to the same network run as a dense, non-spiking network
(multiply-accumulates).  ``docs/energy.md`` gives the model in full.

Table: M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, pp. 10-14 (45 nm CMOS, 0.9 V), the figures most SNN papers quote.
Integer add 0.03 / 0.05 / 0.1 pJ (8 / 16 / 32 bit), integer multiply 0.2 / 3.1 pJ
(8 / 32 bit), 32-bit float add 0.9 pJ and multiply 3.7 pJ, SRAM read of 64 bits
10 / 20 / 100 pJ (8 KB / 32 KB / 1 MB).  An operation of a width between table
entries uses the next wider entry (conservative); a memory access of ``b`` bits
costs ``b / 64`` of a 64-bit read of the SRAM size class that holds the data.

Counts (``counts`` argument of :func:`estimate`, summed over the samples)::

    {"source": "golden" | "rtl-counters" | ..., "samples": B, "timesteps": T,
     "layers": {name: {"events": e, "input_events": ie, "spikes": s}}}

``events``: events delivered to the layer over all its edges, of which
``input_events`` came from a multi-bit (``int``) network input; ``synops`` /
``input_synops`` (optional): the synaptic operations they caused (each event
times its fan-out, :meth:`.projection.Projection.fanout`: the layer's size for
a dense edge, the kernel taps it reaches for a convolution); without them
``synops = events x size`` (the hardware counters, dense edges only).  The
input's operations are multiply-accumulates rather than accumulates.  The
dense equivalent does every connection once per pass (a convolution's
connections, not its shared kernel's size).  Neuron updates are ``size x T``
per sample for every LIF layer (the core updates every neuron every step).

Baselines (``baselines`` of :func:`estimate`; ``docs/energy.md`` in full), the
same layers and edges run as a non-spiking network, ``P`` passes per sample:

* ``ann_int8``: dense, 8-bit activations: every connection a MAC once per pass
  (``w_bits`` multiply, ``acc_bits`` add, ``w_bits`` weight read), every
  activation computed (an add) and written and read once (8 bits each way).
* ``ann_lowbit``: the same with ``a = ceil(log2(T + 1))``-bit activations (Yan,
  Bai, Tang, Wong, arXiv:2409.08290: a rate-coded SNN of ``T`` steps carries
  ``T + 1`` spike-count levels per neuron, the representational capacity of an
  ``a``-bit quantized ANN); the multiply is ``max(w_bits, a)`` wide.
* ``ann_zero_skip``: ``ann_lowbit`` skipping zero activations, as sparse ANN
  accelerators do: a MAC (and its weight read) only for a nonzero source
  activation, ``macs = sum_edges sum_j [a_j != 0] * fanout_j``; activations
  stored zero-value compressed (a 1-bit mask per activation plus ``a`` bits per
  nonzero one, written and read once).  The nonzero activations are measured:
  the SNN's spike count of a neuron over the window *is* its equivalent
  quantized ANN's activation (Yan et al.), so ``counts_from_trace`` records
  which (sample, neuron) pairs are nonzero over the window (``window_synops``,
  ``active``, ``input_active``).  Counts without them (hardware counters) fall
  back to an assumption that ``zeros_from`` names.

Break-even firing rate: with ``r`` the spikes per neuron per step over the
neurons whose spikes are events (the input channels of a ``spike`` input and
every spiking layer), the SNN's estimate splits into ``E_fixed`` (neuron
updates, SSM work, an int input's MACs) and ``E_spike`` (accumulates, their
weight reads and spike routing: proportional to the spikes), so with every
spike train scaled by ``r / r0`` (``r0`` the measured rate)::

    E_snn(r)  = E_fixed + E_spike * r / r0
    r_break   = r0 * (E_baseline - E_fixed) / E_spike     (0 when E_fixed >= E_baseline)

golden/ stays pure: the hardware counters arrive as plain dicts
(:func:`counts_from_counters`), never through gateware imports.
"""

from __future__ import annotations

import torch

from .integer import INPUT, Network, Trace

__all__ = ["TABLE", "SOURCE", "BASELINES", "YAN", "activation_bits", "counts_from_trace",
           "counts_from_run", "add_counts", "counts_from_counters", "estimate", "estimate_run",
           "summary_line"]

SOURCE = {
    "citation": "M. Horowitz, \"Computing's energy problem (and what we can do about it)\", "
                "IEEE ISSCC 2014, Digest of Technical Papers, pp. 10-14",
    "process": "45 nm CMOS, 0.9 V",
}
TABLE = {
    "int_add": {8: 0.03, 16: 0.05, 32: 0.1},
    "int_mult": {8: 0.2, 32: 3.1},
    "fp32_add": 0.9,
    "fp32_mult": 3.7,
    "sram_read_64b": {8 * 1024: 10.0, 32 * 1024: 20.0, 1024 * 1024: 100.0},
}
"""Energies in pJ (per operation, or per 64-bit SRAM read by SRAM size in bytes)."""
YAN = ("Z. Yan, Z. Bai, K. Tang, W.-F. Wong, \"Reconsidering the energy efficiency of spiking "
       "neural networks\", arXiv:2409.08290")
BASELINES = {
    "ann_int8": "dense ANN, 8-bit activations",
    "ann_lowbit": "dense ANN, ceil(log2(T+1))-bit activations (Yan et al.)",
    "ann_zero_skip": "zero-skipping ANN, ceil(log2(T+1))-bit activations, zero activations "
                     "skipped",
}
"""The non-spiking baselines of :func:`estimate` (module docstring)."""
_ASSUMED = ("assumed: a layer's window activations are nonzero for spikes / T of them (the "
            "fewest its spike count allows, so the cheapest zero-skipping baseline); the "
            "counts carry no per-neuron window activity")


def activation_bits(steps: int) -> int:
    """``ceil(log2(steps + 1))``, exactly (``steps.bit_length()``): the bits of a
    quantized activation with the ``steps + 1`` levels of a spike count over
    ``steps`` steps (Yan et al.)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, not {steps!r}")
    return steps.bit_length()


def _width(table: dict[int, float], bits: int) -> float:
    for width in sorted(table):
        if bits <= width:
            return table[width]
    return table[max(table)] * bits / max(table)  # beyond the table: linear in width


def _sram_per_bit(total_bytes: float) -> float:
    return _width(TABLE["sram_read_64b"], max(1, int(total_bytes))) / 64.0


def counts_from_trace(net: Network, x: torch.Tensor, trace: Trace) -> dict:
    """Per-layer counts of a golden run (``trace = net.run(x)``, recorded).

    Besides the SNN's counts, the window activity of the equivalent quantized ANN
    (its activation is a neuron's output over the whole window, nonzero when it
    is nonzero at any step): per layer ``window_synops`` (MACs of one
    zero-skipping pass: nonzero window sources times their fan-out) and, for a
    spiking layer, ``active`` (nonzero (sample, neuron) window outputs); overall
    ``input_nonzero`` (nonzero input values, all steps) and ``input_active``
    (nonzero (sample, channel) window inputs)."""
    x = net.check_input(x)
    steps, batch = int(x.shape[0]), int(x.shape[1])
    layers = {}
    for layer in net.layers:
        if layer.kind != "lif":
            continue
        events = input_events = synops = input_synops = window = 0
        for proj in layer.inputs:
            if proj.source == INPUT:
                hits = x != 0
            else:
                src = trace.outputs[proj.source]
                hits = src[:-1] != 0 if proj.recurrent else src != 0
            fanout = proj.fanout()
            n = int(hits.sum())
            ops = int((hits.to(torch.int64) @ fanout).sum())
            window += int((hits.any(dim=0).to(torch.int64) @ fanout).sum())
            events += n
            synops += ops
            if proj.source == INPUT and net.input_kind == "int":
                input_events += n
                input_synops += ops
        spikes = int(trace.spikes[layer.name].sum()) if layer.spiking else 0
        layers[layer.name] = {"events": events, "input_events": input_events, "spikes": spikes,
                              "synops": synops, "input_synops": input_synops,
                              "window_synops": window}
        if layer.spiking:
            layers[layer.name]["active"] = int((trace.spikes[layer.name] != 0).any(dim=0).sum())
    ssm = {layer.name: {"cells": layer.n * layer.m} for layer in net.layers if layer.kind == "ssm"}
    out = {"source": "golden", "samples": batch, "timesteps": steps,
           "input_nonzero": int((x != 0).sum()), "input_active": int((x != 0).any(dim=0).sum()),
           "layers": layers}
    if ssm:
        out["ssm_ops"] = int(trace.ssm_ops.sum())
    return out


def add_counts(total: dict | None, counts: dict) -> dict:
    """``total`` (updated in place) plus the counts of more samples of the same network
    (``None``: start from ``counts``)."""
    if total is None:
        return counts
    for key in ("samples", "input_nonzero", "input_active", "ssm_ops"):
        if key in counts:
            total[key] += counts[key]
    for name, c in counts["layers"].items():
        for key, value in c.items():
            total["layers"][name][key] += value
    return total


def counts_from_run(net: Network, x: torch.Tensor, *, values: int = 1 << 22) -> dict:
    """:func:`counts_from_trace` of a golden run of ``x``, run a few samples at a time:
    as many as record about ``values`` (step, sample, neuron) values (the traces of a
    whole split need not fit in memory)."""
    neurons = net.input_size + sum(layer.out_size for layer in net.layers)
    batch = max(1, values // max(1, int(x.shape[0]) * neurons))
    total = None
    for start in range(0, max(1, int(x.shape[1])), batch):
        xb = x[:, start:start + batch]
        total = add_counts(total, counts_from_trace(net, xb, net.run(xb)))
    return total


def counts_from_counters(net: Network, counters: dict, x: torch.Tensor,
                         source: str = "rtl-counters", *, golden: dict | None = None) -> dict:
    """Per-layer counts from the core's hardware counters.

    ``counters``: ``{layer: {"events", "spikes", ...}}`` summed over the samples of
    ``x`` (``[T, B, input_size]``, what was run); ``x`` gives the input events, so
    the multiply-accumulates of an int input are split off exactly, and the
    input's window activity.  The counters count no per-neuron window activity of
    the layers: ``golden`` (:func:`counts_from_trace` of the same ``x``: the core
    is bit-exact) supplies it; without it the estimate assumes it (``_ASSUMED``)."""
    x = net.check_input(x)
    steps, batch = int(x.shape[0]), int(x.shape[1])
    nonzero = x != 0
    in_events = int(nonzero.sum()) if net.input_kind == "int" else 0
    layers = {}
    for layer in net.layers:
        if layer.kind != "lif":
            continue
        if layer.name not in counters:
            raise ValueError(f"the counters have no entry for layer {layer.name!r}")
        c = counters[layer.name]
        from_input = sum(1 for p in layer.inputs if p.source == INPUT) * in_events
        layers[layer.name] = {"events": int(c["events"]), "input_events": from_input,
                              "spikes": int(c["spikes"])}
        if golden is not None:
            g = golden["layers"][layer.name]
            layers[layer.name].update({k: g[k] for k in ("window_synops", "active") if k in g})
    return {"source": source, "samples": batch, "timesteps": steps,
            "input_nonzero": int(nonzero.sum()), "input_active": int(nonzero.any(dim=0).sum()),
            "layers": layers}


def estimate(net: Network, counts: dict, *, ann_passes: int | None = None) -> dict:
    """The energy estimate of one run, JSON-able (see the module docstring).

    ``ann_passes``: dense passes per sample of the non-spiking equivalent; by
    default 1 for a network without recurrent edges or SSM layers (a static input
    needs one pass), otherwise ``T`` (one per step).
    Returns ``estimate`` (True), ``label``, ``source`` (citation, process, table),
    ``snn`` and ``ann`` (per-sample counts and pJ by category, ``total_pj``),
    ``layers``, ``ratio = snn.total_pj / ann.total_pj`` (the dense network with the
    same integer weights) and ``ratio_fp32 = snn.total_pj / ann.fp32_total_pj``
    (a float32 dense network, the usual comparison in SNN papers); ``baselines``
    (``ann_int8`` = ``ann``, ``ann_lowbit``, ``ann_zero_skip``: each ``energy_pj``,
    ``total_pj``, ``ratio`` and ``break_even_firing_rate``), ``firing_rate`` (the
    measured ``r0``, None when the counts lack ``input_nonzero`` for a spike
    input), ``firing_rates`` per source and ``break_even_firing_rate`` per baseline
    (None without ``r0`` or without spikes to scale).
    """
    fmt = net.fmt
    samples, steps = int(counts["samples"]), int(counts["timesteps"])
    if samples < 1 or steps < 1:
        raise ValueError(f"counts need samples >= 1 and timesteps >= 1, not {samples}, {steps}")
    lif = [layer for layer in net.layers if layer.kind == "lif"]
    recurrent = any(p.recurrent for layer in lif for p in layer.inputs) or \
        len(lif) != len(net.layers)
    if ann_passes is None:
        ann_passes = steps if recurrent else 1
    weight_bits = sum(p.weight.numel() for layer in lif for p in layer.inputs) * fmt.w_bits
    # Per neuron: u, theta and bias (u_bits each) and alpha (F + 1 bits).
    state_bits = sum(layer.size for layer in lif) * (3 * fmt.u_bits + fmt.frac_bits + 1)
    w_pj = fmt.w_bits * _sram_per_bit(weight_bits / 8)
    add_acc = _width(TABLE["int_add"], fmt.acc_bits)
    add_u = _width(TABLE["int_add"], fmt.u_bits)
    mult_in = _width(TABLE["int_mult"], max(fmt.w_bits, fmt.in_bits))
    mult_leak = _width(TABLE["int_mult"], fmt.u_bits)
    state_pj_bit = _sram_per_bit(state_bits / 8)
    # A neuron update: leak multiply, two adds (current, bias), the threshold compare;
    # read u, alpha, theta, bias and write u.
    neuron_bits = 2 * fmt.u_bits + (fmt.frac_bits + 1) + 2 * fmt.u_bits
    neuron_pj = mult_leak + 3 * add_u + neuron_bits * state_pj_bit
    event_bits = 16  # one queued address event: written once, read once
    layers, snn = {}, dict.fromkeys(("synaptic_accumulates", "synaptic_macs", "weight_reads",
                                     "neuron_updates", "spikes"), 0)
    energy = dict.fromkeys(("synaptic", "weights", "neurons", "routing"), 0.0)
    spike_driven = 0.0
    for layer in lif:
        c = counts["layers"].get(layer.name)
        if c is None:
            raise ValueError(f"the counts have no entry for layer {layer.name!r}")
        syn = int(c["synops"]) if "synops" in c else int(c["events"]) * layer.size
        macs = int(c["input_synops"]) if "input_synops" in c \
            else int(c.get("input_events", 0)) * layer.size
        acc = syn - macs
        updates = layer.size * steps * samples
        e = {"synaptic": acc * add_acc + macs * (mult_in + add_acc), "weights": syn * w_pj,
             "neurons": updates * neuron_pj,
             "routing": int(c["spikes"]) * 2 * event_bits * state_pj_bit}
        spike_driven += acc * (add_acc + w_pj) + e["routing"]
        layers[layer.name] = {"synaptic_ops": syn / samples, "neuron_updates": updates / samples,
                              "spikes": int(c["spikes"]) / samples,
                              "energy_pj": sum(e.values()) / samples}
        snn["synaptic_accumulates"] += acc
        snn["synaptic_macs"] += macs
        snn["weight_reads"] += syn
        snn["neuron_updates"] += updates
        snn["spikes"] += int(c["spikes"])
        for k, v in e.items():
            energy[k] += v
    ssm_layers = [layer for layer in net.layers if layer.kind == "ssm"]
    if ssm_layers:
        # Event-driven writes / reads (nonzero k, q) plus the decay of every cell every step.
        decays = sum(layer.n * layer.m for layer in ssm_layers) * steps * samples
        add_s = _width(TABLE["int_add"], fmt.s_bits)
        energy["ssm"] = int(counts.get("ssm_ops", 0)) * (mult_in + add_s) \
            + decays * (_width(TABLE["int_mult"], fmt.s_bits) + add_s)
        snn["ssm_ops"] = int(counts.get("ssm_ops", 0))
        snn["ssm_decays"] = decays
    snn = {k: v / samples for k, v in snn.items()}
    snn_pj = {k: v / samples for k, v in energy.items()}
    snn_total = sum(snn_pj.values())
    spike_driven /= samples
    # The dense equivalent: every weight once per pass (an int8-style MAC: a
    # w_bits multiply and an acc_bits add), every activation written and read once.
    macs = sum(int(p.fanout().sum()) for layer in lif for p in layer.inputs) * ann_passes
    neurons = sum(layer.size for layer in lif) * ann_passes
    ssm_cells = sum(layer.n * layer.m for layer in net.layers if layer.kind == "ssm")
    mac_pj = _width(TABLE["int_mult"], fmt.w_bits) + add_acc
    ann_pj = {"macs": macs * mac_pj, "weights": macs * w_pj,
              "activations": neurons * (add_u + 2 * 8 * state_pj_bit)}
    ssm_pj = 2 * ssm_cells * ann_passes * (mult_in + add_acc)
    if ssm_cells:
        ann_pj["ssm"] = ssm_pj
    ann_total = sum(ann_pj.values())
    fp32 = macs * (TABLE["fp32_mult"] + TABLE["fp32_add"] + 32 * _sram_per_bit(
        weight_bits / fmt.w_bits * 4))
    a_bits = activation_bits(steps)
    mac_low = _width(TABLE["int_mult"], max(fmt.w_bits, a_bits)) + add_acc
    low_pj = {"macs": macs * mac_low, "weights": macs * w_pj,
              "activations": neurons * (add_u + 2 * a_bits * state_pj_bit)}
    skip = _zero_skip(net, counts, lif, ann_passes, macs)
    skip_pj = {"macs": skip["macs"] * mac_low, "weights": skip["macs"] * w_pj,
               "activations": neurons * add_u + 2 * (neurons + skip.pop("active") * a_bits)
               * state_pj_bit}
    if ssm_cells:
        low_pj["ssm"] = skip_pj["ssm"] = ssm_pj
    rate = _firing_rates(net, counts, lif, steps, samples)
    fixed = snn_total - spike_driven

    def break_even(total: float) -> float | None:
        if rate["firing_rate"] is None or spike_driven <= 0:
            return None
        return max(0.0, rate["firing_rate"] * (total - fixed) / spike_driven)

    baselines = {}
    for key, parts, extra in (
            ("ann_int8", ann_pj, {"activation_bits": 8, "macs": macs}),
            ("ann_lowbit", low_pj, {"activation_bits": a_bits, "macs": macs,
                                    "reference": YAN}),
            ("ann_zero_skip", skip_pj, {"activation_bits": a_bits, **skip})):
        total = sum(parts.values())
        baselines[key] = {"description": BASELINES[key], "passes": ann_passes, **extra,
                          "energy_pj": parts, "total_pj": total,
                          "ratio": snn_total / total if total else None,
                          "break_even_firing_rate": break_even(total)}
    return {
        "estimate": True,
        "label": "ESTIMATE: operation counts x per-operation energies (45 nm table), not a "
                 "measurement",
        "source": {**SOURCE, "table_pj": {k: ({str(w): e for w, e in v.items()}
                                              if isinstance(v, dict) else v)
                                          for k, v in TABLE.items()},
                   "baselines": f"{YAN} (the ceil(log2(T+1))-bit activation mapping)"},
        "counts_source": counts.get("source", "unknown"),
        "samples": samples,
        "timesteps": steps,
        "per_op_pj": {"synaptic_accumulate": add_acc, "synaptic_mac": mult_in + add_acc,
                      "weight_read": w_pj, "neuron_update": neuron_pj,
                      "spike_routing": 2 * event_bits * state_pj_bit, "ann_mac": mac_pj,
                      "ann_lowbit_mac": mac_low, "activation_bit": state_pj_bit,
                      "activation_add": add_u},
        "snn": {"per_sample": snn, "energy_pj": snn_pj, "total_pj": snn_total,
                "fixed_pj": fixed, "spike_driven_pj": spike_driven},
        "ann": {"passes": ann_passes, "macs": macs, "energy_pj": ann_pj, "total_pj": ann_total,
                "fp32_total_pj": fp32},
        "baselines": baselines,
        **rate,
        "break_even_firing_rate": {k: b["break_even_firing_rate"] for k, b in baselines.items()},
        "layers": layers,
        "ratio": snn_total / ann_total if ann_total else None,
        "ratio_fp32": snn_total / fp32 if fp32 else None,
    }


def _zero_skip(net: Network, counts: dict, lif: list, passes: int, dense_macs: int) -> dict:
    """The zero-skipping baseline's MACs and nonzero activations per sample (module
    docstring): one pass over the window (``passes == 1``) skips the (sample,
    neuron) pairs silent over the whole window; ``passes`` per-step passes skip
    the zeros of each step (the SNN's own events, scaled by ``passes / T``)."""
    samples, steps = int(counts["samples"]), int(counts["timesteps"])
    layer_counts = [counts["layers"][layer.name] for layer in lif]
    measured = passes == 1 and all("window_synops" in c and ("active" in c or not layer.spiking)
                                   for layer, c in zip(lif, layer_counts, strict=True))
    nonzero, active, size = 0.0, 0.0, {"input": net.input_size}
    for layer, c in zip(lif, layer_counts, strict=True):
        syn = int(c["synops"]) if "synops" in c else int(c["events"]) * layer.size
        if not layer.spiking:
            active += layer.size * samples * (1 if passes == 1 else steps)
        elif passes == 1:
            active += c["active"] if measured else int(c["spikes"]) / steps
        else:
            active += int(c["spikes"])
        size[layer.name] = layer.size
        if passes == 1:
            nonzero += c["window_synops"] if measured else syn / steps
        else:
            nonzero += syn
    scale = 1.0 / samples if passes == 1 else passes / (steps * samples)
    # Zero fractions per source, counted as the MACs are: of the window's
    # activations (measured), else of the steps' outputs (per step, or assumed).
    nz = {"input": counts.get("input_active" if measured else "input_nonzero")}
    nz.update({layer.name: c.get("active") if measured else int(c["spikes"])
               for layer, c in zip(lif, layer_counts, strict=True) if layer.spiking})
    values = samples * (1 if measured else steps)
    zero = {k: None if v is None else 1.0 - v / (size[k] * values) for k, v in nz.items()}
    macs = nonzero * scale
    return {"macs": macs, "macs_skipped": 1.0 - macs / dense_macs if dense_macs else 0.0,
            "zero_fraction": zero, "active": active * scale,
            "zeros_from": ("measured: the golden run's spike counts over the window (the "
                           "equivalent quantized ANN's activations, Yan et al.)"
                           if measured else _ASSUMED) if passes == 1 else
            "measured: each step's zero outputs (the SNN's own events)"}


def _firing_rates(net: Network, counts: dict, lif: list, steps: int, samples: int) -> dict:
    """``firing_rate`` (spikes per neuron per step over the input channels of a spike
    input and every spiking layer; None when a spike input's ``input_nonzero`` is
    not in the counts) and ``firing_rates`` per source."""
    rates, spikes, neurons = {}, 0, 0
    if net.input_kind == "spike":
        n = counts.get("input_nonzero")
        rates["input"] = None if n is None else n / (net.input_size * steps * samples)
        spikes, neurons = (None if n is None else n), net.input_size
    for layer in lif:
        if layer.spiking:
            s = int(counts["layers"][layer.name]["spikes"])
            rates[layer.name] = s / (layer.size * steps * samples)
            spikes = None if spikes is None else spikes + s
            neurons += layer.size
    rate = None if spikes is None or not neurons else spikes / (neurons * steps * samples)
    return {"firing_rate": rate, "firing_rates": rates}


def estimate_run(net: Network, x: torch.Tensor, *, counters: dict | None = None,
                 trace: Trace | None = None, source: str = "rtl-counters",
                 ann_passes: int | None = None) -> dict:
    """The estimate of running ``x`` (``[T, B, input_size]``): from the hardware
    ``counters`` (per layer, summed over the samples) when given, else from the
    golden ``trace`` of ``x`` (run here if not given).  With both, the trace
    supplies the window activity the counters do not count (the zero-skipping
    baseline's zeros; the SNN's figures are the counters').  ``ann_passes``: as
    :func:`estimate`'s."""
    if counters is not None:
        golden = None if trace is None else counts_from_trace(net, x, trace)
        counts = counts_from_counters(net, counters, x, source=source, golden=golden)
    else:
        counts = counts_from_trace(net, x, net.run(x) if trace is None else trace)
    return estimate(net, counts, ann_passes=ann_passes)


def summary_line(e: dict) -> str:
    """One line of an estimate (:func:`estimate`) for the CLI: the SNN, each baseline
    with its ratio and break-even firing rate, the float32 network."""
    def rate(value) -> str:
        return "n/a" if value is None else f"{value:.3g}"

    parts = [f"{key} {b['total_pj'] / 1000:.4g} nJ (SNN/ANN {b['ratio']:.3g}, break-even "
             f"rate {rate(b['break_even_firing_rate'])})" for key, b in e["baselines"].items()]
    return (f"energy ESTIMATE ({e['source']['process']}, Horowitz ISSCC 2014): SNN "
            f"{e['snn']['total_pj'] / 1000:.4g} nJ/sample at firing rate "
            f"{rate(e['firing_rate'])}; " + "; ".join(parts) + f"; float32 ANN "
            f"{e['ann']['fp32_total_pj'] / 1000:.4g} nJ (SNN/ANN {e['ratio_fp32']:.3g})")
