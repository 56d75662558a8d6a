"""Weight memories for the NPU core's ``weight_memory`` hook.

Both components present the same ports: ``read`` (``addr`` in, ``data`` out
one clock after the address, read every clock) and ``write`` (``addr``,
``data``, ``en`` in).  They have ONE address port: a write (``write.en``) uses
``write.addr``, otherwise the memory reads ``read.addr``.  The core writes
weights only while it is idle and reads them only while it is busy, so a
single-port memory is exact for it (a read in the clock of a write returns
undefined data).

* :class:`SinglePortWeights`: an Amaranth ``Memory`` behind that one address,
  for simulation and for families without special RAM.
* :class:`SPRAMWeights`: an iCE40UP ``SB_SPRAM256KA`` (16384 x 16 bits) on an
  iCE40 platform, the single-port model otherwise (simulation), so the core's
  tests cover the address multiplexing the SPRAM build uses.
"""

from __future__ import annotations

from amaranth import Cat, ClockSignal, Const, Instance, Module, Mux, Shape, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..gateware.checks import CheckedComponent, check_integers

__all__ = ["SinglePortWeights", "SPRAMWeights", "weight_port_signature"]

SPRAM_DEPTH, SPRAM_WIDTH = 16384, 16


def weight_port_signature(depth: int, shape) -> wiring.Signature:
    aw = max(1, (depth - 1).bit_length())
    return wiring.Signature({
        "read": Out(wiring.Signature({"addr": In(aw), "data": Out(shape)})),
        "write": Out(wiring.Signature({"addr": In(aw), "data": In(shape), "en": In(1)})),
    })


def _check(shape, depth, max_depth=None, max_width=None):
    try:
        shape = Shape.cast(shape)
    except TypeError:
        raise TypeError(f"shape must be an Amaranth shape, not {shape!r}") from None
    check_integers(depth=(depth, 1))
    if max_depth is not None and depth > max_depth:
        raise ValueError(f"depth {depth!r} exceeds one SPRAM block ({max_depth} words)")
    if max_width is not None and shape.width > max_width:
        raise ValueError(f"shape {shape!r} is wider than one SPRAM block ({max_width} bits)")
    return shape


class SinglePortWeights(CheckedComponent):
    """A single-port weight memory (``depth`` words of ``shape``), see the module docs."""

    @staticmethod
    def check_arguments(*, shape, depth):
        _check(shape, depth)

    def __init__(self, *, shape, depth: int):
        self.shape = Shape.cast(shape)
        self.depth = depth
        super().__init__(weight_port_signature(depth, self.shape))

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self.shape, depth=self.depth, init=[])
        rd, wr = mem.read_port(), mem.write_port()
        addr = Signal.like(self.read.addr)
        m.d.comb += [
            addr.eq(Mux(self.write.en, self.write.addr, self.read.addr)),
            rd.addr.eq(addr), wr.addr.eq(addr), wr.data.eq(self.write.data),
            wr.en.eq(self.write.en), self.read.data.eq(rd.data),
        ]
        return m


class SPRAMWeights(CheckedComponent):
    """Weights in one iCE40UP SPRAM block (``depth`` <= 16384, width <= 16 bits).

    Latency: ``read.data`` one clock after ``read.addr`` (the SPRAM's output
    register).  On a platform other than an iCE40UP (or in simulation) it elaborates to
    :class:`SinglePortWeights`."""

    @staticmethod
    def check_arguments(*, shape, depth):
        _check(shape, depth, SPRAM_DEPTH, SPRAM_WIDTH)

    def __init__(self, *, shape, depth: int):
        self.shape = Shape.cast(shape)
        self.depth = depth
        super().__init__(weight_port_signature(depth, self.shape))

    def elaborate(self, platform):
        m = Module()
        if not str(getattr(platform, "device", "")).startswith("iCE40UP"):
            m.submodules.model = model = SinglePortWeights(shape=self.shape, depth=self.depth)
            wiring.connect(m, wiring.flipped(self.read), model.read)
            wiring.connect(m, wiring.flipped(self.write), model.write)
            return m
        w = self.shape.width
        addr = Signal(14)
        dout = Signal(SPRAM_WIDTH)
        m.d.comb += addr.eq(Mux(self.write.en, self.write.addr, self.read.addr))
        m.submodules.spram = Instance(
            "SB_SPRAM256KA",
            i_ADDRESS=addr,
            i_DATAIN=Cat(self.write.data, Const(0, SPRAM_WIDTH - w)),
            i_MASKWREN=Const(0b1111, 4),
            i_WREN=self.write.en,
            i_CHIPSELECT=Const(1, 1),
            i_CLOCK=ClockSignal("sync"),
            i_STANDBY=Const(0, 1),
            i_SLEEP=Const(0, 1),
            i_POWEROFF=Const(1, 1),
            o_DATAOUT=dout,
        )
        m.d.comb += self.read.data.eq(dout[:w])
        return m
