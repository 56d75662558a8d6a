"""Estimated FPGA resources of a board's build (``spikeforge fit``), without a tool run.

Three sources, best first (docs/boards.md, "Fit check"):

* ``recorded``: the board's configuration was built and the place-and-route
  report recorded (docs/boards.md, "Results"): its figures as they were.
* ``synthesis``: Yosys synthesis of the board's own configuration (the SoC top,
  the build's script, run once on the netlist of December 2026; no place and
  route), scaled to what nextpnr reports by the ratio of the recorded build of the
  same family and timing profile: ECP5 logic cells ``(LUT4 + 2 CCU2C + 6
  TRELLIS_DPR16X4) x 1.051``, flip-flops ``(FF - those boards.outreg moves into
  block RAM output registers) x 0.993`` (both from the ULX3S-85F).  Block RAMs and
  DSPs are synthesis' own counts: place and route does not change them (on both
  recorded builds synthesis gives exactly the recorded BRAM, DSP and SPRAM).
* ``per-lane model``: another ECP5 ``PIPELINED`` configuration, a straight line in
  P through the two ECP5 synthesis points (P = 8 and 32): rough, memory depths and
  an SSM unit are not in it.

Anything else (the Xilinx board: vendor project files only) has no estimate.
"""

from __future__ import annotations

from ..contract.config import CoreConfig
from ..golden.integer import Format
from .defs import Board

__all__ = ["estimate_resources", "RECORDED", "SYNTHESIS"]

# The configurations the figures below were measured on (copies: a board whose
# configuration changes no longer matches them).
_ICE40 = CoreConfig(lanes=4, max_layers=2, max_edges=3, max_neurons=128, max_inputs=128,
                    max_fanin=256, neuron_depth=48, weight_depth=16384, event_fifo_depth=2)
_ECP5_25 = CoreConfig(lanes=8, max_layers=4, max_edges=8, max_neurons=256, max_inputs=256,
                      max_fanin=256, neuron_depth=64, weight_depth=2048)
_ECP5_85 = CoreConfig(lanes=32, fmt=Format(acc_bits=25), max_layers=4, max_edges=8,
                      max_neurons=512, max_inputs=512, max_fanin=512, neuron_depth=32,
                      weight_depth=4096)
_ECP5_85_SSM = CoreConfig(lanes=16, fmt=Format(acc_bits=25), max_layers=4, max_edges=8,
                          max_neurons=512, max_inputs=512, max_fanin=512, neuron_depth=64,
                          weight_depth=8192, ssm_max_n=32, ssm_max_m=32, ssm_depth=64,
                          ssm_param_depth=1024)

RECORDED = [
    {"family": "ice40", "timing": "compact", "config": _ICE40,
     "build": "icebreaker, soc top, nextpnr seed 3, 7 December 2026 (docs/boards.md, "
              "Results)",
     "LUT": 5245, "FF": 2173, "BRAM": 29, "DSP": 8, "SPRAM": 4, "fmax_mhz": 35.69},
    {"family": "ecp5", "timing": "pipelined", "config": _ECP5_85,
     "build": "ulx3s-85f, soc top, nextpnr seed 2 (router1), December 2026 (docs/boards.md, "
              "Results)",
     "LUT": 21126, "FF": 13564, "BRAM": 137, "DSP": 64, "fmax_mhz": 109.18},
    {"family": "ecp5", "timing": "pipelined", "config": _ECP5_85_SSM,
     "build": "ulx3s-85f-ssm, soc top, nextpnr seed 2 (router1) at 20 MHz, 8 December 2026 "
              "(docs/boards.md, Results)",
     "LUT": 28008, "FF": 10330, "BRAM": 109, "DSP": 82, "fmax_mhz": 26.86},
]
"""Place-and-route reports of reference builds (``LUT``: nextpnr's logic cells, on
iCE40 LUT4 + FF cells, on ECP5 ``TRELLIS_COMB``)."""

