"""A bank of event counters kept in a block RAM.

``n`` counters of ``width`` bits.  Each clock, counter ``i`` counts one if
``inc[i]`` is high (any number of counters in the same clock).  ``clear`` (one
clock) zeroes every counter.  A read: ``raddr`` with ``re`` high; one clock
later ``rvalid`` is high and ``rdata`` holds the counter's value as of the clock
of the request (increments of that clock not included); one read per clock may
be issued.

Why: on an iCE40UP5K, ten 32-bit counters in flip-flops with their adders and
read multiplexer take about 500 of its 5280 logic cells; here they take one
block RAM pair and about a hundred.

How: counter ``i`` is ``(0 if stale[i] else mem[i]) + delta[i]``.  ``delta[i]`` is
a small counter in flip-flops that takes the increments; a round-robin flush
moves it into the memory: in clock ``t`` it reads ``mem[j]`` and captures
``f = delta[j]``; in clock ``t + 1`` it writes ``mem[j] = base + f`` and
subtracts ``f`` from ``delta[j]`` (plus that clock's increment) in the same
edge, so memory and deltas agree at every clock edge.  ``clear`` marks every
counter stale and zeroes the deltas (a flush in flight is dropped).  A read
takes the read port in its clock (no flush is issued then) and captures
``delta``, ``stale`` and ``mem`` as of the same edge; the one adder serves the
flush's write and the read's result.  A flush whose write would come in the
clock of a read is dropped too (memory word and delta stay as they were; the
counter is flushed on its next turn), so the memory is never read and written
in the same clock and needs no collision logic (``NO_RW_CHECK``).

Each counter is flushed at least every ``n`` clocks in which no read is
issued, so ``delta`` never exceeds ``n + 1`` while reads are issued only when
the counters are not counting (the NPU core's host port: only while idle).

``registered=True`` (timing: the increments come from a sequencer's decodes and
compares, the deltas' carry chains would add to them): ``inc`` is registered
first, so an increment counts a clock later.  A read then holds the value as of
the clock before the request (that clock's increments not included), and an
increment in the clock of ``clear`` is dropped, as without the register.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import memory
from amaranth.lib.wiring import In, Out

from .checks import CheckedComponent, check_integers
from .memports import NO_RW_CHECK, nrw_read_port

__all__ = ["CounterBank"]


class CounterBank(CheckedComponent):
    """``n`` counters of ``width`` bits in a block RAM (module docs).

    Ports: ``inc`` (``n`` bits) in, ``clear`` in, ``raddr``/``re`` in,
    ``rdata``/``rvalid`` out (latency 1).  ``registered``: ``inc`` counts a clock
    later.
    """

    @staticmethod
    def check_arguments(*, n, width, registered):
        check_integers(n=(n, 2), width=(width, 1))
        if not isinstance(registered, bool):
            raise TypeError(f"registered must be a bool, not {registered!r}")

    def __init__(self, *, n: int, width: int = 32, registered: bool = False):
        self.n, self.width, self.registered = n, width, registered
        self.delta_bits = (2 * n + 2).bit_length()
        super().__init__({
            "inc": In(n),
            "clear": In(1),
            "raddr": In(range(n)),
            "re": In(1),
            "rdata": Out(width),
            "rvalid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n
        m.submodules.mem = mem = memory.Memory(shape=self.width, depth=n, init=[],
                                               attrs=NO_RW_CHECK)
        rd, wr = nrw_read_port(m, mem, "counters"), mem.write_port()
        delta = Array(Signal(self.delta_bits, name=f"delta{i}") for i in range(n))
        stale = Signal(n, init=(1 << n) - 1)  # the memory starts unwritten

        # Flush: issue (read mem[ptr], capture its delta) in clocks without a read.
        # A read: the same edge captures the memory (read port), the delta and the flag.
        # Timing: a clock issues a flush or a read, never both, so one pair of registers
        # (``a_delta``, ``a_stale``) captures for either and the adder needs no choice.
        ptr = Signal(range(n))
        issue = ~self.re
        f_valid = Signal()
        f_idx = Signal(range(n))
        a_delta = Signal(self.delta_bits)
        a_stale = Signal()
        m.d.sync += [f_valid.eq(issue & ~self.clear), f_idx.eq(ptr), self.rvalid.eq(self.re),
                     a_delta.eq(Mux(self.re, delta[self.raddr], delta[ptr])),
                     a_stale.eq(Mux(self.re, stale.bit_select(self.raddr, 1),
                                    stale.bit_select(ptr, 1)))]
        with m.If(issue):
            m.d.sync += ptr.eq(Mux(ptr == n - 1, 0, ptr + 1))
        m.d.comb += rd.addr.eq(Mux(self.re, self.raddr, ptr))

        # The one adder: base + delta, for the flush's write or the read's result.
        total = Signal(self.width)
        m.d.comb += [
            total.eq(Mux(a_stale, 0, rd.data) + a_delta),
            self.rdata.eq(total),
            wr.addr.eq(f_idx),
            wr.data.eq(total),
            wr.en.eq(f_valid & ~self.re),
        ]
        inc = self.inc
        if self.registered:
            inc = Signal(n, name="inc_q")
            m.d.sync += inc.eq(Mux(self.clear, 0, self.inc))
        for i in range(n):
            flushed = f_valid & ~self.re & (f_idx == i)
            m.d.sync += delta[i].eq(delta[i] + inc[i] - Mux(flushed, a_delta, 0))
            with m.If(flushed):
                m.d.sync += stale.bit_select(i, 1).eq(0)
        with m.If(self.clear):
            m.d.sync += [delta[i].eq(0) for i in range(n)]
            m.d.sync += stale.eq((1 << n) - 1)
        return m
