"""A task model's test split (or any model's data) through a device, checked
against the golden model sample by sample and step by step (the device-side twin of
``sim/evaluate.py``, which drives the RTL directly)."""

from __future__ import annotations

import time

import torch

from .device import Device

__all__ = ["evaluate_on_device"]


def evaluate_on_device(dev: Device, net, meta: dict, *, split: str = "test",
                       limit: int | None = None, membranes: bool = True,
                       progress: bool = False, data: tuple | None = None,
                       readout: str | None = None) -> dict:
    """Load ``net`` onto ``dev`` and stream ``split`` of the task ``meta`` names, or
    ``data`` (``(x [T, B, input_size], labels [B] or None)``), or their first
    ``limit`` samples.

    ``bit_exact`` is true only if, for every sample and every step, the output
    layer's values (membranes, or an SSM's y) and spikes equal the golden
    model's, and (with ``membranes``) every layer's state (membranes, SSM state)
    read back after each sample equals the golden final state.  ``agreement`` is
    the fraction of samples whose decision (``readout``, by default
    ``meta["readout"]``; :func:`~spikeforge.golden.quantize.predict`) equals the
    golden model's; ``accuracy_device`` / ``accuracy_golden`` are None without
    labels.  ``counters`` sums the device's hardware counters over the samples;
    ``energy`` is the estimate from them (:mod:`spikeforge.golden.energy`)."""
    from .golden.train import task_data

    x, y = task_data(meta, split) if data is None else data
    if limit is not None:
        x, y = x[:, :limit], None if y is None else y[:limit]
    return _stream(dev, net, x, y, readout or meta["readout"], name=meta.get("task"),
                   membranes=membranes, progress=progress)


def _stream(dev: Device, net, x, y, readout: str, *, name, membranes: bool,
            progress: bool) -> dict:
    from tqdm import tqdm

    from .contract.harness import expected_from_trace
    from .golden.energy import estimate_run
    from .golden.quantize import predict

    steps, samples = int(x.shape[0]), int(x.shape[1])
    load = dev.load(net)
    trace = net.run(x)
    got = torch.zeros_like(trace.outputs[net.output])
    mismatches: list[int] = []
    totals: dict = {}
    start = time.monotonic()
    bar = tqdm(total=samples, desc=f"{name or 'model'} on {dev.url}", unit="sample",
               disable=not progress, leave=False)
    with bar:
        results = dev.stream((x[:, b] for b in range(samples)), membranes=membranes)
        for b, result in enumerate(results):
            got[:, b] = result.outputs
            want_steps, want_state = expected_from_trace(net, trace, b)
            same = (result.values.tolist() == [s["values"] for s in want_steps]
                    and result.spikes.tolist() == [s["out_spikes"] for s in want_steps]
                    and (not membranes or result.membranes == want_state))
            if not same:
                mismatches.append(b)
            _accumulate(totals, dev.counters())
            bar.update()
    seconds = time.monotonic() - start
    energy = estimate_run(net, x, counters=totals.get("layers", {}), trace=trace,
                          source="device-counters")
    pred_dev = predict(got, readout)
    pred_gold = predict(trace.outputs[net.output], readout)
    return {
        "task": name,
        "samples": samples,
        "timesteps": steps,
        "readout": readout,
        "accuracy_device": None if y is None else float((pred_dev == y).double().mean()),
        "accuracy_golden": None if y is None else float((pred_gold == y).double().mean()),
        "agreement": float((pred_dev == pred_gold).double().mean()),
        "bit_exact": not mismatches and torch.equal(got, trace.outputs[net.output]),
        "mismatched_samples": mismatches[:20],
        "words_loaded": load["words"],
        "seconds": seconds,
        "steps_per_second": samples * steps / seconds if seconds else None,
        "samples_per_second": samples / seconds if seconds else None,
        "counters": totals,
        "golden_synops": int(trace.synops.sum()),
        "energy": energy,
    }


def _accumulate(totals: dict, counters: dict) -> None:
    for key, value in counters.items():
        if isinstance(value, dict):
            _accumulate(totals.setdefault(key, {}), value)
        else:
            totals[key] = totals.get(key, 0) + value
