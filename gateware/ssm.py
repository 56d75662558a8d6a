"""The SSM / associative-memory unit of the NPU core (the integer model's SSM layer).

Per token (time step), for the SSM layer the core's sequencer hands it::

    S[t] = sat_s( floor( a[t] (.)rows S[t-1] / 2^F ) + k[t] v[t]^T )
    y[t] = sat_y( (S[t]^T q[t]) >> y_shift )

``S`` (``n x m``, signed ``s_bits``) lives in one memory per lane: lane ``p`` holds
the columns ``j = p, p + P, ...``, cell ``(i, j)`` at ``ssbase + i * chunks + j //
P``.  One parameter memory holds each layer's constant ``k``, ``v``, ``q`` (signed
``in_bits``) and its decay table (Q0.F; one row, or ``2**gate_bits`` rows in
selective mode), from ``pbase``: ``k`` at ``+0``, ``v`` at ``+n``, ``q`` at ``+n + m``,
the decay rows from ``+2n + m``.

Sequence (clocks exactly as ``contract.harness.expected_counters`` models them):

1. Gather (``inc_syn`` every clock): the operand registers are zeroed, then for
   ``k``, ``v``, ``q`` and the gate in turn, either the constant is copied from the
   parameter memory, one entry per clock, or the source's events of this step (of
   the previous step for a recurrent operand) are read through the core's event
   lists, one per clock (``ev_load`` sets the core's list pointer, ``ev_step``
   reads the next event; ``ev_index`` / ``ev_value`` bring it a clock later; each
   event raises ``inc_events``); a gate event ``b`` sets bit ``b`` of the table
   row.  ``10 + items`` clocks.
2. Pass (``inc_neuron`` every clock), per chunk of ``P`` columns: for each row
   ``i`` one clock reads ``S[i, cP + p]`` in every lane and the decay ``a_i``; the
   next clock every lane computes ``S' = sat_s(((a_i * S) >> F) + k_i * v_j)``,
   writes it and accumulates ``y_j += q_i * S'``.  When every decay of the layer is
   1.0 (``entry.skip``) only the rows with ``k_i != 0`` or ``q_i != 0`` are visited
   (a priority encoder picks the next, no idle clocks).  Then ``y_j =
   sat_y(acc_j >> y_shift)`` is offered to the spike router like a row of neurons
   (``row_*``; taken with ``can_load``).  ``rows + 4`` clocks per chunk.

Handshake: ``start`` (one clock, while idle) begins the layer whose table entry
is ``entry`` and whose layer-table fields are ``m_len`` (= ``m``), ``chunks``
(``ceil(m / P)``), ``emit_values`` and ``layer_index``; ``active`` is high until
the clock the last chunk's row is taken, in which ``done`` is high.  The core
reads and writes the memories through the ``host_*`` ports only while it is idle
(``busy`` low); ``param_rdata`` and ``state_rdata`` are the read ports' data.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..contract.config import SSM_FIELDS, CoreConfig
from .layouts import struct_layout

__all__ = ["SSMUnit"]


class SSMUnit(wiring.Component):
    """The SSM unit for a core built for ``config`` (module docs).

    Ports (widths from ``config``): ``start``, ``entry``, ``m_len``, ``chunks``,
    ``emit_values``, ``layer_index``, ``cur`` (this step's event bank), ``in_rbank``
    (the input bank this step reads), ``busy`` in; ``active``, ``done`` out.
    Event reads: ``ev_load`` with ``ev_src``, ``ev_list_bank``, ``ev_from_input``,
    ``ev_cnt`` out (load the core's list pointer; ``list_count`` in is the count of
    the list ``ev_src`` / ``ev_list_bank`` names, or of the input), ``n`` and
    ``cnt`` in (the pointer), ``ev_step`` out, ``ev_index`` / ``ev_value`` in.
    Counters: ``inc_syn``, ``inc_neuron``, ``inc_events`` out.  Router: ``row_load``,
    ``row_send``, ``row_spikes``, ``row_base``, ``row_values`` out, ``can_load`` in.
    Host: ``host_word``, ``host_wdata``, ``host_param_we`` (the tables' view of the
    request), per lane ``state_word``, ``state_wdata``, ``state_we`` in;
    ``param_rdata``, ``state_rdata`` out (one clock after the address).
    """

    def __init__(self, *, config: CoreConfig):
        c = config
        P = c.lanes
        self.config = c
        count = unsigned(max(c.max_neurons, c.max_inputs).bit_length())
        super().__init__({
            "start": In(1),
            "entry": In(struct_layout(SSM_FIELDS(c))),
            "m_len": In(unsigned(c.count_bits)),
            "chunks": In(unsigned(c.rows_bits)),
            "emit_values": In(1),
            "layer_index": In(unsigned(c.layer_bits)),
            "cur": In(1),
            "in_rbank": In(1),
            "busy": In(1),
            "active": Out(1),
            "done": Out(1),
            "ev_load": Out(1),
            "ev_src": Out(unsigned(c.src_bits)),
            "ev_list_bank": Out(1),
            "ev_from_input": Out(1),
            "ev_cnt": Out(count),
            "list_count": In(count),
            "n": In(count),
            "cnt": In(count),
            "ev_step": Out(1),
            "ev_index": In(unsigned(c.idx_bits)),
            "ev_value": In(signed(c.in_bits)),
            "inc_syn": Out(1),
            "inc_neuron": Out(1),
            "inc_events": Out(1),
            "row_load": Out(1),
            "row_send": Out(P),
            "row_spikes": Out(P),
            "row_base": Out(unsigned(c.idx_bits + 1)),
            "row_values": Out(data.ArrayLayout(signed(c.u_bits), P)),
            "can_load": In(1),
            "host_word": In(unsigned(c.addr_bits)),
            "host_wdata": In(unsigned(c.host_data_bits)),
            "host_param_we": In(1),
            "state_word": In(data.ArrayLayout(unsigned(c.addr_bits), P)),
            "state_wdata": In(data.ArrayLayout(unsigned(c.host_data_bits), P)),
            "state_we": In(P),
            "param_rdata": Out(unsigned(c.param_bits)),
            "state_rdata": Out(data.ArrayLayout(signed(c.s_bits), P)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        in_shape = signed(c.in_bits)
        regs = {
            "k": Array(Signal(in_shape, name=f"ssm_k{i}") for i in range(c.ssm_max_n)),
            "v": Array(Signal(in_shape, name=f"ssm_v{i}") for i in range(c.ssm_max_m)),
            "q": Array(Signal(in_shape, name=f"ssm_q{i}") for i in range(c.ssm_max_n)),
            "gate": Signal(8, name="ssm_gate"),
        }
        m.submodules.params = pmem = memory.Memory(
            shape=unsigned(c.param_bits), depth=c.ssm_param_depth, init=[])
        pm_rd, pm_wr = pmem.read_port(), pmem.write_port()
        m.d.comb += [pm_wr.addr.eq(self.host_word), pm_wr.data.eq(self.host_wdata),
                     pm_wr.en.eq(self.host_param_we), self.param_rdata.eq(pm_rd.data)]
        k = Signal(c.rows_bits, name="chunk")  # the chunk of columns being passed
        gather = self._gather(m, regs, pm_rd)
        passing = self._pass(m, regs, pm_rd, k)
        self._sequence(m, regs, pm_rd, k, gather, passing)
        return m

    def _gather(self, m, regs, pm_rd):
        """The operand registers' writes: operand ``gop`` (0 k, 1 v, 2 q, 3 gate) item
        ``n`` (a constant at ``gbase + n`` or an event), written a clock after its read."""
        c = self.config
        gop = Signal(3, name="gop")
        g_const = Signal(name="g_const")
        gbase = Signal(c.ssm_param_depth.bit_length() + 1, name="gbase")
        g1_valid, g1_const = Signal(name="g1_valid"), Signal(name="g1_const")
        g1_op = Signal.like(gop, name="g1_op")
        g1_n = Signal.like(self.n, name="g1_n")
        m.d.sync += [g1_valid.eq(self.ev_step), g1_op.eq(gop), g1_const.eq(g_const),
                     g1_n.eq(self.n)]
        g_index = Signal(c.idx_bits, name="g_index")
        g_value = Signal(signed(c.in_bits), name="g_value")
        m.d.comb += [
            g_index.eq(Mux(g1_const, g1_n, self.ev_index)),
            g_value.eq(Mux(g1_const, pm_rd.data[:c.in_bits].as_signed(), self.ev_value)),
        ]
        with m.If(g1_valid):
            with m.Switch(g1_op):
                for code, op in enumerate("kvq"):
                    with m.Case(code):
                        m.d.sync += regs[op][g_index].eq(g_value)
                with m.Case(3):
                    for b in range(8):
                        with m.If(g_index == b):
                            m.d.sync += regs["gate"][b].eq(1)
        m.d.comb += pm_rd.addr.eq(Mux(self.busy, gbase + self.n, self.host_word))
        return gop, g_const, gbase

    def _pass(self, m, regs, pm_rd, k):
        """The decay-update-readout pass of chunk ``k``: the row picker, and per lane
        the state's read, update, write and the readout accumulator."""
        c = self.config
        P = c.lanes
        entry = self.entry
        kregs, vregs, qregs = regs["k"], regs["v"], regs["q"]
        # Rows to visit: all of them, or with ``skip`` (every decay is 1.0, so a row
        # with k_i = 0 keeps its state) only rows with k_i != 0 or q_i != 0.
        i = Signal(range(c.ssm_max_n + 1), name="pass_row")  # the first row not yet visited
        active = Signal(c.ssm_max_n, name="rows_left")
        for r in range(c.ssm_max_n):
            m.d.comb += active[r].eq((r >= i) & (r < entry.n)
                                     & (~entry.skip | (kregs[r] != 0) | (qregs[r] != 0)))
        row = Signal(range(c.ssm_max_n), name="next_row")  # the next row, if ``found``
        found = Signal(name="found")
        m.d.comb += found.eq(active.any())
        for r in reversed(range(c.ssm_max_n)):
            with m.If(active[r]):
                m.d.comb += row.eq(r)
        saddr = Signal(c.ssm_depth.bit_length() + 1, name="saddr")
        m.d.comb += saddr.eq(entry.ssbase + row * self.chunks + k)
        p_issue, p1_valid = Signal(name="p_issue"), Signal(name="p1_valid")
        p1_i = Signal.like(row, name="p1_row")
        p1_addr = Signal.like(saddr, name="p1_addr")
        m.d.sync += [p1_valid.eq(p_issue), p1_i.eq(row), p1_addr.eq(saddr)]
        s_min, s_max = -(1 << (c.s_bits - 1)), (1 << (c.s_bits - 1)) - 1
        y_min, y_max = -(1 << (c.y_bits - 1)), (1 << (c.y_bits - 1)) - 1
        decay = pm_rd.data[:c.frac_bits + 1]
        yacc = [Signal(signed(c.ssm_acc_bits), name=f"ssm_yacc{p}") for p in range(P)]
        ys = [Signal(signed(c.y_bits), name=f"ssm_y{p}") for p in range(P)]
        ynz = Signal(P, name="ssm_ynz")
        valid = Signal(P, name="valid_lanes")
        k_i, q_i = kregs[p1_i], qregs[p1_i]
        for p in range(P):
            smem = memory.Memory(shape=signed(c.s_bits), depth=c.ssm_depth, init=[])
            m.submodules[f"state{p}"] = smem
            rd, wr = smem.read_port(), smem.write_port()
            v_j = Signal(signed(c.in_bits), name=f"ssm_vsel{p}")
            wide = Signal(signed(c.s_bits + 2 * c.in_bits + 2), name=f"ssm_wide{p}")
            new = Signal(signed(c.s_bits), name=f"ssm_new{p}")
            shifted = Signal(signed(c.ssm_acc_bits), name=f"ssm_shifted{p}")
            m.d.comb += [
                valid[p].eq(k * P + p < self.m_len),
                v_j.eq(vregs[k * P + p]),
                wide.eq(((decay * rd.data) >> c.frac_bits) + k_i * v_j),
                new.eq(Mux(wide > s_max, s_max, Mux(wide < s_min, s_min, wide))),
                rd.addr.eq(Mux(self.busy, saddr, self.state_word[p])),
                wr.addr.eq(Mux(self.busy, p1_addr, self.state_word[p])),
                wr.data.eq(Mux(self.busy, new, self.state_wdata[p])),
                wr.en.eq(Mux(self.busy, p1_valid & valid[p], self.state_we[p])),
                self.state_rdata[p].eq(rd.data),
                shifted.eq(yacc[p] >> entry.y_shift),
                ys[p].eq(Mux(shifted > y_max, y_max, Mux(shifted < y_min, y_min, shifted))),
                ynz[p].eq(ys[p] != 0),
            ]
            with m.If(p1_valid):
                m.d.sync += yacc[p].eq(yacc[p] + q_i * new)
        m.d.comb += [
            self.row_send.eq(Mux(self.emit_values, valid, ynz & valid)),
            self.row_spikes.eq(ynz),
            self.row_base.eq(k * P),
        ] + [self.row_values[p].eq(ys[p]) for p in range(P)]
        return i, row, found, p_issue, yacc

    def _sequence(self, m, regs, pm_rd, k, gather, passing):
        """The unit's states: gather each operand, then one pass per chunk."""
        c = self.config
        entry = self.entry
        gop, g_const, gbase = gather
        i, row, found, p_issue, yacc = passing
        arow = Signal(c.ssm_param_depth.bit_length() + 1, name="arow")
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += k.eq(0)
                    m.next = "LAYER"
            with m.State("LAYER"):
                m.d.comb += [self.active.eq(1), self.inc_syn.eq(1)]
                m.d.sync += [r.eq(0) for op in "kvq" for r in regs[op]]
                m.d.sync += [regs["gate"].eq(0), gop.eq(0)]
                m.next = "OP"
            with m.State("OP"):
                m.d.comb += [self.active.eq(1), self.inc_syn.eq(1)]
                with m.If(gop == 4):
                    m.next = "CHUNK"
                with m.Else():
                    self._operand(m, gop, g_const, gbase)
                    m.next = "GATHER"
            with m.State("GATHER"):
                m.d.comb += [self.active.eq(1), self.inc_syn.eq(1)]
                with m.If(self.n < self.cnt):
                    m.d.comb += [self.ev_step.eq(1), self.inc_events.eq(~g_const)]
                with m.Else():
                    m.d.sync += gop.eq(gop + 1)
                    m.next = "OP"
            with m.State("CHUNK"):
                m.d.comb += [self.active.eq(1), self.inc_neuron.eq(1)]
                dbase = entry.pbase + 2 * entry.n + self.m_len
                m.d.sync += [i.eq(0), arow.eq(dbase + regs["gate"] * entry.n)]
                m.d.sync += [a.eq(0) for a in yacc]
                m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += [self.active.eq(1), self.inc_neuron.eq(1)]
                with m.If(found):
                    m.d.comb += [p_issue.eq(1), pm_rd.addr.eq(arow + row)]
                    m.d.sync += i.eq(row + 1)
                with m.Else():
                    m.next = "Y"
            with m.State("Y"):  # the last row's update and readout
                m.d.comb += [self.active.eq(1), self.inc_neuron.eq(1)]
                m.next = "ROUTE"
            with m.State("ROUTE"):
                m.d.comb += [self.active.eq(1), self.inc_neuron.eq(1), self.row_load.eq(1)]
                with m.If(self.can_load):
                    with m.If(k + 1 >= self.chunks):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += k.eq(k + 1)
                        m.next = "CHUNK"

    def _operand(self, m, gop, g_const, gbase):
        """OP: where operand ``gop`` comes from; load the core's list pointer (an
        event source) or the parameter base (a constant) and the item count."""
        c = self.config
        entry = self.entry
        src = Signal(c.src_bits, name="op_src")
        rec, const, present = Signal(name="op_rec"), Signal(name="op_const"), Signal()
        length = Signal.like(self.ev_cnt, name="op_length")
        base = Signal.like(gbase, name="op_base")
        with m.Switch(gop):
            for code, op, off, ln in ((0, "k", 0, entry.n),
                                      (1, "v", entry.n, self.m_len),
                                      (2, "q", entry.n + self.m_len, entry.n)):
                with m.Case(code):
                    m.d.comb += [src.eq(getattr(entry, f"{op}_src")),
                                 rec.eq(getattr(entry, f"{op}_rec")),
                                 const.eq(getattr(entry, f"{op}_const")),
                                 present.eq(1), length.eq(ln), base.eq(entry.pbase + off)]
            with m.Case(3):
                m.d.comb += [src.eq(entry.g_src), rec.eq(entry.g_rec),
                             present.eq(entry.selective)]
        m.d.comb += [
            self.ev_load.eq(1),
            self.ev_src.eq(src),
            self.ev_list_bank.eq(self.cur ^ rec),
            self.ev_from_input.eq(src == 0),
            self.ev_cnt.eq(Mux(present, Mux(const, length, self.list_count), 0)),
        ]
        m.d.sync += [g_const.eq(const), gbase.eq(base)]