SYNTHESIS = [
    {"family": "ecp5", "timing": "pipelined", "config": _ECP5_25, "LUT4": 7196, "CCU2C": 961,
     "TRELLIS_DPR16X4": 152, "FF": 5818, "outreg_FF": 392, "BRAM": 30, "DSP": 16},
    {"family": "ecp5", "timing": "pipelined", "config": _ECP5_85, "LUT4": 13507,
     "CCU2C": 2458, "TRELLIS_DPR16X4": 280, "FF": 15225, "outreg_FF": 1568, "BRAM": 137,
     "DSP": 64},
    {"family": "ice40", "timing": "compact", "config": _ICE40, "LUT4": 4313, "SB_CARRY": 901,
     "FF": 2176, "BRAM": 29, "DSP": 8, "SPRAM": 4},
]
"""Yosys' cell counts of the SoC top of each configuration (``synth_ecp5`` /
``synth_ice40 -dsp`` with the build's script, December 2026; ``outreg_FF``: the
flip-flops :mod:`.outreg` then moves into block RAM output registers)."""


def _find(table: list, family: str, timing: str, config: CoreConfig) -> dict | None:
    return next((e for e in table if (e["family"], e["timing"], e["config"])
                 == (family, timing, config)), None)


def _ecp5_comb(s: dict) -> int:
    return s["LUT4"] + 2 * s["CCU2C"] + 6 * s["TRELLIS_DPR16X4"]


def _ecp5_scaled(s: dict) -> dict:
    """An ECP5 synthesis entry in nextpnr's terms, by the recorded build's ratios."""
    ref = _find(RECORDED, "ecp5", "pipelined", _ECP5_85)
    syn = _find(SYNTHESIS, "ecp5", "pipelined", _ECP5_85)
    lut = ref["LUT"] / _ecp5_comb(syn)
    ff = ref["FF"] / (syn["FF"] - syn["outreg_FF"])
    return {"LUT": round(_ecp5_comb(s) * lut), "FF": round((s["FF"] - s["outreg_FF"]) * ff),
            "BRAM": s["BRAM"], "DSP": s["DSP"]}


def estimate_resources(board: Board, config: CoreConfig | None = None) -> dict:
    """``{"kind", "basis", "fmax_mhz", "resources": {name: {"used", "available",
    "ratio"}}}`` for the board's build with ``config`` (default: the board's); ``kind``
    is ``recorded``, ``synthesis``, ``per-lane model`` or ``none`` (module docs);
    ``fmax_mhz`` the recorded build's (else ``None``)."""
    config = config or board.config
    key = (board.family, board.timing.value, config)
    found = _find(RECORDED, *key)
    if found:
        kind, basis = "recorded", f"recorded build: {found['build']}"
        counts = {k: found[k] for k in ("LUT", "FF", "BRAM", "DSP", "SPRAM") if k in found}
    elif board.family == "ecp5" and _find(SYNTHESIS, *key):
        kind = "synthesis"
        counts = _ecp5_scaled(_find(SYNTHESIS, *key))
        basis = ("estimate: Yosys synthesis of this configuration (no place and route) "
                 "scaled by the recorded ULX3S-85F build's place-and-route/synthesis ratio")
    elif key[:2] == ("ecp5", "pipelined"):
        kind = "per-lane model"
        lo, hi = (_ecp5_scaled(_find(SYNTHESIS, "ecp5", "pipelined", c))
                  for c in (_ECP5_25, _ECP5_85))
        counts = {k: round(lo[k] + (hi[k] - lo[k]) * (config.lanes - 8) / 24) for k in lo}
        counts["DSP"] = 2 * config.lanes
        basis = ("rough estimate: a line in P through the ECP5 synthesis of P = 8 and 32 "
                 "(memory depths and an SSM unit not modelled)")
    else:
        return {"kind": "none", "basis": f"no estimate: no recorded build or synthesis of "
                                         f"this configuration on {board.family}",
                "fmax_mhz": None, "resources": {}}
    return {"kind": kind, "basis": basis, "fmax_mhz": found and found["fmax_mhz"],
            "resources": {
        name: {"used": used, "available": board.budget.get(name),
               "ratio": round(used / board.budget[name], 3) if board.budget.get(name)
               else None}
        for name, used in counts.items()}}
