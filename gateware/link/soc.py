"""The SoC top: link, frame decoder/encoder, command engine and NPU core; and an
AXI-Stream wrapper of the byte-stream SoC for PCIe boards (XDMA-style bridge).

``SoC(config=..., link="stream")``: ports ``rx`` (8-bit ``lib.stream`` in) and
``tx`` (out), both with backpressure.  ``SoC(config=..., link="uart",
clk_freq=..., baud=...)``: ports ``uart_rx`` (in) and ``uart_tx`` (out), idle
high, 8N1; received bytes pass a ``rx_fifo_depth``-byte FIFO (default 2048), so
the decoder may stall while the engine executes a request without losing bytes
(a WRITE of 127 words executes in about 2 300 clocks, 15 byte times at 16
clocks per bit).  ``idle`` is high when nothing is in progress (the simulated
board stops its clock then).

Data path::

    rx -> [UART RX -> FIFO] -> FrameDecoder -> receive buffer (MAX_BODY bytes)
       -> CommandEngine <-> NPUCore (host port, input and output streams)
       -> reply buffer (4 + MAX_PAYLOAD bytes, also the reply cache)
       -> FrameEncoder -> [UART TX] -> tx
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.hdl import ResetInserter
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...contract.config import CoreConfig
from ...contract.framing import MAX_BODY
from ...contract.info import device_info
from ...contract.protocol import MAX_PAYLOAD
from ...contract.timing import COMPACT, TimingProfile
from ..checks import CheckedComponent, check_core_arguments, check_integers
from ..core import NPUCore
from ..memports import NO_RW_CHECK, nrw_read_port
from .engine import HEADER, CommandEngine
from .frame import FrameDecoder, FrameEncoder
from .uart import UARTRx, UARTTx, uart_divisor

__all__ = ["SoC", "AXIStreamLink"]


class SoC(CheckedComponent):
    """The device (see the module docstring and ``docs/device.md``).

    ``weight_memory``: passed to :class:`.core.NPUCore` (``None``: Amaranth
    memories, e.g. ``boards.mem.SPRAMWeights`` for iCE40 SPRAM).  ``timing``: the
    :class:`...contract.timing.TimingProfile` of the core and of the link (``None``:
    ``COMPACT``); ``PIPELINED`` gives the engine's pipelined form
    (:class:`.engine.CommandEngine`) and, with the UART, a register stage between
    the receive FIFO and the decoder (the decoder's byte flags would take the
    FIFO's clock-to-out and a compare in one clock; a byte reaches it a clock
    later).  ``watchdog``: the engine's bound on a RUN step in clocks (``None``:
    ``contract.timing.watchdog_clocks(config, timing)``; :class:`.engine.CommandEngine`).
    """

    @staticmethod
    def check_arguments(*, config, link, clk_freq, baud, rx_fifo_depth, weight_memory, timing,
                        watchdog):
        check_core_arguments(config=config, weight_memory=weight_memory, timing=timing)
        CommandEngine.check_arguments(config=config, info=b"-", timing=timing or COMPACT,
                                      watchdog=watchdog)
        if link not in ("stream", "uart"):
            raise ValueError(f"link must be 'stream' or 'uart', not {link!r}")
        check_integers(rx_fifo_depth=(rx_fifo_depth, 2))
        if link == "uart":
            uart_divisor(clk_freq=clk_freq, baud=baud)
        elif baud is not None:
            raise ValueError(f"baud {baud!r} is for link='uart' only")
        if clk_freq is not None and (not isinstance(clk_freq, int) or clk_freq <= 0):
            raise ValueError(f"clk_freq must be a positive integer or None, not {clk_freq!r}")
        device_info(config, link=link, clock_hz=clk_freq, baud=baud)  # INFO over MAX_INFO

    def __init__(self, *, config: CoreConfig, link: str = "stream", clk_freq: int | None = None,
                 baud: int | None = None, rx_fifo_depth: int = 2048, weight_memory=None,
                 timing: TimingProfile | None = None, watchdog: int | None = None):
        self.weight_memory = weight_memory
        self.watchdog = watchdog
        self.timing = timing or TimingProfile.COMPACT
        self.divisor = uart_divisor(clk_freq=clk_freq, baud=baud) if link == "uart" else None
        self.config = config
        self.link = link
        self.clk_freq = clk_freq
        self.baud = baud
        self.rx_fifo_depth = rx_fifo_depth
        self.info = device_info(config, link=link, clock_hz=clk_freq, baud=baud)
        if link == "stream":
            ports = {"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8))}
        else:
            ports = {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1)}
        super().__init__({**ports, "idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        c = self.config
        core = NPUCore(config=c, weight_memory=self.weight_memory, timing=self.timing)
        m.submodules.decoder = dec = FrameDecoder()
        m.submodules.encoder = enc = FrameEncoder()
        fast = self.timing.pipelined
        m.submodules.engine = eng = CommandEngine(config=c, info=self.info, timing=self.timing,
                                                  watchdog=self.watchdog)
        # The engine's watchdog resets the core (every flip-flop; memories keep their words).
        m.submodules.core = ResetInserter({"sync": eng.core_reset})(core)
        # A buffer is never read and written at once where the read matters: the
        # decoder fills the receive buffer only while the engine has no frame, and the
        # engine writes a reply only while the encoder is not sending.  So neither needs
        # the old-data bypass synthesis otherwise builds (timing: on the iCE40 it sat
        # between the engine's read pointer and the block RAM).
        m.submodules.rx_buffer = rx_buf = memory.Memory(shape=8, depth=MAX_BODY, init=[],
                                                        attrs=NO_RW_CHECK)
        m.submodules.tx_buffer = tx_buf = memory.Memory(shape=8, depth=HEADER + MAX_PAYLOAD,
                                                        init=[], attrs=NO_RW_CHECK)
        rx_wr = rx_buf.write_port()
        rx_rd = nrw_read_port(m, rx_buf, "rx_buffer")
        tx_wr = tx_buf.write_port()
        tx_rd = nrw_read_port(m, tx_buf, "tx_buffer")
        m.d.comb += [
            rx_wr.addr.eq(dec.wr_addr), rx_wr.data.eq(dec.wr_data), rx_wr.en.eq(dec.wr_en),
            rx_rd.addr.eq(eng.rx_addr), eng.rx_data.eq(rx_rd.data),
            tx_wr.addr.eq(eng.tx_waddr), tx_wr.data.eq(eng.tx_wdata), tx_wr.en.eq(eng.tx_we),
            tx_rd.addr.eq(enc.mem_addr), enc.mem_data.eq(tx_rd.data),
            # decoder -> engine
            eng.frame_valid.eq(dec.frame_valid), dec.frame_ack.eq(eng.frame_ack),
            eng.cmd.eq(dec.cmd), eng.seq.eq(dec.seq), eng.length.eq(dec.length),
            eng.crc.eq(dec.crc), eng.open_form.eq(dec.open_form), dec.session.eq(eng.session),
            eng.frames_ok.eq(dec.frames_ok),
            eng.drop_bad_crc.eq(dec.drop_bad_crc), eng.drop_bad_length.eq(dec.drop_bad_length),
            eng.drop_too_large.eq(dec.drop_too_large),
            # engine -> encoder
            enc.start.eq(eng.send), enc.length.eq(eng.send_length),
            enc.session.eq(eng.send_session),
            eng.send_busy.eq(enc.busy),
            # engine <-> core
            core.host_addr.eq(eng.host_addr), core.host_wdata.eq(eng.host_wdata),
            core.host_we.eq(eng.host_we), core.host_re.eq(eng.host_re),
            eng.host_rdata.eq(core.host_rdata), eng.host_rvalid.eq(core.host_rvalid),
            core.clear.eq(eng.clear), eng.core_busy.eq(core.busy),
            eng.core_fault.eq(core.fault), eng.core_fault_info.eq(core.fault_info),
        ]
        wiring.connect(m, eng.core_input, core.input)
        wiring.connect(m, core.output, eng.core_output)
        busy = ~eng.idle | enc.busy | dec.busy
        if self.link == "stream":
            wiring.connect(m, wiring.flipped(self.rx), dec.rx)
            wiring.connect(m, enc.tx, wiring.flipped(self.tx))
            m.d.comb += self.idle.eq(~busy)
        else:
            m.submodules.uart_rx = urx = UARTRx(divisor=self.divisor)
            m.submodules.uart_tx = utx = UARTTx(divisor=self.divisor)
            m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8,
                                                                   depth=self.rx_fifo_depth)
            if not fast:
                m.d.comb += [
                    urx.rx.eq(self.uart_rx),
                    rx_fifo.w_data.eq(urx.data.payload), rx_fifo.w_en.eq(urx.data.valid),
                    urx.data.ready.eq(rx_fifo.w_rdy),
                    dec.rx.payload.eq(rx_fifo.r_data), dec.rx.valid.eq(rx_fifo.r_rdy),
                    rx_fifo.r_en.eq(dec.rx.ready),
                    self.uart_tx.eq(utx.tx),
                    self.idle.eq(~busy & ~rx_fifo.r_rdy & utx.idle),
                ]
            else:
                # A register stage between the FIFO and the decoder.  (On the ECP5 it
                # stays a fabric register: Yosys puts its read-write collision logic
                # between the block RAM and it.)
                stage_valid = Signal(name="rx_stage_valid")
                stage = Signal(8, name="rx_stage", reset_less=True)
                m.d.comb += rx_fifo.r_en.eq(~stage_valid | dec.rx.ready)
                with m.If(~stage_valid | dec.rx.ready):
                    m.d.sync += [stage_valid.eq(rx_fifo.r_rdy), stage.eq(rx_fifo.r_data)]
                m.d.comb += [
                    urx.rx.eq(self.uart_rx),
                    rx_fifo.w_data.eq(urx.data.payload), rx_fifo.w_en.eq(urx.data.valid),
                    urx.data.ready.eq(rx_fifo.w_rdy),
                    dec.rx.payload.eq(stage), dec.rx.valid.eq(stage_valid),
                    self.uart_tx.eq(utx.tx),
                    self.idle.eq(~busy & ~rx_fifo.r_rdy & ~stage_valid & utx.idle),
                ]
            wiring.connect(m, enc.tx, utx.data)
        return m


class AXIStreamLink(CheckedComponent):
    """The byte-stream SoC behind AXI-Stream ports, as an XDMA-style bridge's
    H2C / C2H streams see it (8-bit ``tdata``).

    ``s_axis_*`` (host to card): bytes into the SoC's ``rx``; ``tlast`` is
    accepted and ignored (frames are delimited by 0x00).  ``m_axis_*`` (card to
    host): the SoC's ``tx``; ``tlast`` marks each frame's 0x00 delimiter, so a
    C2H transfer ends on a frame boundary.  Handshakes are AXI's (a beat moves
    when ``tvalid`` and ``tready`` are both high); no added latency.
    ``weight_memory``, ``timing``: as for :class:`SoC`.
    """

    @staticmethod
    def check_arguments(*, config, weight_memory, timing):
        check_core_arguments(config=config, weight_memory=weight_memory, timing=timing)

    def __init__(self, *, config: CoreConfig, weight_memory=None, timing=None):
        self.config = config
        self.weight_memory = weight_memory
        self.timing = timing
        super().__init__({
            "s_axis_tdata": In(8), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(8), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.soc = soc = SoC(config=self.config, link="stream",
                                     weight_memory=self.weight_memory, timing=self.timing)
        m.d.comb += [
            soc.rx.payload.eq(self.s_axis_tdata), soc.rx.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(soc.rx.ready),
            self.m_axis_tdata.eq(soc.tx.payload), self.m_axis_tvalid.eq(soc.tx.valid),
            soc.tx.ready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(soc.tx.payload == 0),
        ]
        return m
