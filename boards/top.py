"""Board top levels: clock (PLL) domain, reset, status LEDs and UART pins around
a design made by a ``make_top(config, clk_freq, baud, weight_memory, link=, timing=)``
callable.

The design is a component with 1-bit ``uart_rx`` (in) and ``uart_tx`` (out)
ports and, optionally, a ``busy`` output for a status LED.  Two exist:

* :func:`make_soc` (the default): ``gateware.link.SoC(link="uart")`` (UART
  link, frame decoder, command engine, NPU core), the product; on PCIe boards
  ``gateware.link.AXIStreamLink`` (the same SoC on a byte stream, behind
  AXI-Stream ports) on the XDMA bridge.
* :func:`make_core`: :class:`CoreScan`, the NPU core alone behind a scan chain
  on the UART pins, so every core input comes from a pin and every core output
  reaches one and synthesis keeps the whole core (for fit, utilization and
  timing before the SoC exists; it does not speak the wire protocol).
"""

from __future__ import annotations

from amaranth import Cat, ClockDomain, Const, Module, Signal
from amaranth.build import Attrs
from amaranth.build.res import ResourceError
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..contract.config import CoreConfig
from ..gateware.checks import CheckedComponent, check_core_arguments
from ..gateware.core import NPUCore
from ..gateware.link import AXIStreamLink, SoC
from .defs import Board
from .pll import add_pll, pll_settings

__all__ = ["CoreScan", "make_core", "make_soc", "BoardTop", "TOPS", "DEFAULT_TOP"]


