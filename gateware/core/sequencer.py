"""The core's step sequencer: the layer and edge tables, and the state machine that
runs one time step over them.

Per step (``IDLE`` starts one when the input's next bank is full, the host is
not in the middle of a request and ``clear`` is low), for each layer ``l`` in
table order (``LAYER``), for each row ``k`` of a LIF layer::

    ROW     the row's parameters and membranes are read (``row_start``)
    EDGE    per edge: the source's list (this step's, or the previous step's for a
            recurrent edge; the input's bank for the input), its length and the
            row's weight base ``wbase + k * nsrc`` are loaded
    EVENTS  one event issued per clock (``issue``), counted once, at row 0
    DRAIN   3 clocks (pipelined: 6) until the row's last product is summed
    FIRE    every lane's saturation, spike and reset into registers
    NEURON  the row is offered to the spike router and written back when it is
            taken (``router_load``, ``can_load``)

so a row costs ``events + 2 * edges + timing.row_overhead`` synaptic clocks and
two neuron clocks, plus router waits; an SSM layer is run by the SSM unit
(``ssm_start`` .. ``ssm_done``).  ``LAYER_END`` waits until the router has
written every event of the layer (``router_free``: later layers read them);
``STEP_END`` writes the end-of-step record (``write_end``; pipelined, after the
router's last record) and swaps the event lists' banks (``end_step``).

Counters (a :class:`..counters.CounterBank`, read by the host through the
tables' view): per layer ``syn_cycles`` (ROW, EDGE, EVENTS, DRAIN),
``neuron_cycles`` (FIRE, NEURON), ``events`` (``spike_event`` of the router for
``spikes``), then the busy clocks and the steps.

Whether EVENTS issues another event is a flip-flop (``events_left``: loaded in
EDGE with whether the list is empty, then with ``n + 1 < cnt`` as each event
issues), so the decision to move to the next edge, and the edge register's load,
wait for no compare.

Checks: the entries a step walks are checked as it reaches them, from registers
(no clock added): a LIF layer's entry in its first EDGE clock (``rows`` not 0 and
at most ``ceil(max_neurons / P)``, ``size`` at most ``rows * P``, ``sbase`` below
``neuron_depth``, ``ecount`` at most ``max_edges``: compares with constants, no
adder), an edge's in
its first EVENTS clock (``src`` at most ``max_layers``, ``nsrc`` at most
``max(max_inputs, max_neurons)``, ``wbase`` below ``weight_depth``).  A failed
check stops the step in FAULT (``fault`` high, ``fault_info`` naming the entry and
the checks it failed) until the core is reset (the command engine does it and
answers BAD_TABLE).  The layer count needs no check: the walk stops at the
table's last entry.  An SSM layer's entry is not checked.

``busy`` reaches the lanes' memory ports from flip-flops (``busy_groups``,
equal to ``busy`` in every clock: set when IDLE starts a step, cleared when
STEP_END ends it), not from the state decode.

Pipelined: ``busy_groups`` is one flip-flop per group of 4 lanes, the
membranes' write enable as a flip-flop per group, high
exactly in NEURON (``membrane_write``); the edge entries the sequencer loads
next registered ahead (the row's first edge per layer, the edge after the
current one), ``events_left`` loaded from the lists' not-empty flags; the row's
valid lanes in two clocks (``size - k*P``, then a compare per lane with its
constant).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...contract.config import (
    COUNTERS,
    EDGE_CHECKS,
    EDGE_FIELDS,
    LAYER_CHECKS,
    LAYER_FIELDS,
    SSM_FIELDS,
    CoreConfig,
    Region,
)
from ...contract.timing import TimingProfile
from ..counters import CounterBank
from ..lane import shift_add_product
from ..layouts import struct_layout
from .host import view_layout

__all__ = ["StepSequencer", "FAULT_INFO_BITS"]

FAULT_INFO_BITS = 1 + 8 + max(len(LAYER_CHECKS), len(EDGE_CHECKS))
"""``fault_info``: bit 0 the kind (0 a layer, 1 an edge), bits 1..8 its index, then
one bit per failed check (``contract.config.LAYER_CHECKS`` / ``EDGE_CHECKS``)."""


def _fault_info(kind: int, index, failed):
    """``fault_info`` (``FAULT_INFO_BITS``) for the entry ``index`` of ``kind``."""
    index = Value.cast(index)[:8]
    return Cat(Const(kind, 1), index, Const(0, 8 - len(index)), failed)


class StepSequencer(wiring.Component):
    """The step sequencer for ``config`` and ``timing`` (module docs).

    Ports (pipelined adds ``counts_nz``, ``in_nz`` in; a core with an SSM unit adds
    ``ssm_*``):

    * host: ``tables`` (the tables' view of the request), ``counters_re``,
      ``host_req``, ``clear`` in; ``table_rdata``, ``counters_rdata`` out;
    * state: ``busy``, ``busy_groups``, ``li`` (the layer), ``k`` (the row), ``layer``
      (its table entry, registered), ``valid`` (the row's lanes that hold a neuron,
      registered) out;
    * event lists: ``in_full``, ``in_rbank``, ``cur``, ``counts``, ``in_counts`` in;
      ``start_step``, ``end_step`` and the read pointer ``rd_src``, ``rd_bank``,
      ``rd_n``, ``rd_from_input`` out;
    * synaptic pipeline: ``issue``, ``rowbase`` out, ``drained`` in;
    * neuron stage: ``row_addr``, ``row_start``, ``membrane_write`` out;
    * router and output: ``router_load``, ``write_end`` out; ``can_load``,
      ``router_free``, ``router_empty``, ``spike_event``, ``spike_layer``,
      ``out_ready`` (the output FIFO has room) in;
    * ``fault``, ``fault_info`` out: the step stopped at a bad table entry (module
      docs, Checks); the core stays in FAULT until it is reset.
    """

    def __init__(self, *, config: CoreConfig, timing: TimingProfile):
        c = config
        self.config, self.timing = c, timing
        self.groups = -(-c.lanes // 4)
        count = unsigned(max(c.max_neurons, c.max_inputs).bit_length())
        n_lists = 2 << c.src_bits
        ports = {
            "tables": In(view_layout(c)), "counters_re": In(1), "host_req": In(1),
            "clear": In(1), "table_rdata": Out(c.host_data_bits), "counters_rdata": Out(32),
            "busy": Out(1), "busy_groups": Out(self.groups), "li": Out(range(c.max_layers)),
            "k": Out(c.rows_bits), "layer": Out(struct_layout(LAYER_FIELDS(c))),
            "valid": Out(c.lanes),
            "in_full": In(1), "in_rbank": In(1), "cur": In(1),
            "counts": In(data.ArrayLayout(count, n_lists)),
            "in_counts": In(data.ArrayLayout(unsigned(c.max_inputs.bit_length()), 2)),
            "start_step": Out(1), "end_step": Out(1),
            "rd_src": Out(c.src_bits), "rd_bank": Out(1), "rd_n": Out(count),
            "rd_from_input": Out(1),
            "issue": Out(1), "rowbase": Out(c.wbase_bits + 1), "drained": In(1),
            "row_addr": Out(c.sbase_bits + 1), "row_start": Out(1),
            "membrane_write": Out(self.groups),
            "router_load": Out(1), "write_end": Out(1), "can_load": In(1),
            "router_free": In(1), "router_empty": In(1), "spike_event": In(1),
            "spike_layer": In(c.layer_bits), "out_ready": In(1),
            "fault": Out(1), "fault_info": Out(FAULT_INFO_BITS),
        }
        if timing.pipelined:
            ports.update(counts_nz=In(n_lists), in_nz=In(2))
        if c.has_ssm:
            ports.update(
                ssm_entry=Out(struct_layout(SSM_FIELDS(c))), ssm_start=Out(1),
                ssm_done=In(1), ssm_inc=In(3), ssm_ev_load=In(1), ssm_ev_src=In(c.src_bits),
                ssm_ev_list_bank=In(1), ssm_ev_from_input=In(1), ssm_ev_cnt=In(count),
                ssm_ev_step=In(1), cnt=Out(count))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        c = self.config
        L = c.max_layers
        n_counters = len(COUNTERS) * L + 2
        m.submodules.counters = counters = CounterBank(n=n_counters,
                                                       registered=self.timing.pipelined)
        m.d.comb += self.counters_rdata.eq(counters.rdata)
        tables = self._tables(m, counters, n_counters)
        li, k = self.li, self.k
        m.d.sync += self.layer.eq(tables.layers[li])
        m.d.comb += self.row_addr.eq(self.layer.sbase + k)
        edges = self._edges(m, tables)
        events = self._events(m, edges)
        self._valid_lanes(m)

        def bump(i, sel=li):
            # Counter i of layer ``sel`` + 1 (a per-counter enable, no read multiplexer).
            for lyr in range(L):
                with m.If(sel == lyr):
                    m.d.comb += counters.inc[lyr * len(COUNTERS) + i].eq(1)

        with m.If(self.spike_event):
            bump(3, self.spike_layer)
        with m.If(self.busy):
            m.d.comb += counters.inc[len(COUNTERS) * L].eq(1)
        with m.If(self.clear & ~self.busy):
            m.d.comb += counters.clear.eq(1)
        step_done = Signal(name="step_done")
        m.d.comb += counters.inc[len(COUNTERS) * L + 1].eq(step_done)
        if c.has_ssm:
            m.d.comb += [self.ssm_entry.eq(tables.ssm[li]), self.cnt.eq(events.cnt)]
        self._checks = self._entry_checks(m, edges)
        self._fsm(m, tables, edges, events, bump, step_done)
        return m

    def _entry_checks(self, m, edges):
        """The failed checks (module docs) of the layer entry ``layer`` and of the edge
        register, each a clock after them (flip-flops, a bit per check)."""
        c, layer, edge = self.config, self.layer, edges.edge
        P = c.lanes
        layer_bad = Signal(len(LAYER_CHECKS), name="layer_bad")
        edge_bad = Signal(len(EDGE_CHECKS), name="edge_bad")

        def over(field, limit):  # (no compare where the field cannot exceed the limit)
            return field > limit if (1 << len(field)) - 1 > limit else Const(0, 1)

        m.d.sync += [
            layer_bad.eq(Cat(layer.rows == 0, over(layer.rows, -(-c.max_neurons // P)),
                             layer.size > layer.rows * P, over(layer.sbase, c.neuron_depth - 1),
                             over(layer.ecount, c.max_edges))),
            edge_bad.eq(Cat(over(edge.src, c.max_layers),
                            over(edge.nsrc, max(c.max_inputs, c.max_neurons)),
                            over(edge.wbase, c.weight_depth - 1))),
        ]
        return SimpleNamespace(layer=layer_bad, edge=edge_bad)

    def _tables(self, m, counters, n_counters):
        """The layer, edge (and SSM) tables and the layer count, written by the host;
        the word at the host's address for its reads; the counters' read address."""
        c = self.config
        L = c.max_layers
        t = self.tables
        layers = Array(Signal(struct_layout(LAYER_FIELDS(c)), name=f"layer{i}")
                       for i in range(L))
        edges = Array(Signal(struct_layout(EDGE_FIELDS(c)), name=f"edge{i}")
                      for i in range(c.max_edges))
        ssm = (Array(Signal(struct_layout(SSM_FIELDS(c)), name=f"ssm{i}") for i in range(L))
               if c.has_ssm else None)
        num_layers = Signal(range(L + 1), name="num_layers")
        # Timing: the tables are indexed with only the address bits they need (the
        # host uses valid addresses only, see ``contract.config.address_map``).
        addr_layer = t.word[:max(1, (L - 1).bit_length())]
        addr_edge = t.word[:max(1, (c.max_edges - 1).bit_length())]
        m.d.comb += [counters.raddr.eq(t.word[:max(1, (n_counters - 1).bit_length())]),
                     counters.re.eq(self.counters_re)]
        regions = [(Region.LAYERS, layers[addr_layer]), (Region.EDGES, edges[addr_edge]),
                   (Region.CONTROL, num_layers)]
        if c.has_ssm:
            regions.append((Region.SSM_LAYERS, ssm[addr_layer]))
        with m.Switch(t.region):
            for region, target in regions:
                with m.Case(region):
                    with m.If(t.we):
                        m.d.sync += Value.cast(target).eq(t.wdata)
                    m.d.comb += self.table_rdata.eq(Value.cast(target))
        return SimpleNamespace(layers=layers, edges=edges, ssm=ssm, num_layers=num_layers)

    def _edges(self, m, tables):
        """The layer's end edge, the edge register ``edge`` (loaded whenever ``e`` is
        set: ``e_set`` to ``e_new``, ``e_row`` in ROW) from flip-flops, not from the
        table multiplexer.  Pipelined: the entries it can be loaded with are
        registered ahead: each layer's first edge (``edge_first_l<i>``, from the
        tables, which change only by host writes), the current layer's, and the edge
        after ``e``."""
        c = self.config
        L = c.max_layers
        layer, li = self.layer, self.li
        edge_l = struct_layout(EDGE_FIELDS(c))
        e_end = Signal(c.edge_bits + 1, name="e_end")
        m.d.sync += e_end.eq(layer.ebase + layer.ecount)
        e = Signal(c.edge_bits + 1, name="e")
        edge = Signal(edge_l, name="edge")
        e_set, e_row = Signal(name="e_set"), Signal(name="e_row")
        e_new = Signal.like(e, name="e_new")
        if self.timing.pipelined:
            firsts = [Signal(edge_l, name=f"edge_first_l{i}") for i in range(L)]
            m.d.sync += [f.eq(tables.edges[tables.layers[i].ebase[:c.edge_bits]])
                         for i, f in enumerate(firsts)]
            edge_first = Signal(edge_l, name="edge_first")
            edge_next = Signal(edge_l, name="edge_next")
            m.d.sync += [edge_first.eq(Array(firsts)[li]),
                         edge_next.eq(tables.edges[(e + 1)[:c.edge_bits]])]
            with m.If(e_set):
                m.d.sync += [e.eq(e_new), edge.eq(Mux(e_row, edge_first, edge_next))]
        else:
            with m.If(e_set):
                m.d.sync += [e.eq(e_new), edge.eq(tables.edges[e_new[:c.edge_bits]])]
        return SimpleNamespace(e=e, e_end=e_end, edge=edge, e_set=e_set, e_new=e_new, e_row=e_row)

    def _events(self, m, edges):
        """The read pointer into the event lists (``n`` of ``cnt`` events of the list
        ``src`` / ``bank``) and the edge's weight row base: EDGE registers its two
        terms, the first event's issue (a clock later) adds them."""
        c = self.config
        count = len(self.rd_n)
        n, cnt = self.rd_n, Signal(count, name="cnt")
        events_left = Signal(name="events_left")  # ``n < cnt``, in a flip-flop
        row_wbase = Signal(c.wbase_bits, name="row_wbase")
        row_offset = Signal(c.rows_bits + c.count_bits, name="row_offset")
        m.d.comb += self.rowbase.eq(row_wbase + row_offset)
        return SimpleNamespace(n=n, cnt=cnt, events_left=events_left, row_wbase=row_wbase,
                          row_offset=row_offset)

    def _valid_lanes(self, m):
        """The row's lanes that hold a neuron (``k * P + p < size``) and whether the
        row is the layer's last, in flip-flops (``k`` and the layer hold still from
        ROW on, at least 5 clocks before NEURON)."""
        c = self.config
        P, k, layer = c.lanes, self.k, self.layer
        self._last_row = last_row = Signal(name="last_row")
        if self.timing.pipelined:  # (one subtraction, then a compare per lane)
            left = Signal(signed(max(len(layer.size), len(k * P)) + 1), name="row_left")
            m.d.sync += [left.eq(layer.size - k * P), last_row.eq(k + 1 >= layer.rows)]
            m.d.sync += self.valid.eq(Cat(left > p for p in range(P)))
        else:
            m.d.sync += [self.valid.eq(Cat(k * P + p < layer.size for p in range(P))),
                         last_row.eq(k + 1 >= layer.rows)]

    def _fsm(self, m, tables, edges, ev, bump, step_done):
        c = self.config
        L = c.max_layers
        pipe = self.timing.pipelined
        li, k, busy = self.li, self.k, self.busy
        # ``busy`` as flip-flops for the lanes' memory ports, equal to it in every clock
        # (not the state decode; pipelined: one per group of 4 lanes, named
        # ``*_rep<g>``, which the board build keeps Yosys from merging)
        busy_q = Cat(Signal(name=f"busy_rep{g}") for g in range(self.groups))
        m.d.comb += self.busy_groups.eq(busy_q)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.in_full & ~self.clear & ~self.host_req):
                    m.d.comb += self.start_step.eq(1)
                    m.d.sync += [li.eq(0), busy_q.eq(-1)]
                    with m.If(tables.num_layers == 0):
                        m.next = "STEP_END"
                    with m.Else():
                        m.next = "LAYER"
            with m.State("LAYER"):
                m.d.comb += busy.eq(1)
                m.d.sync += k.eq(0)
                if c.has_ssm:
                    # ``layer`` (registered) still holds the previous layer's entry
                    # in this clock: the type bit comes straight from the table.
                    with m.If(tables.layers[li].ssm):
                        m.d.comb += self.ssm_start.eq(1)
                        m.next = "SSM"
                    with m.Else():
                        m.next = "ROW"
                else:
                    m.next = "ROW"
            self._row_states(m, edges, ev, bump)
            if c.has_ssm:
                with m.State("SSM"):  # the SSM unit runs the layer
                    m.d.comb += busy.eq(1)
                    self._ssm_state(m, ev, bump)
                    with m.If(self.ssm_done):
                        m.next = "LAYER_END"
            with m.State("LAYER_END"):
                m.d.comb += busy.eq(1)
                # Later layers read this layer's events: wait until all are written.
                with m.If(self.router_free):
                    with m.If((li + 1 >= tables.num_layers) | (li == L - 1)):
                        m.next = "STEP_END"
                    with m.Else():
                        m.d.sync += li.eq(li + 1)
                        m.next = "LAYER"
            with m.State("STEP_END"):
                m.d.comb += busy.eq(1)
                # (pipelined: LAYER_END waited for the events only, the end record
                # waits for the router's last records)
                ready = self.router_empty if pipe else 1
                m.d.comb += self.write_end.eq(ready)
                with m.If(self.out_ready & ready):
                    m.d.comb += [self.end_step.eq(1), step_done.eq(1)]
                    m.d.sync += busy_q.eq(0)
                    m.next = "IDLE"
            with m.State("FAULT"):  # a bad table entry: until the core is reset
                m.d.comb += [busy.eq(1), self.fault.eq(1)]

    def _row_states(self, m, edges, ev, bump):
        """The states of one row of a LIF layer (module docs)."""
        pipe = self.timing.pipelined
        k, layer, busy = self.k, self.layer, self.busy
        drain_n = Signal(3 if pipe else 2, name="drain_n")  # DRAIN's clock
        neuron_write = Signal(name="neuron_write")
        # pipelined: high exactly in NEURON, one flip-flop per group
        nwrite = Cat(Signal(name=f"nwrite_rep{g}") for g in range(self.groups))
        m.d.comb += self.membrane_write.eq(
            nwrite if pipe else neuron_write.replicate(self.groups))
        with m.State("ROW"):
            m.d.comb += [busy.eq(1), self.row_start.eq(1), edges.e_set.eq(1),
                         edges.e_new.eq(layer.ebase), edges.e_row.eq(1)]
            bump(0)
            m.next = "EDGE"
        checks = self._checks
        with m.State("EDGE"):
            m.d.comb += busy.eq(1)
            bump(0)
            with m.If(checks.layer.any()):
                m.d.sync += self.fault_info.eq(_fault_info(0, self.li, checks.layer))
                m.next = "FAULT"
            with m.Elif(edges.e == edges.e_end):
                m.next = "DRAIN"
            with m.Else():
                self._load_edge(m, edges.edge, ev)
                m.next = "EVENTS"
        with m.State("EVENTS"):
            m.d.comb += busy.eq(1)
            bump(0)
            with m.If(checks.edge.any()):
                m.d.sync += self.fault_info.eq(_fault_info(1, edges.e, checks.edge))
                m.next = "FAULT"
            with m.Elif(ev.events_left):
                m.d.comb += self.issue.eq(1)
                m.d.sync += [ev.n.eq(ev.n + 1), ev.events_left.eq(ev.n + 1 < ev.cnt)]
                with m.If(k == 0):  # each event counted once, at its first row
                    bump(2)
            with m.Else():
                m.d.comb += [edges.e_set.eq(1), edges.e_new.eq(edges.e + 1)]
                m.next = "EDGE"
        with m.State("DRAIN"):
            # Three clocks (pipelined: six): the row's last product is summed in the last.
            m.d.comb += busy.eq(1)
            bump(0)
            with m.If(drain_n != (5 if pipe else 2)):
                m.d.sync += drain_n.eq(drain_n + 1)
            with m.Elif(self.drained):
                m.d.sync += drain_n.eq(0)
                m.next = "FIRE"
        with m.State("FIRE"):
            m.d.comb += busy.eq(1)
            bump(1)
            if pipe:
                m.d.sync += nwrite.eq(-1)
            m.next = "NEURON"
        with m.State("NEURON"):
            m.d.comb += [busy.eq(1), self.router_load.eq(1)]
            bump(1)
            # Wait for the router to take the previous row (it runs concurrently; it
            # takes ``router_load`` only with ``can_load``).
            with m.If(self.can_load):
                if pipe:
                    m.d.sync += nwrite.eq(0)
                m.d.comb += neuron_write.eq(1)
                with m.If(self._last_row):
                    m.next = "LAYER_END"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
                    m.next = "ROW"

    def _load_edge(self, m, edge, ev):
        """EDGE: the pointer to the edge's source list, its length, the row base."""
        bank = self.cur ^ edge.recurrent
        is_input = edge.src == 0
        count = Mux(is_input, self.in_counts[self.in_rbank], self.counts[Cat(edge.src, bank)])
        m.d.sync += [
            self.rd_src.eq(edge.src),
            self.rd_from_input.eq(is_input),
            self.rd_bank.eq(Mux(is_input, self.in_rbank, bank)),
            ev.n.eq(0),
            ev.cnt.eq(count),
            ev.row_wbase.eq(edge.wbase),
            ev.row_offset.eq(shift_add_product(self.k, edge.nsrc)),
        ]
        if self.timing.pipelined:  # (from the lists' not-empty flags, a clock late)
            m.d.sync += ev.events_left.eq(Mux(
                is_input, self.in_nz.bit_select(self.in_rbank, 1),
                self.counts_nz.bit_select(Cat(edge.src, bank), 1)))
        else:
            m.d.sync += ev.events_left.eq(count != 0)

    def _ssm_state(self, m, ev, bump):
        """The SSM state: the unit's counter increments, and its pointer loads and
        steps through the event lists."""
        for i in range(3):  # (syn_cycles, neuron_cycles, events)
            with m.If(self.ssm_inc[i]):
                bump(i)
        with m.If(self.ssm_ev_load):
            m.d.sync += [
                self.rd_src.eq(self.ssm_ev_src), self.rd_from_input.eq(self.ssm_ev_from_input),
                self.rd_bank.eq(Mux(self.ssm_ev_from_input, self.in_rbank,
                                    self.ssm_ev_list_bank)),
                ev.n.eq(0), ev.cnt.eq(self.ssm_ev_cnt),
            ]
        with m.If(self.ssm_ev_step):
            m.d.sync += ev.n.eq(ev.n + 1)
