"""The core's synaptic pipeline: events in, one weighted input per lane out.

An event ``(j, x)`` issued with its row's weight base ``rowbase`` (``wbase +
k * nsrc``) reads one weight per lane at ``rowbase + j`` (lane ``p`` holds
``W[k*P + p, j]``) and every lane gets ``W * x``, one event per clock::

    issue -> 1: event read (``ev`` arrives) -> 1b: weight address register
          -> 2: weight read -> 3: weight and x registered -> 4: product

``prod`` / ``prod_valid``: the products, valid four clocks after the event's
issue (compact).  Pipelined: the event is registered once more after its read
(``s1r_*``: the event lists are block RAM) and the weight after its read
(``w_q<p>``, with ``x`` waiting a clock with it, stage 2r), the weight address
and ``x`` reach the lanes from one copy per group of 4 lanes (``w_addr_rep<g>``,
``x_rep<g>``; one register driving every lane is a long net), the product
leaves its DSP block into a fabric register (``prod_f<p>``), and ``prod_valid``
is a copy per group (``s5_valid_rep<g>``): products are valid seven clocks after
the issue.  ``drained``: no event left between the issue and stage 4 (the
sequencer's DRAIN waits a fixed count, 3 compact, 6 pipelined, and this).

Every product is a :class:`..dsp.RegisteredProduct` (on the ECP5 a DSP block
with its own registers).  The weights are written (and read back) by the host
through its group views while the core is idle; pipelined, each weight address
register is itself the choice between the pipeline and the host (``host_word``),
made a clock early from the group's ``busy`` copy.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ...contract.config import CoreConfig, Region
from ...contract.timing import TimingProfile
from ..dsp import RegisteredProduct
from ..layouts import registered
from ..memports import NO_RW_CHECK, nrw_read_port
from .events import event_layout
from .host import view_layout

__all__ = ["SynapticPipeline"]


class SynapticPipeline(wiring.Component):
    """The synaptic pipeline for ``config`` and ``timing`` (module docs);
    ``weight_memory`` as :class:`.NPUCore`'s.

    Ports: ``issue``, ``rowbase``, ``ev`` (the issued event, a clock later),
    ``busy_groups``, ``views`` (the host's group views), ``host_word`` in;
    ``prod``, ``prod_valid`` (per group), ``drained``, ``weights_rdata`` out.
    """

    def __init__(self, *, config: CoreConfig, timing: TimingProfile, weight_memory=None):
        c = config
        self.config, self.timing, self.weight_memory = c, timing, weight_memory
        self.groups = -(-c.lanes // 4)
        super().__init__({
            "issue": In(1), "rowbase": In(c.wbase_bits + 1), "ev": In(event_layout(c)),
            "busy_groups": In(self.groups),
            "views": In(data.ArrayLayout(view_layout(c), self.groups)),
            "host_word": In(c.addr_bits),
            "prod": Out(data.ArrayLayout(signed(c.w_bits + c.in_bits), c.lanes)),
            "prod_valid": Out(self.groups), "drained": Out(1),
            "weights_rdata": Out(data.ArrayLayout(unsigned(c.host_data_bits), c.lanes)),
        })

    def _weights(self, m, p):
        """Lane ``p``'s weight memory: its read port and write port."""
        c = self.config
        if self.weight_memory is None:
            wmem = memory.Memory(shape=signed(c.w_bits), depth=c.weight_depth, init=[],
                                 attrs=NO_RW_CHECK)
            rd, wr = nrw_read_port(m, wmem, f"weights{p}"), wmem.write_port()
        else:
            wmem = self.weight_memory(shape=signed(c.w_bits), depth=c.weight_depth)
            rd, wr = wmem.read, wmem.write
        m.submodules[f"weights{p}"] = wmem
        if self.timing.pipelined:  # every use (and the host's read-back) takes a register
            rd = SimpleNamespace(addr=rd.addr, data=registered(m, rd.data, f"w_q{p}"))
        view = self.views[p // 4]
        m.d.comb += [wr.addr.eq(view.word), wr.data.eq(view.wdata),
                     wr.en.eq(view.we & (view.region == Region.WEIGHTS) & (view.lane == p)),
                     self.weights_rdata[p].eq(rd.data.as_unsigned())]
        return rd

    def elaborate(self, platform):
        m = Module()
        c = self.config
        pipe = self.timing.pipelined
        s1_valid, s1b_valid, s2_valid = Signal(), Signal(), Signal()
        s1_rowbase = Signal.like(self.rowbase)
        with m.If(self.issue):
            m.d.sync += s1_rowbase.eq(self.rowbase)
        a_valid, a_index, a_value, a_rowbase = s1_valid, self.ev.index, self.ev.value, s1_rowbase
        if pipe:
            a_valid = Signal(name="s1r_valid")
            m.d.sync += a_valid.eq(s1_valid)
            a_index = registered(m, self.ev.index, "s1r_index")
            a_value = registered(m, self.ev.value, "s1r_value")
            a_rowbase = registered(m, s1_rowbase, "s1r_rowbase")
        # Stage 1b: the weight address, one register per group of 4 lanes.
        w_addr = [Signal(max(c.wbase_bits + 1, c.addr_bits if pipe else 0),
                         name=f"w_addr_{'rep' if pipe else 'q'}{g}", reset_less=True)
                  for g in range(self.groups)]
        m.d.sync += [a.eq(Mux(self.busy_groups[g], a_rowbase + a_index, self.host_word) if pipe
                          else a_rowbase + a_index) for g, a in enumerate(w_addr)]
        s1b_x = Signal(signed(c.in_bits), reset_less=True)
        s2_x = Signal(signed(c.in_bits))
        m.d.sync += [s1_valid.eq(self.issue), s1b_valid.eq(a_valid), s1b_x.eq(a_value),
                     s2_valid.eq(s1b_valid), s2_x.eq(s1b_x)]
        s3_valid, s4_valid = Signal(), Signal(name="s4_valid")
        b_valid = s2_valid
        if pipe:
            b_valid = Signal(name="s2r_valid")
            m.d.sync += b_valid.eq(s2_valid)
        m.d.sync += [s3_valid.eq(b_valid), s4_valid.eq(s3_valid)]
        x_q = [s2_x] * self.groups
        if pipe:
            x_q = [registered(m, s2_x, f"x_rep{g}") for g in range(self.groups)]
        for p in range(c.lanes):
            rd = self._weights(m, p)
            m.d.comb += rd.addr.eq(w_addr[p // 4] if pipe else
                                   Mux(self.busy_groups[p // 4], w_addr[p // 4],
                                       self.views[p // 4].word))
            m.submodules[f"product{p}"] = mul = RegisteredProduct(a_bits=c.w_bits,
                                                                  b_bits=c.in_bits)
            m.d.comb += [mul.a.eq(rd.data), mul.b.eq(x_q[p // 4]),
                         self.prod[p].eq(registered(m, mul.p, f"prod_f{p}") if pipe else mul.p)]
        if pipe:  # the products leave their fabric registers a clock after stage 4
            valid = Cat(Signal(name=f"s5_valid_rep{g}") for g in range(self.groups))
            m.d.sync += valid.eq(s4_valid.replicate(self.groups))
            m.d.comb += self.prod_valid.eq(valid)
        else:
            m.d.comb += self.prod_valid.eq(s4_valid.replicate(self.groups))
        m.d.comb += self.drained.eq(~s1_valid & ~s1b_valid & ~s2_valid & ~s3_valid)
        return m
