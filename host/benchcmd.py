"""``spikeforge bench``: speed and size figures as JSON (``--json``) or lines: the
golden model's speed; the core's clocks from its counters in Verilator (dense
load, the digits network by input density, the SSM unit, the link); the
end-to-end throughput through the simulated board; the sequence model's clocks
and energy per token beside a KV-cache transformer; the boards' builds.
"""

from __future__ import annotations

import sys

from .commands import EXIT_OK, _emit


def cmd_bench(args) -> int:
    from .demo import sequence_bench
    from .golden import bench

    result = bench.run(quick=args.quick)
    if not args.no_rtl:
        from .sim import bench as rtl_bench
        from .sim.verilator import have_verilator, missing_tools

        if have_verilator():
            result["rtl"] = rtl_bench.run(
                progress=lambda msg: print(msg, file=sys.stderr) if not args.quiet else None)
            from .demo import bench as device_bench

            if not args.quiet:
                print("bench: end-to-end samples/s through the simulated board (TCP)",
                      file=sys.stderr)
            result["device"] = device_bench()
        else:
            result["rtl"] = {"skipped": "missing: " + ", ".join(missing_tools())}
    if not args.quiet:
        print("bench: the language model's clocks and energy per token", file=sys.stderr)
    result["sequence"] = sequence_bench()
    if not args.no_rtl and not args.no_boards and "skipped" not in result["rtl"]:
        from .boards import bench as boards_bench

        result["boards"] = boards_bench.run(
            args.boards, progress=lambda msg: print(msg, file=sys.stderr) if not args.quiet
            else None)

    def lines(r):
        yield from bench.describe(r)
        if "rtl" in r and "skipped" not in r["rtl"]:
            yield "NPU core (RTL counters, Verilator):"
            yield from rtl_bench.describe(r["rtl"])
        elif "rtl" in r:
            yield f"RTL benchmarks skipped ({r['rtl']['skipped']})"
        if "device" in r:
            for task in ("digits", "recall"):
                d = r["device"][task]
                yield (f"device {r['device']['device']}, {task}: {d['samples_per_second']:.1f} "
                       f"samples/s, {d['steps_per_second']:.0f} steps/s end to end "
                       f"({d['clocks_per_step']:.0f} clocks per step), bit-exact: "
                       f"{d['bit_exact']}")
            if r["device"].get("sim_clocks_per_second"):
                yield (f"simulated board: {r['device']['sim_clocks_per_second'] / 1e6:.2f} M "
                       f"clocks/s on its default configuration")
        yield from _sequence_lines(r["sequence"])
        if "boards" in r:
            yield "Boards (open-toolchain builds; synaptic ops/s = dense ops/clock x fmax):"
            yield from boards_bench.describe(r["boards"])

    _emit(result, args.json, lines)
    return EXIT_OK


def _sequence_lines(s: dict):
    e = s["energy"]
    clocks = ", ".join(f"{name} {c['clocks_per_token']:.0f}"
                       + (f" ({c['us_per_token']:.2f} us)" if "us_per_token" in c else "")
                       for name, c in s["clocks"].items())
    yield f"language model {s['model']}: clocks per token (core's clock model): {clocks}"
    yield (f"  energy per token (ESTIMATE): {e['snn_pj_per_token']:.0f} pJ, of which the SSM "
           f"{e['ssm_pj_per_token']:.0f}; a KV-cache transformer of the same width: "
           + ", ".join(f"{r['transformer_pj_per_token']:.0f} pJ at context {r['context']} "
                       f"(ratio {r['ratio']:.3f})" for r in e["contexts"])
           + f"; attention costs more than the SSM from context {e['crossover_context']}")
