"""The core's event lists: what each layer (and the input) sent in this step and
in the previous one.

For the input and each layer, a list of ``(index, value)`` events in two banks:
this step's (bank ``cur``) and the previous step's.  A feed-forward edge reads
its source's list of this step, a recurrent edge the previous step's; the
banks swap at the end of each step (``end_step``, which also empties the lists
the next step fills), and ``clear`` empties both (zeros before step 0).

The input has its own two-bank memory, a double buffer: the host streams the
next step's events (``input``: events, then an end marker) into one bank while
a step reads the other.  After the end marker the bank is full (``in_full``:
the stream stalls); ``start_step`` hands it to the step (``in_rbank``) and
starts filling the other.

Reads: the list ``rd_src`` (0 the input, ``1 + l`` layer ``l``) of bank
``rd_bank``, event ``rd_n`` (``rd_from_input``: the input's memory), ``rd_data``
a clock later.  Writes: ``wr_event`` appends ``(wr_index, wr_value)`` to this
step's list of the layer being sent (compact: ``1 + wr_layer``, the router's;
pipelined: ``1 + layer_index`` a clock after it changes, and the position from a
register that follows the list's count: no adder or count multiplexer between
the router and the write port).  ``counts`` / ``in_counts`` are the lists'
lengths (pipelined also ``counts_nz`` / ``in_nz``, whether each is not empty,
a clock late).
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...contract.config import CoreConfig
from ...contract.timing import TimingProfile
from ..layouts import input_layout
from ..memports import NO_RW_CHECK, nrw_read_port

__all__ = ["EventLists", "event_layout"]


def event_layout(c: CoreConfig) -> data.StructLayout:
    return data.StructLayout({"index": unsigned(c.idx_bits), "value": signed(c.in_bits)})


class EventLists(wiring.Component):
    """The event lists for ``config`` and ``timing`` (module docs).

    Ports: ``input`` (stream in), ``clear``, ``busy``, ``start_step``, ``end_step``
    in; ``in_full``, ``in_rbank``, ``cur`` out.  Reads: ``rd_src``, ``rd_bank``,
    ``rd_n``, ``rd_from_input`` in, ``rd_data`` out (latency 1).  Writes:
    ``wr_event``, ``wr_index``, ``wr_value``, ``wr_layer``, ``layer_index`` in.
    Lengths: ``counts`` (indexed by ``Cat(src, bank)``), ``in_counts`` (by bank)
    out; pipelined also ``counts_nz``, ``in_nz``.
    """

    def __init__(self, *, config: CoreConfig, timing: TimingProfile):
        c = config
        self.config, self.timing = c, timing
        count = unsigned(max(c.max_neurons, c.max_inputs).bit_length())
        self.n_lists = 2 << c.src_bits  # indexed by Cat(source, bank)
        ports = {
            "input": In(stream.Signature(input_layout(c))),
            "clear": In(1), "busy": In(1), "start_step": In(1), "end_step": In(1),
            "in_full": Out(1), "in_rbank": Out(1), "cur": Out(1),
            "rd_src": In(c.src_bits), "rd_bank": In(1), "rd_n": In(count),
            "rd_from_input": In(1), "rd_data": Out(event_layout(c)),
            "wr_event": In(1), "wr_index": In(c.idx_bits + 1), "wr_value": In(signed(c.in_bits)),
            "wr_layer": In(c.layer_bits), "layer_index": In(c.layer_bits),
            "counts": Out(data.ArrayLayout(count, self.n_lists)),
            "in_counts": Out(data.ArrayLayout(unsigned(c.max_inputs.bit_length()), 2)),
        }
        if timing.pipelined:
            ports.update(counts_nz=Out(self.n_lists), in_nz=Out(2))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        c = self.config
        ev = event_layout(c)
        # ``NO_RW_CHECK`` (area): a layer's list is never read while the router writes
        # its current bank, so synthesis need not build the old-data bypass.
        m.submodules.events = events = memory.Memory(
            shape=ev, depth=2 << (c.src_bits + c.idx_bits), init=[], attrs=NO_RW_CHECK)
        ev_rd = nrw_read_port(m, events, "events")
        ev_wr = events.write_port()
        m.submodules.input_events = input_events = memory.Memory(
            shape=ev, depth=2 << c.idx_bits, init=[], attrs=NO_RW_CHECK)
        in_rd = nrw_read_port(m, input_events, "input_events")
        in_wr = input_events.write_port()
        counts = Array(Signal(range(max(c.max_neurons, c.max_inputs) + 1), name=f"count{i}")
                       for i in range(self.n_lists))
        in_counts = Array(Signal(range(c.max_inputs + 1), name=f"in_count{i}")
                          for i in range(2))
        m.d.comb += [self.counts[i].eq(x) for i, x in enumerate(counts)]
        m.d.comb += [self.in_counts[i].eq(x) for i, x in enumerate(in_counts)]
        if self.timing.pipelined:
            # which lists are not empty, a clock after their counts (a list is read at
            # least four clocks after its last append)
            m.d.sync += [self.counts_nz.eq(Cat(x != 0 for x in counts)),
                         self.in_nz.eq(Cat(x != 0 for x in in_counts))]

        # Reads (the input's memory or the lists', chosen a clock later).
        from_input = Signal(name="rd_from_input_q")
        m.d.sync += from_input.eq(self.rd_from_input)
        m.d.comb += [
            ev_rd.addr.eq(Cat(self.rd_n[:c.idx_bits], self.rd_src, self.rd_bank)),
            in_rd.addr.eq(Cat(self.rd_n[:c.idx_bits], self.rd_bank)),
            self.rd_data.index.eq(Mux(from_input, in_rd.data.index, ev_rd.data.index)),
            self.rd_data.value.eq(Mux(from_input, in_rd.data.value, ev_rd.data.value)),
        ]
        cur = self.cur
        self._append(m, ev_wr, counts)
        self._input(m, in_wr, in_counts)
        with m.If(self.end_step):  # the next step's lists start empty in the other bank
            for s in range(self.config.max_layers + 1):
                m.d.sync += counts[Cat(Const(s, c.src_bits), ~cur)].eq(0)
            m.d.sync += cur.eq(~cur)
        # ``clear`` comes last so that it takes priority over every update (the core
        # is idle, so nothing else updates them).
        with m.If(self.clear & ~self.busy):
            m.d.sync += [x.eq(0) for x in counts]
            m.d.sync += [cur.eq(0), in_counts[0].eq(0), in_counts[1].eq(0),
                         self.in_full.eq(0), self._in_wbank.eq(0)]
        return m

    def _append(self, m, ev_wr, counts):
        """The router's events into this step's list of the layer being sent."""
        c = self.config
        src = Signal(c.src_bits, name="spike_src")
        if self.timing.pipelined:
            # The current layer's list, a clock after ``layer_index`` changes: every
            # event in flight is the current layer's.
            m.d.sync += src.eq(self.layer_index + 1)
        else:
            m.d.comb += src.eq(self.wr_layer + 1)
        position = counts[Cat(src, self.cur)]
        if self.timing.pipelined:
            # ``ev_wpos`` follows the list's count a clock behind and counts the events
            # as it does; the list and its count hold still for many clocks before the
            # first event of a layer or step, so with every event it equals the count.
            ev_wpos = Signal.like(position, name="ev_wpos")
            m.d.sync += ev_wpos.eq(Mux(self.wr_event, ev_wpos + 1, position))
            position = ev_wpos
        m.d.comb += [ev_wr.addr.eq(Cat(position[:c.idx_bits], src, self.cur)),
                     ev_wr.data.index.eq(self.wr_index), ev_wr.data.value.eq(self.wr_value),
                     ev_wr.en.eq(self.wr_event)]
        with m.If(self.wr_event):  # one enable per list count, no read-modify-write mux
            for i in range(len(counts)):
                with m.If(Cat(src, self.cur) == i):
                    m.d.sync += counts[i].eq(counts[i] + 1)

    def _input(self, m, in_wr, in_counts):
        """The input's double buffer."""
        c = self.config
        in_wbank = self._in_wbank = Signal(name="in_wbank")
        # The write position in ``idx_bits`` bits, as the read address has it, so the
        # bank bit sits above them on both sides (``in_counts`` is narrower when
        # ``max_inputs`` is well below ``max_neurons``).
        position = Signal(c.idx_bits, name="in_position")
        m.d.comb += position.eq(in_counts[in_wbank])
        m.d.comb += self.input.ready.eq(~self.in_full & ~self.clear)
        with m.If(self.input.valid & self.input.ready):
            with m.If(self.input.payload.end):
                m.d.sync += self.in_full.eq(1)
            with m.Else():
                m.d.comb += [
                    in_wr.addr.eq(Cat(position, in_wbank)),
                    in_wr.data.index.eq(self.input.payload.index),
                    in_wr.data.value.eq(self.input.payload.value),
                    in_wr.en.eq(1),
                ]
                m.d.sync += in_counts[in_wbank].eq(in_counts[in_wbank] + 1)
        with m.If(self.start_step):
            m.d.sync += [self.in_rbank.eq(in_wbank), in_wbank.eq(~in_wbank),
                         in_counts[~in_wbank].eq(0), self.in_full.eq(0)]
