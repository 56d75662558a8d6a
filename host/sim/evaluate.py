"""A task model's test split through the core on Verilator, checked against the
golden model sample by sample and step by step."""

from __future__ import annotations

import torch

from ..contract.compiler import compile_network
from ..contract.config import COUNTERS, CoreConfig, Region
from ..contract.harness import decode_membranes, decode_step, expected_from_trace, membrane_reads
from ..golden.integer import Network
from ..golden.quantize import predict
from ..golden.train import task_data
from .vsim import Read, VerilatedCore

__all__ = ["evaluate_on_rtl"]


def evaluate_on_rtl(net: Network, meta: dict, config: CoreConfig, *, split: str = "test",
                    limit: int | None = None) -> dict:
    """Run every sample of ``split`` (or the first ``limit``) on the RTL.

    ``bit_exact`` is true only if every spike of every layer and every output
    value of every step of every sample, and every layer's membranes after each
    sample, equal the golden model's.
    """
    image = compile_network(net, config)
    x, y = task_data(meta, split)
    if limit is not None:
        x, y = x[:, :limit], y[:limit]
    steps, samples = x.shape[0], x.shape[1]
    reads = membrane_reads(net, image)
    # The per-layer counters of each sample, read before the next reset clears them.
    counter_reads = [config.address(Region.COUNTERS, 0,
                                    image.layer_index[layer.name] * len(COUNTERS) + i)
                     for layer in net.layers for i in range(len(COUNTERS))]
    program = []
    for b in range(samples):
        program.append(None)
        program += x[:, b].tolist()
        program.append(Read(reads + counter_reads))  # membranes and counters after the sample
    result = VerilatedCore(config).run(image, program, read_counters=False)
    trace = net.run(x)  # one golden run for every sample's expectations
    mismatches = []
    counters = {layer.name: dict.fromkeys(COUNTERS, 0) for layer in net.layers}
    per = len(reads) + len(counter_reads)
    rtl_out = torch.zeros(steps, samples, net.layer(net.output).out_size, dtype=torch.int64)
    for b in range(samples):
        got = [decode_step(r, net, image) for r in result.steps[b * steps:(b + 1) * steps]]
        want, want_membranes = expected_from_trace(net, trace, b)
        words = result.reads[b * per:b * per + len(reads)]
        values = iter(result.reads[b * per + len(reads):(b + 1) * per])
        for layer in net.layers:
            for name in COUNTERS:
                counters[layer.name][name] += next(values)
        if got != want or decode_membranes(words, net, image) != want_membranes:
            mismatches.append(b)
        for t, step in enumerate(got):
            rtl_out[t, b] = torch.tensor(step["values"] if step["values"][0] is not None
                                         else step["out_spikes"])
    golden = trace.outputs[net.output]
    pred_rtl = predict(rtl_out, meta["readout"])
    pred_golden = predict(golden, meta["readout"])
    return {
        "samples": samples,
        "accuracy_rtl": float((pred_rtl == y).double().mean()),
        "accuracy_golden": float((pred_golden == y).double().mean()),
        "bit_exact": not mismatches,
        "mismatched_samples": mismatches[:20],
        "counters": counters,
        "clocks": result.clocks,
        "clocks_per_step": result.clocks / (samples * steps),
        "sim_seconds": result.seconds,
        "sim_clocks_per_second": result.clocks / result.seconds if result.seconds else None,
    }