class CoreScan(CheckedComponent):
    """The NPU core with every port on a scan chain (``uart_rx`` in, ``uart_tx`` out).

    Every clock, ``uart_rx`` shifts into an ``n_in``-bit input chain and the
    output chain shifts one bit out on ``uart_tx``.  Every ``period`` clocks
    (``period = max(n_in, n_out)``) the input chain is copied into the
    register that drives all core inputs (``host_*``, ``clear``, ``input.*``,
    ``output.ready``) and all core outputs (``host_rdata``, ``host_rvalid``,
    ``busy``, ``input.ready``, ``output.*``) are loaded into the output chain.
    ``busy`` is the core's busy (a status LED).  Latency: ``period`` clocks per
    frame.  Ports: ``uart_rx`` In(1), ``uart_tx`` Out(1), ``busy`` Out(1).
    """

    @staticmethod
    def check_arguments(*, config, weight_memory, timing):
        check_core_arguments(config=config, weight_memory=weight_memory, timing=timing)

    def __init__(self, *, config: CoreConfig, weight_memory=None, timing=None):
        self.config = config
        self.weight_memory = weight_memory
        self.timing = timing
        super().__init__({"uart_rx": In(1), "uart_tx": Out(1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = NPUCore(config=self.config, weight_memory=self.weight_memory,
                                           timing=self.timing)
        ins, outs = [], []
        for _path, member, value in core.signature.flatten(core):
            (ins if member.flow == In else outs).append(value.as_value()
                                                        if hasattr(value, "as_value")
                                                        else value)
        n_in = sum(len(v) for v in ins)
        n_out = sum(len(v) for v in outs)
        self.n_in, self.n_out = n_in, n_out
        period = max(n_in, n_out)
        chain_in = Signal(n_in)
        held = Signal(n_in)
        chain_out = Signal(n_out)
        count = Signal(range(period))
        strobe = Signal()
        m.d.comb += strobe.eq(count == period - 1)
        m.d.sync += [count.eq(0 if period == 1 else count + 1),
                     chain_in.eq(Cat(chain_in[1:], self.uart_rx))]
        with m.If(strobe):
            m.d.sync += [held.eq(chain_in), count.eq(0), chain_out.eq(Cat(*outs))]
        with m.Else():
            m.d.sync += chain_out.eq(chain_out[1:])
        m.d.comb += [self.uart_tx.eq(chain_out[0]), self.busy.eq(core.busy)]
        at = 0
        for v in ins:
            m.d.comb += v.eq(held[at:at + len(v)])
            at += len(v)
        return m


def make_core(config: CoreConfig, clk_freq: float, baud: int, weight_memory=None,
              link: str = "uart", timing=None):
    """The core-only design (:class:`CoreScan`); ``clk_freq``, ``baud``, ``link`` unused."""
    return CoreScan(config=config, weight_memory=weight_memory, timing=timing)


RX_FIFO_DEPTH = 512
"""The board SoC's UART receive FIFO, in bytes."""


def make_soc(config: CoreConfig, clk_freq: float, baud: int, weight_memory=None,
             link: str = "uart", timing=None):
    """The SoC top: ``gateware.link.SoC`` with the UART link, or (``link="stream"``,
    PCIe boards) ``gateware.link.AXIStreamLink``, the byte-stream SoC behind
    AXI-Stream ports, for the XDMA bridge (``baud`` unused then)."""
    if link == "stream":
        return AXIStreamLink(config=config, weight_memory=weight_memory, timing=timing)
    # At UART speed every request but RUN executes faster than it arrives, and the
    # host sends RUN stop-and-wait: a 512-byte receive FIFO (one iCE40 block RAM)
    # is ample (docs/boards.md).
    return SoC(config=config, link=link, clk_freq=int(clk_freq), baud=baud,
               weight_memory=weight_memory, rx_fifo_depth=RX_FIFO_DEPTH, timing=timing)


TOPS = {"core": make_core, "soc": make_soc}
DEFAULT_TOP = "soc"
"""The top ``spikeforge build`` uses without ``--top``: the SoC (the device)."""


def _request_all(platform, name, count):
    found = []
    for i in range(count):
        try:
            found.append(platform.request(name, i, dir="-"))
        except ResourceError:
            break
    return found


def _board_clock(board: Board):
    """``(clk_in, pll, clk_freq)``: the board's input clock (Hz), the PLL settings
    (``None``: no PLL) and the frequency of the ``sync`` clock (Hz)."""
    clk_in = board.platform_class()().lookup(board.clock, 0).clock.frequency
    if board.transport == "pcie":
        return clk_in, None, board.target_mhz * 1e6  # the XDMA IP's user clock
    if board.target_mhz is None:
        return clk_in, None, clk_in
    pll = pll_settings(board.family, clk_in, board.target_mhz * 1e6)
    return clk_in, pll, pll.fout


class BoardTop(CheckedComponent):
    """One board: the PLL makes the ``sync`` clock at ``board.target_mhz`` (the
    input clock when ``None``), reset is held until the PLL locks (and, on
    iCE40, 256 more clocks: its block RAMs read zero for ~3 us after
    configuration); ``design`` (from ``make_top``) gets the UART pins; LED 0
    blinks at ~1 Hz (the clock runs), LED 1 is the design's ``busy`` (or not
    ``idle``, when it has one), LED 2 lights while ``uart_rx`` is low.

    ``clk_freq``: the PLL's actual output frequency (Hz), known after
    construction (the PLL search runs when it is built).
    """

    @staticmethod
    def check_arguments(*, board, make_top, config):
        if not isinstance(board, Board):
            raise TypeError(f"board must be a Board, not {board!r}")
        if not callable(make_top):
            raise TypeError(f"make_top must be a callable, not {make_top!r}")
        _board_clock(board)  # a family without a clock generator, an unreachable clock

    def __init__(self, *, board: Board, make_top, config: CoreConfig | None = None):
        self.board = board
        self.config = config or board.config
        self.make_top = make_top
        self.clk_in, self.pll, self.clk_freq = _board_clock(board)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        b = self.board
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.domains.por = cd_por = ClockDomain("por", reset_less=True)
        m.d.comb += cd_por.clk.eq(cd_sync.clk)
        locked = Signal()
        bridge = None
        if b.transport == "pcie":
            from .pcie import XDMABridge

            m.submodules.xdma = bridge = XDMABridge(pcie=platform.request("pcie", 0, dir="-"))
            m.d.comb += [cd_sync.clk.eq(bridge.aclk), locked.eq(bridge.aresetn)]
        else:
            self._clock(m, platform, cd_sync.clk, locked)
        if b.family == "xilinx":  # open-toolchain builds pass nextpnr --freq instead
            platform.add_clock_constraint(cd_sync.clk, self.clk_freq)

        locked_s = Signal()
        m.submodules.lock_sync = FFSynchronizer(locked, locked_s, o_domain="por")
        hold = Signal(9, init=256 + 2)
        with m.If(~locked_s):
            m.d.por += hold.eq(256 + 2)
        with m.Elif(hold != 0):
            m.d.por += hold.eq(hold - 1)
        # Timing: the reset reaches every flip-flop of the design; it leaves a register
        # (released one clock later than ``hold`` reaches 0), not a compare.
        rst = Signal(init=1)
        m.d.por += rst.eq(hold != 0)
        m.d.comb += cd_sync.rst.eq(rst)

        weight_memory = None
        if b.spram_weights:
            from .mem import SPRAMWeights

            weight_memory = SPRAMWeights
        m.submodules.design = design = self.make_top(
            self.config, self.clk_freq, b.baud, weight_memory,
            link="stream" if b.transport == "pcie" else "uart", timing=b.timing)
        if b.transport == "uart":
            if b.uart is not None:
                from amaranth_boards.resources import UARTResource

                platform.add_resources([UARTResource(0, rx=b.uart[0], tx=b.uart[1],
                                                     conn=b.uart_connector,
                                                     attrs=Attrs(IO_TYPE="LVCMOS33"))])
            uart = platform.request("uart", 0, dir="-")
            m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
            m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
            m.d.comb += [design.uart_rx.eq(rx_buf.i), tx_buf.o.eq(design.uart_tx)]
        elif "s_axis_tdata" in design.signature.members:  # the SoC's AXI-Stream wrapper
            m.d.comb += [
                design.s_axis_tdata.eq(bridge.rx.payload),
                design.s_axis_tvalid.eq(bridge.rx.valid),
                design.s_axis_tlast.eq(0),
                bridge.rx.ready.eq(design.s_axis_tready),
                bridge.tx.payload.eq(design.m_axis_tdata),
                bridge.tx.valid.eq(design.m_axis_tvalid),
                design.m_axis_tready.eq(bridge.tx.ready),
            ]
        else:  # the core-only scan chain: bit 0 of each byte
            m.d.comb += [
                design.uart_rx.eq(~bridge.rx.valid | bridge.rx.payload[0]),
                bridge.rx.ready.eq(1),
                bridge.tx.valid.eq(1),
                bridge.tx.payload.eq(design.uart_tx),
            ]

        leds = _request_all(platform, "led", b.leds)
        blink = Signal(max(1, int(self.clk_freq).bit_length() - 1))
        m.d.sync += blink.eq(blink + 1)
        rx_low = ~design.uart_rx if hasattr(design, "uart_rx") else Const(0, 1)
        busy = (design.busy if hasattr(design, "busy")
                else ~design.idle if hasattr(design, "idle") else Const(0, 1))
        status = [blink[-1], busy, rx_low]
        for i, (led, value) in enumerate(zip(leds, status, strict=False)):
            m.submodules[f"led{i}"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(value)
        if not leds:
            try:
                rgb = platform.request("rgb_led", 0, dir="-")
                for color, value in zip("grb", status, strict=True):
                    m.submodules[f"rgb_{color}"] = buf = io.Buffer("o", getattr(rgb, color))
                    m.d.comb += buf.o.eq(value)
            except ResourceError:
                pass
        return m

    def _clock_in(self, m, platform):
        m.submodules.clk_in = buf = io.Buffer("i", platform.request(self.board.clock, dir="-"))
        return buf.i

    def _clock(self, m, platform, clk, locked):
        pll = self.pll
        if pll is None:
            m.d.comb += [clk.eq(self._clock_in(m, platform)), locked.eq(1)]
        elif pll.family == "ice40":  # SB_PLL40_PAD takes the pin, not a buffer
            add_pll(m, pll, platform.request(self.board.clock, dir="-").io, clk, locked)
        else:
            add_pll(m, pll, self._clock_in(m, platform), clk, locked)
