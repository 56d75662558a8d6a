"""Per-board benchmarks: a real build (utilization, fmax, build time) and the
core's dense synaptic throughput from its own counters (Verilator) on the
board's configuration, so ``synops_per_second = synops_per_cycle x fmax``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .build import build
from .defs import board_named

__all__ = ["run", "describe", "DEFAULT_BOARDS"]

DEFAULT_BOARDS = ("icebreaker",)  # the ulx3s-85f build takes 8-25 min (docs/boards.md)


def board_bench(name: str, progress=print, out: Path | None = None) -> dict:
    from ..sim.bench import dense_on

    board = board_named(name)
    out = out or Path(tempfile.mkdtemp(prefix=f"spikeforge-bench-{name}-"))
    # The shipped bitstream (the SoC top: link, engine and core): its fmax and LUTs
    # per lane (the whole design / P).
    report = build(board, out=out, progress=progress)
    progress(f"{name}: dense load on its configuration (Verilator counters)")
    dense = dense_on(board.config)
    fmax = min(report["fmax_mhz"].values())
    return {
        "board": name, "top": report["top"], "lanes": board.config.lanes, "fmax_mhz": fmax,
        "target_mhz": board.target_mhz, "timing_met": report["timing_met"],
        "synops_per_cycle": dense["synops_per_cycle"],
        "synops_per_second": dense["synops_per_cycle"] * fmax * 1e6,
        "synops_per_second_at_target": dense["synops_per_cycle"] * board.target_mhz * 1e6,
        "luts_per_lane": report["luts_per_lane"], "utilization": report["utilization"],
        "build_seconds": report["build_seconds"],
    }


def run(boards=DEFAULT_BOARDS, progress=print) -> list[dict]:
    return [board_bench(name, progress) for name in boards]


def describe(result: list[dict]):
    for b in result:
        yield (f"  {b['board']:<15} P={b['lanes']:>2}: fmax {b['fmax_mhz']:.1f} MHz "
               f"(target {b['target_mhz']:.0f}, met {b['timing_met']}), "
               f"{b['synops_per_second'] / 1e6:.0f} M synaptic ops/s, "
               f"{b['luts_per_lane']:.0f} LUTs per lane, built in {b['build_seconds']:.0f} s")
