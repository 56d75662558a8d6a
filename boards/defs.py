"""Board definitions: the amaranth-boards platform, the NPU clock and its PLL,
the UART pins and baud rate, the status LEDs, and the largest NPU
configuration that fits (with its resource budget).

Pure data plus two lookups (``board_named``, ``capacity``); building is in
:mod:`.build`, the top level in :mod:`.top`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..contract.config import CoreConfig
from ..contract.timing import COMPACT, PIPELINED, TimingProfile
from ..golden.integer import Format

__all__ = ["Board", "BOARDS", "board_named", "capacity"]


@dataclass(frozen=True)
class Board:
    """One supported board.

    ``platform``: ``"module:Class"`` in ``amaranth_boards``; ``family``:
    ``ice40``, ``ecp5`` or ``xilinx`` (``xilinx`` boards produce the vendor
    project files only); ``clock``: the input clock resource; ``target_mhz``:
    the NPU clock the PLL makes (``None``: the input clock, no PLL);
    ``uart``: ``(rx, tx)`` pins to add when the platform has no UART resource
    (``None``: use ``uart`` 0), on connector ``uart_connector``; ``leds``:
    how many status LEDs (``led`` resources 0..); ``config``: the largest NPU
    configuration that fits; ``budget``: what that configuration may use of
    the device (resource -> count), the fit check's hardware side;
    ``spram_weights``: weights in iCE40 SPRAM (one 16K x 16 block per lane);
    ``transport``: ``uart`` or ``pcie`` (AXI-Stream through the XDMA IP);
    ``seed``: nextpnr's placement seed (a seed with which the shipped design
    routes; nextpnr is deterministic for one netlist and seed); ``nextpnr_options``:
    further nextpnr options, for its placer and router (the shipped design's, with
    its seed);
    ``timing``: the :class:`~..contract.timing.TimingProfile` of the core and the
    link (``PIPELINED`` on the ECP5 and Xilinx parts: more flip-flops for a faster
    clock, the same results).
    """

    name: str
    description: str
    platform: str
    family: str
    device: str
    clock: str
    target_mhz: float | None
    config: CoreConfig
    budget: dict = field(default_factory=dict)
    baud: int = 115200
    uart: tuple | None = None
    uart_connector: tuple | None = None
    leds: int = 2
    spram_weights: bool = False
    transport: str = "uart"
    seed: int = 1
    nextpnr_options: tuple = ()
    timing: TimingProfile = COMPACT

    def platform_class(self):
        import importlib

        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)


_UP5K = {"LUT": 5280, "FF": 5280, "BRAM": 30, "DSP": 8, "SPRAM": 4}
_ECP5_25 = {"LUT": 24288, "FF": 24288, "BRAM": 56, "DSP": 28}
_ECP5_85 = {"LUT": 83640, "FF": 83640, "BRAM": 208, "DSP": 156}
_A7_100 = {"LUT": 63400, "FF": 126800, "BRAM": 135, "DSP": 240}

# The digits network (64 -> 128 LIF -> 10 LI) fits, with room for one more edge (a
# recurrent or skip one); every logic cell counts on the UP5K.
ICEBREAKER_CONFIG = CoreConfig(lanes=4, max_layers=2, max_edges=3, max_neurons=128,
                               max_inputs=128, max_fanin=256, neuron_depth=48,
                               weight_depth=16384, event_fifo_depth=2)
ECP5_25_CONFIG = CoreConfig(lanes=8, max_layers=4, max_edges=8, max_neurons=256,
                            max_inputs=256, max_fanin=256, neuron_depth=64,
                            weight_depth=2048)
ECP5_85_CONFIG = CoreConfig(lanes=32, fmt=Format(acc_bits=25), max_layers=4, max_edges=8,
                            max_neurons=512, max_inputs=512, max_fanin=512, neuron_depth=32,
                            weight_depth=4096)
# The same neuron and synapse capacity on 16 lanes, with an SSM unit for sequence
# models: states up to 32 x 32 (64 cells per lane), gates of up to 4 bits.  The SSM
# unit takes three multipliers per lane: on 32 lanes the 85F has too few (156).
ECP5_85_SSM_CONFIG = CoreConfig(lanes=16, fmt=Format(acc_bits=25), max_layers=4, max_edges=8,
                                max_neurons=512, max_inputs=512, max_fanin=512,
                                neuron_depth=64, weight_depth=8192, ssm_max_n=32,
                                ssm_max_m=32, ssm_depth=64, ssm_param_depth=1024)

BOARDS = {b.name: b for b in [
    Board("icebreaker", "1BitSquared iCEBreaker (iCE40UP5K-SG48), weights in SPRAM",
          "icebreaker:ICEBreakerPlatform", "ice40", "iCE40UP5K", "clk12", 30.0,
          ICEBREAKER_CONFIG, _UP5K, spram_weights=True, seed=3),
    Board("ulx3s-85f", "Radiona ULX3S with LFE5U-85F", "ulx3s:ULX3S_85F_Platform", "ecp5",
          "LFE5U-85F", "clk25", 100.0, ECP5_85_CONFIG, _ECP5_85, leds=8,
          seed=2, timing=PIPELINED,  # (docs/boards.md, "Timing")
          nextpnr_options=("--placer-heap-timingweight", "40", "--placer-heap-critexp", "4",
                           "--router", "router1")),
    # The SSM unit's state pass (decay multiply, add, saturate, q * S' multiply and
    # accumulate in one clock, 52 logic levels) runs at 22.6-28.7 MHz: it ships at 20 MHz.
    Board("ulx3s-85f-ssm", "Radiona ULX3S with LFE5U-85F, 16 lanes and an SSM unit (sequence "
          "models)", "ulx3s:ULX3S_85F_Platform", "ecp5", "LFE5U-85F", "clk25", 20.0,
          ECP5_85_SSM_CONFIG, _ECP5_85, leds=8, seed=2, timing=PIPELINED,
          nextpnr_options=("--placer-heap-timingweight", "40", "--placer-heap-critexp", "4",
                           "--router", "router1")),
    Board("ulx3s-25f", "Radiona ULX3S with LFE5U-25F", "ulx3s:ULX3S_25F_Platform", "ecp5",
          "LFE5U-25F", "clk25", 100.0, ECP5_25_CONFIG, _ECP5_25, leds=8, timing=PIPELINED),
    Board("orangecrab-25f", "Great Scott Gadgets / GsD OrangeCrab r0.2 (LFE5U-25F); UART on "
          "feather pins 0 (rx) and 1 (tx)", "orangecrab_r0_2:OrangeCrabR0_2_25FPlatform",
          "ecp5", "LFE5U-25F", "clk", 100.0, ECP5_25_CONFIG, _ECP5_25,
          uart=("0", "1"), uart_connector=("io", 0), leds=0, timing=PIPELINED),
    Board("icesugar-pro", "MuseLab iCESugar-Pro (LFE5U-25F-6BG256)",
          "icesugar_pro:ICESugarProPlatform", "ecp5", "LFE5U-25F", "clk25", 100.0,
          ECP5_25_CONFIG, _ECP5_25, leds=0, timing=PIPELINED),
    Board("litefury", "RHS Research LiteFury (XC7A100T, M.2 PCIe x4): Vivado project files "
          "with the XDMA AXI-Stream wrapper (vendor tools not run)",
          "nitefury:LitefuryPlatform", "xilinx", "xc7a100t", "clk200", 125.0,
          ECP5_85_CONFIG, _A7_100, leds=4, transport="pcie", timing=PIPELINED),
]}
"""The supported boards by name."""


def board_named(name: str) -> Board:
    if name not in BOARDS:
        raise ValueError(f"unknown board {name!r}; choose one of {sorted(BOARDS)}")
    return BOARDS[name]


def capacity(board: Board, config: CoreConfig | None = None) -> dict:
    """What a board's NPU holds: neurons (slots), synapses (weight words), SSM
    state words (``lanes * ssm_depth``: 0 without an SSM unit), P, target clock."""
    c = config or board.config
    return {"board": board.name, "lanes": c.lanes, "neurons": c.lanes * c.neuron_depth,
            "neurons_per_layer": c.max_neurons, "inputs": c.max_inputs,
            "synapses": c.lanes * c.weight_depth, "layers": c.max_layers,
            "ssm_state": c.lanes * c.ssm_depth,
            "target_mhz": board.target_mhz, "family": board.family, "device": board.device}
