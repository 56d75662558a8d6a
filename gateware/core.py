"""The NPU core: P NPE lanes, event lists with a spike router, a time-step
sequencer and (``CoreConfig.has_ssm``) an SSM unit, computing the integer model
of ``golden/integer.py`` (LIF and SSM layers).

Contract
--------
Memories and tables are laid out as :mod:`..contract.config` describes and are written
through the host port while the core is idle (``busy`` low).

Host port: ``host_addr``/``host_wdata`` with ``host_we`` write one word;
``host_re`` reads one word, returned in ``host_rdata`` with ``host_rvalid``
``timing.host_read_latency`` (1 to 6) cycles later; reads may follow each other
every clock.  Only while ``busy`` is low.  ``clear`` (one cycle, idle only)
empties the event lists of both banks (so recurrent edges see zeros at the next
step) and zeroes the counters; membranes are reset by writing them.

``input`` stream: zero or more events ``(index, value, end=0)`` of one step
followed by one marker with ``end=1``.  Spike inputs carry ``value = 1``;
multi-bit inputs the signed value (zeros need not be sent: a zero costs
nothing).  The input is double-buffered: the next step's events stream in while
a step runs; after its end marker the stream stalls until the core, idle again,
starts that step.

``output`` stream: per step, for every layer in order, a ``kind=0`` record per
spike (``layer``, ``index``) of layers that do not emit values, and for the
output layer (``emit_values``) a ``kind=1`` record per neuron with its spike and
membrane ``u[t]``; then one ``kind=2`` record ending the step.  Backpressure
stalls the core; nothing is dropped.

Per step, for each layer ``l`` in table order and each row ``k`` (lane ``p``
owns neuron ``k*P + p``):

* synaptic phase: for each edge, each event ``(j, x)`` of its source (this
  step's list, or the previous step's for a recurrent edge) is read once and
  every lane accumulates ``W[k*P + p, j] * x`` from its own weight memory at
  ``wbase + k*nsrc + j``; one event per clock, a 6-stage pipeline
  (event read, weight address register, weight read, weight register, multiply,
  accumulate);
* the leak ``((alpha * u) >> F) + bias`` of the row's neurons is computed from
  the membranes and parameters read at the row's start and added into the
  accumulators before the first event (a pipeline stage hidden in the
  synaptic phase: no extra clock);
* neuron phase, two clocks: every lane computes
  ``v = sat(acc)`` (``= sat(((alpha * u) >> F) + sum + bias)``),
  ``s = spiking & (v >= theta)`` and the reset into registers (FIRE), then writes
  ``u`` and hands the row to the router (NEURON);
* spike router: the row's spikes go, one per clock and overlapped with the next
  row, into the layer's event list (its source events for later layers and, on
  recurrent edges, for the next step) and to the output stream.

Cost of a row: ``events + 2 * edges + 5`` synaptic clocks (7 with
``timing.ram_register``, whose event and weight registers make the pipeline 8
stages; 8 with ``timing.product_register`` as well) and two neuron clocks
(plus router waits when a row has more to route than the next row has clocks),
so a step costs about
``rows * (events + c)`` = ``(events * fan-out + neurons) / P`` plus a small
fixed overhead per row; zero events cost zero synaptic clocks.

SSM layers (layer-table bit ``ssm``, entry in the SSM table; state per lane,
lane ``p`` holding columns ``p, p + P, ...``; see ``docs/gateware.md``), per step:

* gather: zero the operand registers ``k``, ``v``, ``q``, gate; for each operand
  copy its constant from the parameter memory or read its source's events (this
  step's list, or the previous step's when recurrent), one per clock; a gate
  event ``b`` sets bit ``b`` of the table row ``g``.  ``10 + items`` clocks;
* pass, per chunk of ``P`` columns, one row ``i`` per clock (2-stage pipeline:
  read ``S`` and ``a_i``; then ``S' = sat_s(((a_i * S) >> F) + k_i * v_j)``,
  write, ``acc_j += q_i * S'``); then ``y_j = sat_y(acc_j >> y_shift)`` goes to
  the router like a row of neurons (events ``(j, y_j)`` for ``y_j != 0``).
  ``rows + 4`` clocks per chunk; ``rows = n``, or when every decay is 1.0 only
  the rows with ``k_i != 0`` or ``q_i != 0`` (the others are unchanged).
"""

from __future__ import annotations

import functools
import operator
from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.config import (
    COUNTERS,
    EDGE_FIELDS,
    LAYER_FIELDS,
    PARAM_FIELDS,
    RECORD_FIELDS,
    SSM_FIELDS,
    CoreConfig,
    Region,
)
from ..contract.timing import TimingProfile
from .counters import CounterBank
from .dsp import RegisteredProduct
from .lane import NeuronFire, NeuronFireAhead, NeuronLeak, shift_add_product, total_bits
from .layouts import input_layout, registered, struct_layout
from .memports import NO_RW_CHECK, nrw_read_port
from .router import PipelinedSpikeRouter, SendFlags, SpikeRouter
from .ssm import SSMUnit

__all__ = ["NPUCore", "check_core_arguments"]

def check_core_arguments(owner, *, config, weight_memory, timing=None) -> None:
    """Validate the core's arguments for ``owner`` (the core, or a component that
    passes them on to it); raise TypeError naming the bad value."""
    if not isinstance(config, CoreConfig):
        owner._MustUse__silence = True  # never elaborated: no "unused" warning
        raise TypeError(f"config must be a CoreConfig, not {config!r}")
    if weight_memory is not None and not callable(weight_memory):
        owner._MustUse__silence = True
        raise TypeError(f"weight_memory must be None or a callable, not {weight_memory!r}")
    if timing is not None and not isinstance(timing, TimingProfile):
        owner._MustUse__silence = True
        raise TypeError(f"timing must be None or a TimingProfile, not {timing!r}")


class NPUCore(wiring.Component):
    """The NPU core for the generics in ``config`` (a :class:`..contract.config.CoreConfig`).

    ``weight_memory``: ``None`` (an Amaranth ``Memory`` per lane), or a callable
    ``(shape=, depth=)`` returning a component with ``read`` (``addr`` in,
    ``data`` out one clock later, every clock) and ``write`` (``addr``,
    ``data``, ``en`` in) members, e.g. ``boards.mem.SPRAMWeights`` to put the
    weights into iCE40 SPRAM.  The core writes weights only while idle and
    reads them only while busy, so a single-port memory serves both.

    ``timing``: a :class:`..contract.timing.TimingProfile` (``None``: ``COMPACT``), how the
    core is pipelined; ``host_rvalid`` comes ``timing.host_read_latency`` clocks
    after ``host_re``.
    """

    def __init__(self, *, config: CoreConfig, weight_memory=None,
                 timing: TimingProfile | None = None):
        check_core_arguments(self, config=config, weight_memory=weight_memory, timing=timing)
        self.weight_memory = weight_memory
        self.timing = timing or TimingProfile.COMPACT
        self.config = c = config
        self.record_layout = struct_layout(RECORD_FIELDS(c))
        super().__init__({
            "host_addr": In(c.host_addr_bits),
            "host_wdata": In(c.host_data_bits),
            "host_we": In(1),
            "host_re": In(1),
            "host_rdata": Out(c.host_data_bits),
            "host_rvalid": Out(1),
            "clear": In(1),
            "busy": Out(1),
            "input": In(stream.Signature(input_layout(c))),
            "output": Out(stream.Signature(self.record_layout)),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        P = c.lanes
        L = c.max_layers
        pipe = self.timing.pipelined
        layer_l = struct_layout(LAYER_FIELDS(c))
        edge_l = struct_layout(EDGE_FIELDS(c))
        param_l = struct_layout(PARAM_FIELDS(c))
        u_shape = signed(c.u_bits)

        # ------------------------------------------------------------ storage
        layers = Array(Signal(layer_l, name=f"layer{i}") for i in range(L))
        edges = Array(Signal(edge_l, name=f"edge{i}") for i in range(c.max_edges))
        num_layers = Signal(range(L + 1))
        nsrc = L + 1  # event sources: the input, then each layer
        # Indexed by Cat(source, bank): sized for the full index space.
        counts = Array(Signal(range(max(c.max_neurons, c.max_inputs) + 1), name=f"count{i}")
                       for i in range(2 << c.src_bits))
        # The counters (per layer COUNTERS, then busy clocks and steps) live in a block
        # RAM (area); the FSM raises one ``inc`` bit per counter and clock.
        n_counters = len(COUNTERS) * L + 2
        m.submodules.counters = counters = CounterBank(n=n_counters, registered=pipe)
        n_ctr = len(COUNTERS)

        ev_layout = data.StructLayout({"index": unsigned(c.idx_bits),
                                       "value": signed(c.in_bits)})
        # ``NO_RW_CHECK`` (area): on these memories the core never uses the data of a
        # read that collides with a write to the same address (the event lists: a layer
        # is never read while the router writes its current bank; membranes: NEURON
        # writes the row the read port still points at, whose data nobody uses; weights
        # and parameters: written only while idle), so synthesis need not build the
        # old-data bypass (a flip-flop per data bit and a multiplexer on iCE40).
        m.submodules.events = events = memory.Memory(
            shape=ev_layout, depth=2 << (c.src_bits + c.idx_bits), init=[],
            attrs=NO_RW_CHECK)
        ev_rd = nrw_read_port(m, events, "events")
        ev_wr = events.write_port()
        # The input's events live in their own two-bank memory, so the next step's
        # input streams in while this step runs.
        m.submodules.input_events = input_events = memory.Memory(
            shape=ev_layout, depth=2 << c.idx_bits, init=[], attrs=NO_RW_CHECK)
        in_rd = nrw_read_port(m, input_events, "input_events")
        in_wr = input_events.write_port()

        if c.has_ssm:
            ssm_l = struct_layout(SSM_FIELDS(c))
            ssm_table = Array(Signal(ssm_l, name=f"ssm{i}") for i in range(L))
            m.submodules.ssm = ssm = SSMUnit(config=c)

        weights, params, membranes = [], [], []
        # Pipelined: the parameter memories are block RAM, and every memory read is
        # registered before use, as block RAM needs.
        param_attrs = {**NO_RW_CHECK, "ram_style": "block"} if pipe else NO_RW_CHECK
        for p in range(P):
            if self.weight_memory is None:
                wmem = memory.Memory(shape=signed(c.w_bits), depth=c.weight_depth, init=[],
                                     attrs=NO_RW_CHECK)
                w_ports = (nrw_read_port(m, wmem, f"weights{p}"), wmem.write_port())
            else:
                wmem = self.weight_memory(shape=signed(c.w_bits), depth=c.weight_depth)
                w_ports = (wmem.read, wmem.write)
            pmem = memory.Memory(shape=param_l, depth=c.neuron_depth, init=[],
                                 attrs=param_attrs)
            umem = memory.Memory(shape=u_shape, depth=c.neuron_depth, init=[],
                                 attrs=NO_RW_CHECK)
            m.submodules[f"weights{p}"] = wmem
            m.submodules[f"params{p}"] = pmem
            m.submodules[f"membranes{p}"] = umem
            p_ports = (nrw_read_port(m, pmem, f"params{p}"), pmem.write_port())
            u_ports = (nrw_read_port(m, umem, f"membranes{p}"), umem.write_port())
            if pipe:  # every use (and the host's read-back) takes the registered data
                w_ports, p_ports, u_ports = (
                    (SimpleNamespace(addr=rd.addr, data=registered(m, rd.data, f"{n}{p}")), wr)
                    for (rd, wr), n in ((w_ports, "w_q"), (p_ports, "prm_q"),
                                        (u_ports, "u_q")))
            weights.append(w_ports)
            params.append(p_ports)
            membranes.append(u_ports)

        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(
            width=self.record_layout.size, depth=c.event_fifo_depth)
        m.d.comb += [
            self.output.payload.eq(out_fifo.r_data),
            self.output.valid.eq(out_fifo.r_rdy),
            out_fifo.r_en.eq(self.output.ready),
        ]

        # ------------------------------------------------------- host access
        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        host_ok = ~busy
        # Pipelined: ``busy`` as flip-flops, one copy per group of 4 lanes, for the
        # lanes' memory ports (not the state decode, nor one net to every lane); each
        # copy equals ``busy`` in every clock (set when IDLE starts a step, cleared
        # when STEP_END ends it, the only ways in and out of IDLE).
        groups = -(-P // 4)
        busy_q = [Signal(name=f"busy_rep{g}") for g in range(groups)] if pipe else [busy] * groups
        # The host request as the memories see it: one view per group of 4 lanes and
        # one (the last) for the tables, counters and SSM parameters.  Pipelined: each
        # view is a register copy of the port (``hreq_rep<g>_*``, taken while the core
        # is idle): writes land a clock later and reads return a clock later, and IDLE
        # does not start a step in the clock of a request (its memory access, a clock
        # later, must not meet the sequencer's), nor in the clock after it (the
        # per-layer first edges come a clock after the tables).  Compact: every view is
        # the port itself.
        host_req = Signal()
        hreq = []
        for g in range(groups + 1):
            h = SimpleNamespace(ok=host_ok if g == groups else
                                (~busy_q[g] if pipe else host_ok),
                                addr=self.host_addr, wdata=self.host_wdata,
                                we=self.host_we, re=self.host_re)
            if pipe:
                h = SimpleNamespace(
                    ok=Const(1),
                    addr=Signal.like(self.host_addr, name=f"hreq_rep{g}_addr", reset_less=True),
                    wdata=Signal.like(self.host_wdata, name=f"hreq_rep{g}_wdata",
                                      reset_less=True),
                    we=Signal(name=f"hreq_rep{g}_we"), re=Signal(name=f"hreq_rep{g}_re"))
                m.d.sync += [h.addr.eq(self.host_addr), h.wdata.eq(self.host_wdata),
                             h.we.eq(host_ok & self.host_we), h.re.eq(host_ok & self.host_re)]
            h.region = h.addr[c.lane_bits + c.addr_bits:]
            h.lane = h.addr[c.addr_bits:c.addr_bits + c.lane_bits]
            h.word = h.addr[:c.addr_bits]
            hreq.append(h)
        if pipe:
            host_req_q = Signal()
            m.d.sync += host_req_q.eq(self.host_we | self.host_re)
            m.d.comb += host_req.eq(self.host_we | self.host_re | host_req_q)
        hc = hreq[groups]  # the tables' view
        region, lane, addr = hc.region, hc.lane, hc.word
        # Timing: the tables are indexed with only the address bits they need (the
        # host uses valid addresses only, see ``layout.address_map``).
        addr_layer = addr[:max(1, (L - 1).bit_length())]
        addr_edge = addr[:max(1, (c.max_edges - 1).bit_length())]
        addr_ctr = addr[:max(1, (n_counters - 1).bit_length())]

        with m.If(hc.ok & hc.we):
            with m.Switch(region):
                with m.Case(Region.LAYERS):
                    m.d.sync += layers[addr_layer].as_value().eq(hc.wdata)
                with m.Case(Region.EDGES):
                    m.d.sync += edges[addr_edge].as_value().eq(hc.wdata)
                with m.Case(Region.CONTROL):
                    m.d.sync += num_layers.eq(hc.wdata)
                if c.has_ssm:
                    with m.Case(Region.SSM_LAYERS):
                        m.d.sync += ssm_table[addr_layer].as_value().eq(hc.wdata)
        if c.has_ssm:
            m.d.comb += [
                ssm.host_word.eq(addr),
                ssm.host_wdata.eq(hc.wdata),
                ssm.host_param_we.eq(hc.ok & hc.we & (region == Region.SSM_PARAMS)),
            ]
            for p in range(P):
                h = hreq[p // 4]
                m.d.comb += [
                    ssm.state_word[p].eq(h.word), ssm.state_wdata[p].eq(h.wdata),
                    ssm.state_we[p].eq(h.we & (h.region == Region.SSM_STATE) & (h.lane == p)),
                ]
        for p in range(P):
            h = hreq[p // 4]
            for (_, wr), reg in ((weights[p], Region.WEIGHTS), (params[p], Region.PARAMS)):
                if not (pipe and reg == Region.PARAMS):  # (with the read ports below)
                    m.d.comb += wr.addr.eq(h.word)
                m.d.comb += [
                    wr.data.eq(h.wdata),
                    wr.en.eq(h.ok & h.we & (h.region == reg) & (h.lane == p)),
                ]

        rd_region = Signal.like(region)
        rd_lane = Signal.like(lane)
        rd_reg = Signal(c.host_data_bits)
        rd_valid = self.host_rvalid
        if pipe:  # (host_read_latency 6: rd_valid, rd_valid_d0..2, host_rvalid)
            rd_valid = Signal()
            v = rd_valid
            for i in range(3):
                q = Signal(name=f"rd_valid_d{i}")
                m.d.sync += q.eq(v)
                v = q
            m.d.sync += self.host_rvalid.eq(v)
        m.d.sync += [rd_valid.eq(hc.ok & hc.re), rd_region.eq(region), rd_lane.eq(lane)]
        with m.Switch(region):
            with m.Case(Region.LAYERS):
                m.d.sync += rd_reg.eq(layers[addr_layer].as_value())
            with m.Case(Region.EDGES):
                m.d.sync += rd_reg.eq(edges[addr_edge].as_value())
            with m.Case(Region.CONTROL):
                m.d.sync += rd_reg.eq(num_layers)
            if c.has_ssm:
                with m.Case(Region.SSM_LAYERS):
                    m.d.sync += rd_reg.eq(ssm_table[addr_layer].as_value())
        lane_data = {Region.WEIGHTS: Array(w[0].data.as_unsigned() for w in weights),
                     Region.PARAMS: Array(pr[0].data.as_value() for pr in params),
                     Region.MEMBRANES: Array(u[0].data.as_unsigned() for u in membranes)}
        if c.has_ssm:
            lane_data[Region.SSM_STATE] = Array(
                (registered(m, ssm.state_rdata[p], f"ssm_state_q{p}") if pipe
                 else ssm.state_rdata[p]).as_unsigned() for p in range(P))
            lane_data[Region.SSM_PARAMS] = Array([ssm.param_rdata])
        if not pipe:
            with m.Switch(rd_region):
                for reg, arr in lane_data.items():
                    with m.Case(reg):
                        m.d.comb += self.host_rdata.eq(arr[rd_lane])
                with m.Case(Region.COUNTERS):
                    m.d.comb += self.host_rdata.eq(counters.rdata)
                with m.Default():
                    m.d.comb += self.host_rdata.eq(rd_reg)
        else:
            others = {Region.COUNTERS: counters.rdata}
            if c.has_ssm:  # one memory, whatever the lane bits
                others[Region.SSM_PARAMS] = lane_data.pop(Region.SSM_PARAMS)[0]
            # Each group's lanes are steered by its own view of the request (the lanes'
            # data come a clock later than the request's registers).
            steer = []
            for g in range(groups):
                sr = Signal.like(region, name=f"rd_region_rep{g}", reset_less=True)
                sl = Signal.like(lane, name=f"rd_lane_rep{g}", reset_less=True)
                m.d.sync += [sr.eq(hreq[g].region), sl.eq(hreq[g].lane)]
                sr = registered(m, sr, f"rd_region_rep{g}_q")
                sl = registered(m, sl, f"rd_lane_rep{g}_q")
                steer.append((sr, sl))
            self._host_read_stage(m, lane_data, others, rd_region, rd_reg, steer)

        # ------------------------------------------------- sequencer state
        cur = Signal()  # the bank of this step's event lists
        li = Signal(range(L))  # layer being processed
        # Timing: the current layer's table entry, registered (every use comes at
        # least one clock after ``li`` changes), and its end edge (two clocks).
        layer = Signal(layer_l)
        m.d.sync += layer.eq(layers[li])
        e_end = Signal(c.edge_bits + 1)
        m.d.sync += e_end.eq(layer.ebase + layer.ecount)
        k = Signal(c.rows_bits)  # row
        e = Signal(c.edge_bits + 1)  # edge
        # Timing: the edge's table entry, registered: whenever ``e`` is set (``e_set``
        # to ``e_new``), ``edge`` is loaded with ``edges[e_new]`` in the same clock, so
        # EDGE starts from flip-flops and not from the table multiplexer.
        edge = Signal(edge_l)
        e_set = Signal()
        e_new = Signal.like(e)
        e_row = Signal()  # (``timing.edge_ahead``) ``e_set`` in ROW
        if pipe:
            # The entries ``edge`` can be loaded with are registered pipe: the row's
            # first edge from the layer being entered (``li`` is set at least a
            # clock before ROW) and the edge after ``e`` (``e`` is set at least two
            # clocks before EVENTS moves on), so no adder or table multiplexer sits
            # before ``edge``.  Each layer's first edge is itself a register
            # (``edge_first_l<i>``, from the tables, which change only by host writes:
            # IDLE waits out the clock after a host request), so ``edge_first`` takes
            # one multiplexer over the layers, not two tables in a row.
            firsts = [Signal(edge_l, name=f"edge_first_l{i}") for i in range(L)]
            m.d.sync += [f.eq(edges[layers[i].ebase[:c.edge_bits]])
                         for i, f in enumerate(firsts)]
            edge_first = Signal(edge_l, name="edge_first")
            edge_next = Signal(edge_l, name="edge_next")
            m.d.sync += [edge_first.eq(Array(firsts)[li]),
                         edge_next.eq(edges[(e + 1)[:c.edge_bits]])]
            with m.If(e_set):
                m.d.sync += [e.eq(e_new), edge.eq(Mux(e_row, edge_first, edge_next))]
        else:
            with m.If(e_set):
                m.d.sync += [e.eq(e_new), edge.eq(edges[e_new[:c.edge_bits]])]
        n = Signal(range(max(c.max_neurons, c.max_inputs) + 1))  # event within an edge
        # (``timing.edge_ahead``) ``n < cnt`` in EVENTS, kept in a flip-flop (set in
        # EDGE and as each event issues): ``issue`` enables the pipeline's first
        # registers, the event counters and ``n``, so it comes from no compare.
        events_left = Signal(name="events_left")
        cnt = Signal.like(n)
        src_sel = Signal(c.src_bits)
        bank_sel = Signal()
        # The edge's weight row base ``wbase + k * nsrc``: EDGE registers the two
        # terms, the first event's issue (a clock later) adds them (timing).
        row_wbase = Signal(c.wbase_bits)
        row_offset = Signal(c.rows_bits + c.count_bits)
        rowbase = Signal(c.wbase_bits + 1)
        m.d.comb += rowbase.eq(row_wbase + row_offset)
        # The accumulators also take the neuron's leak (see the neuron phase), so they
        # are as wide as leak + acc.
        acc = [Signal(signed(total_bits(c.u_bits, c.acc_bits)), name=f"acc{p}")
               for p in range(P)]
        # Timing: every host read also reads the bank (``re`` straight from the host
        # port, no address decode, no ``busy``; the result is used for the COUNTERS
        # region only).  The host reads only while the core is idle, when nothing
        # counts, so the flushes a read holds back are not missed.
        m.d.comb += [counters.raddr.eq(addr_ctr), counters.re.eq(hc.re)]

        def bump(i, sel=li):
            # Counter i of layer ``sel`` + 1 (a per-counter enable, no read multiplexer).
            for lyr in range(L):
                with m.If(sel == lyr):
                    m.d.comb += counters.inc[lyr * n_ctr + i].eq(1)

        def ev_addr(bank, src, idx):
            return Cat(idx[:c.idx_bits], src, bank)

        # Pipeline stage registers.
        s1_valid, s2_valid = Signal(), Signal()
        s1_rowbase = Signal.like(rowbase)
        s2_x = Signal(signed(c.in_bits))
        issue = Signal()
        from_input, s1_from_input = Signal(), Signal()
        s1_index = Signal(c.idx_bits)
        s1_value = Signal(signed(c.in_bits))
        m.d.comb += [
            s1_index.eq(Mux(s1_from_input, in_rd.data.index, ev_rd.data.index)),
            s1_value.eq(Mux(s1_from_input, in_rd.data.value, ev_rd.data.value)),
        ]
        # Pipelined: the event (index, value, row base) is registered once more
        # (``s1r_*``) before the weight address and the input value use it: the event
        # lists are block RAM.  (The SSM unit's gather takes ``s1_*``.)
        a_valid, a_index, a_value, a_rowbase = s1_valid, s1_index, s1_value, s1_rowbase
        if pipe:
            a_valid = Signal(name="s1r_valid")
            m.d.sync += a_valid.eq(s1_valid)
            a_index = registered(m, s1_index, "s1r_index")
            a_value = registered(m, s1_value, "s1r_value")
            a_rowbase = registered(m, s1_rowbase, "s1r_rowbase")

        # Read-port address defaults: host (idle) or the sequencer.
        row_addr = Signal(c.sbase_bits + 1)
        m.d.comb += row_addr.eq(layer.sbase + k)
        # Stage 1b: the weight address ``rowbase + index`` into a register, one copy per
        # group of 4 lanes (on a big part the weight memories are spread over the die;
        # one register driving all of them is a long net).  Pipelined: the copies are
        # named ``*_rep<g>`` and the board build keeps them apart (Yosys merges
        # identical registers); the row's neuron address is registered too, one copy
        # per lane (``k`` and ``layer`` hold still from ROW on: valid from the clock
        # after ROW); and each memory address register is itself the choice between
        # the sequencer and the host, made a clock early from ``busy`` (the weight
        # address per group, the neuron address per lane): the host accesses the
        # memories only in a clock after one where the core was idle, the sequencer
        # only in a clock after one where it was busy (not in LAYER, the first busy
        # clock).
        w_addr_q = [Signal(max(c.wbase_bits + 1, c.addr_bits if pipe else 0),
                           name=f"w_addr_{'rep' if pipe else 'q'}{g}", reset_less=True)
                    for g in range(groups)]
        host_word = self.host_addr[:c.addr_bits]
        # (``busy_q[g]`` equals ``busy`` in every clock: one net per group, not the
        # state decode to every address register)
        m.d.sync += [a.eq(Mux(busy_q[g], a_rowbase + a_index, host_word) if pipe
                          else a_rowbase + a_index) for g, a in enumerate(w_addr_q)]
        row_addr_q = [row_addr] * P
        if pipe:
            row_addr_q = [Signal(max(len(row_addr), c.addr_bits), name=f"naddr_rep{p}",
                                 reset_less=True) for p in range(P)]
            m.d.sync += [q.eq(Mux(busy_q[p // 4], row_addr, host_word))
                         for p, q in enumerate(row_addr_q)]
        for p in range(P):
            w_rd = weights[p][0]
            word = hreq[p // 4].word
            if pipe:
                # (the parameters' write port too: when the host writes, the register
                # holds the address the request copy holds)
                m.d.comb += [w_rd.addr.eq(w_addr_q[p // 4]), params[p][0].addr.eq(row_addr_q[p]),
                             params[p][1].addr.eq(row_addr_q[p]),
                             membranes[p][0].addr.eq(row_addr_q[p])]
            else:
                m.d.comb += [
                    w_rd.addr.eq(Mux(busy_q[p // 4], w_addr_q[p // 4], word)),
                    params[p][0].addr.eq(Mux(busy_q[p // 4], row_addr_q[p], word)),
                    membranes[p][0].addr.eq(Mux(busy_q[p // 4], row_addr_q[p], word)),
                ]

        # Event memory: read by the pipeline.
        m.d.comb += [ev_rd.addr.eq(ev_addr(bank_sel, src_sel, n)),
                     in_rd.addr.eq(Cat(n[:c.idx_bits], bank_sel))]
        s1b_valid = Signal()
        s1b_x = Signal(signed(c.in_bits), reset_less=True)
        m.d.sync += [s1_valid.eq(issue), s1b_valid.eq(a_valid), s1b_x.eq(a_value),
                     s2_valid.eq(s1b_valid), s2_x.eq(s1b_x)]
        # (the SSM unit's operand gather reads events through the same stage)
        with m.If((issue | ssm.ev_step) if c.has_ssm else issue):
            m.d.sync += [s1_rowbase.eq(rowbase), s1_from_input.eq(from_input)]
        # Stages 3 and 4: the weight and the input value are registered (stage 3),
        # multiplied into a register (stage 4), then accumulated: a
        # :class:`.dsp.RegisteredProduct` per lane (on the ECP5, a DSP block with its
        # own input and output registers).  The last event's add lands in DRAIN's
        # third clock.  Pipelined: the weight is registered (``w_q<p>``) before the
        # multiplier's operand register, and the input value waits a clock with it
        # (stage 2r), reaching the lanes' multipliers from one copy per group of 4
        # lanes (one register to every DSP block is a long net); the product leaves
        # its DSP block into a fabric register (``prod_f<p>``) that the placer can put
        # near the lane's adders, so it reaches the accumulator a clock later.
        s3_valid, s4_valid = Signal(), Signal(name="s4_valid")
        b_valid = s2_valid
        if pipe:
            b_valid = Signal(name="s2r_valid")
            m.d.sync += b_valid.eq(s2_valid)
        m.d.sync += [s3_valid.eq(b_valid), s4_valid.eq(s3_valid)]
        x_q = [s2_x] * groups
        if pipe:
            x_q = [Signal.like(s2_x, name=f"x_rep{g}", reset_less=True) for g in range(groups)]
            m.d.sync += [q.eq(s2_x) for q in x_q]
        prod_q = []
        for p in range(P):
            m.submodules[f"product{p}"] = mul = RegisteredProduct(a_bits=c.w_bits,
                                                                  b_bits=c.in_bits)
            m.d.comb += [mul.a.eq(weights[p][0].data), mul.b.eq(x_q[p // 4])]
            prod_q.append(registered(m, mul.p, f"prod_f{p}") if pipe else mul.p)
        # The leak of the row's neurons: membranes and parameters are read from the ROW
        # clock on (their address is fixed for the whole row), so the leak is known three
        # clocks later and is added into the accumulator then, before any event (the
        # first stage-4 add comes 7 clocks after ROW at the earliest).
        # Pipelined: ``alpha * u`` comes from a :class:`.dsp.RegisteredProduct` whose
        # operands take the memories' first registers (on the ECP5 the block RAM's own
        # output register, ``boards.outreg``) and whose product leaves into a fabric
        # register (``leak_f<p>``); the leak's two sums (with the bias, and with the
        # bias less theta) are registered, so the leak reaches the accumulators 7
        # clocks after ROW.  Each lane also accumulates ``over = total - theta``
        # (loaded with the leak less theta, then taking the same products) for FIRE's
        # compare and subtract reset (:class:`.lane.NeuronFireAhead`), with a flag
        # ``theta == u_min``, registered ahead.  With no SSM unit the row's ``send``
        # flags are registered in FIRE with the spikes (see the neuron phase).
        flags_ahead = pipe and not c.has_ssm
        prm_data = [params[p][0].data for p in range(P)]
        row_start, pre1, pre2, pre3, pre4 = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.sync += [pre1.eq(row_start), pre2.eq(pre1), pre3.eq(pre2), pre4.eq(pre3)]
        if pipe:  # the accumulators' enables, one copy per group of 4 lanes
            # (the leak reaches them 7 clocks after ROW; the products a clock after
            # stage 4: ``s5_valid``)
            pre_q = [Signal(name=f"pre7_rep{g}") for g in range(groups)]
            s4_valid_q = [Signal(name=f"s5_valid_rep{g}") for g in range(groups)]
            # (a copy of ``pre4`` per group first: one register to every group's is a
            # long net)
            pre_src = [Signal(name=f"pre4_rep{g}") for g in range(groups)]
            m.d.sync += [q.eq(pre3) for q in pre_src]
            pre_src = [registered(m, q, f"pre5_rep{g}") for g, q in enumerate(pre_src)]
            pre_src = [registered(m, q, f"pre6_rep{g}") for g, q in enumerate(pre_src)]
            m.d.sync += ([q.eq(src) for q, src in zip(pre_q, pre_src, strict=True)]
                         + [q.eq(s4_valid) for q in s4_valid_q])
        leak_q = [Signal(signed(c.u_bits + 2), name=f"leak_q{p}") for p in range(P)]
        over_bits = total_bits(c.u_bits, c.acc_bits) + 1
        over = [Signal(signed(over_bits), name=f"over{p}") for p in range(P)]
        theta_min = [Signal(name=f"theta_min{p}", reset_less=True) for p in range(P)]
        for p in range(P):
            prm = prm_data[p]
            bias_q = Signal.like(prm.bias, name=f"bias_q{p}", reset_less=True)
            m.d.sync += bias_q.eq(prm.bias)
            if pipe:
                bias_m = Signal(signed(len(prm.bias) + 2), name=f"bias_m{p}", reset_less=True)
                theta_s = prm.theta.as_signed()  # (stored as u_bits, read as signed)
                m.d.sync += [bias_m.eq(prm.bias - theta_s),
                             theta_min[p].eq(theta_s == -(1 << (c.u_bits - 1)))]
                m.submodules[f"leak{p}"] = lp = RegisteredProduct(
                    a_bits=c.frac_bits + 2, b_bits=c.u_bits)
                # (``bias_q`` holds still from a clock after the row's data on.)
                m.d.comb += [lp.a.eq(prm.alpha), lp.b.eq(membranes[p][0].data)]
                over_q = Signal(signed(len(bias_m) + 1), name=f"leak_over{p}",
                                reset_less=True)
                leak_p = registered(m, lp.p, f"leak_f{p}")
                m.d.sync += [leak_q[p].eq((leak_p >> c.frac_bits) + bias_q),
                             over_q.eq((leak_p >> c.frac_bits) + bias_m)]
            else:
                m.submodules[f"leak{p}"] = nl = NeuronLeak(u_bits=c.u_bits,
                                                           frac_bits=c.frac_bits)
                # The membrane and the parameters are registered first (the DSP blocks
                # absorb the registers), the multiply and the add get a clock of their
                # own, and the leak is added into the accumulator three clocks after ROW.
                u_q = Signal(u_shape, name=f"u_q{p}", reset_less=True)
                alpha_q = Signal.like(prm.alpha, name=f"alpha_q{p}", reset_less=True)
                m.d.sync += [u_q.eq(membranes[p][0].data), alpha_q.eq(prm.alpha)]
                m.d.comb += [nl.u.eq(u_q), nl.alpha.eq(alpha_q), nl.bias.eq(bias_q)]
                m.d.sync += leak_q[p].eq(nl.leak)
            # One adder per lane (area): the leak's add and the events' adds never
            # coincide (the first stage-4 add comes 7 clocks after ROW at the earliest).
            # Pipelined: the leak starts the row's sum (the accumulator is loaded with
            # it; no clear at ROW, whose state decode drove every accumulator bit) and
            # the enables come from per-group copies.
            if pipe:
                with m.If(pre_q[p // 4]):
                    m.d.sync += [acc[p].eq(leak_q[p]), over[p].eq(over_q)]
                with m.Elif(s4_valid_q[p // 4]):
                    m.d.sync += [acc[p].eq(acc[p] + prod_q[p]),
                                 over[p].eq(over[p] + prod_q[p])]
            else:
                with m.If(s4_valid | pre3):
                    m.d.sync += acc[p].eq(acc[p] + Mux(s4_valid, prod_q[p], leak_q[p]))

        # -------------------------------------------------- spike router
        # One row's results leave one neuron per clock, overlapped with the next row.
        router_args = dict(lanes=P, index_bits=c.idx_bits + 1, layer_bits=c.layer_bits,
                           u_bits=c.u_bits, record_layout=self.record_layout)
        m.submodules.router = router = (
            PipelinedSpikeRouter(**router_args, given_flags=flags_ahead) if pipe
            else SpikeRouter(**router_args))
        end_record = Signal(self.record_layout)
        write_end = Signal()  # the sequencer writes the end-of-step record
        m.d.comb += [
            end_record.kind.eq(2),
            out_fifo.w_data.eq(Mux(write_end, end_record.as_value(),
                                   router.records.payload.as_value())),
            out_fifo.w_en.eq(out_fifo.w_rdy & (write_end | router.records.valid)),
            # Timing: the router never has a record in STEP_END while the end record
            # is written (LAYER_END waits for ``router.free``; with
            # ``timing.router_register`` STEP_END waits for ``router.empty``), so its
            # ready need not depend on the sequencer's state.
            router.records.ready.eq(out_fifo.w_rdy),
        ]
        spike_src = Signal(c.src_bits)
        if pipe:
            # (not the record's layer through an adder into the list address)
            # The current layer's list, a clock after ``li`` changes: every event in
            # flight is the current layer's (LAYER_END waits for ``router.free``, and
            # the next event comes many clocks after a new layer or step starts).
            m.d.sync += spike_src.eq(li + 1)
        else:
            m.d.comb += spike_src.eq(router.event_layer + 1)
        spike_count = counts[Cat(spike_src, cur)]
        if pipe:
            # (the list's write position from a register, not from the
            # multiplexer over the list counters) ``ev_wpos`` follows the current
            # list's counter a clock behind, and counts the events as it does; the
            # list and its counter hold still for many clocks before the first event
            # of a layer or step, so in every clock with an event it equals the counter.
            ev_wpos = Signal.like(spike_count, name="ev_wpos")
            m.d.sync += ev_wpos.eq(Mux(router.event, ev_wpos + 1, spike_count))
            spike_count = ev_wpos
        ev_where = [ev_wr.addr.eq(ev_addr(cur, spike_src, spike_count)),
                    ev_wr.data.index.eq(router.event_index)]
        if pipe:
            # (the write port's address and data do not wait for ``event``,
            # only its enable does)
            m.d.comb += [*ev_where,
                         ev_wr.data.value.eq(Mux(layer.ssm, router.event_value, 1)
                                             if c.has_ssm else 1)]
        with m.If(router.event):
            if pipe:
                m.d.comb += ev_wr.en.eq(1)
            else:
                m.d.comb += [*ev_where, ev_wr.data.value.eq(1), ev_wr.en.eq(1)]
                if c.has_ssm:  # an SSM layer's events carry its y
                    with m.If(layer.ssm):
                        m.d.comb += ev_wr.data.value.eq(router.records.payload.value)
            # Timing: one enable per list counter, no read-modify-write multiplexer.
            for i in range(len(counts)):
                with m.If(Cat(spike_src, cur) == i):
                    m.d.sync += counts[i].eq(counts[i] + 1)
            bump(3, router.event_layer)

        # ------------------------------------------------------ neuron phase
        # Two clocks: FIRE computes every lane's saturation, spike and reset from its
        # accumulator (acc = leak + the row's synaptic input) into registers; NEURON
        # writes the membranes and hands the row to the router from them.  The
        # registers load every clock: the accumulators hold still through FIRE, and so
        # does theta, read straight from the parameter memory (its address, the row,
        # holds from ROW on).  Pipelined: theta is registered first (it is valid two
        # clocks after ROW, FIRE comes at least 8 clocks after ROW), and the layer's
        # neuron mode (reset, v_reset, spiking) comes from one copy per group of 4
        # lanes (``layer`` holds still from ROW on, so do they, a clock later).
        new_u = [Signal(u_shape, name=f"u_new{p}") for p in range(P)]
        spikes = Signal(P)
        mode_q = [layer] * groups
        if pipe:
            mode_q = [Signal(layer_l, name=f"mode_rep{g}", reset_less=True)
                      for g in range(groups)]
            for q in mode_q:
                m.d.sync += [q.reset.eq(layer.reset), q.v_reset.eq(layer.v_reset),
                             q.spiking.eq(layer.spiking)]
        fire_spikes = []
        for p in range(P):
            fire = NeuronFireAhead if pipe else NeuronFire
            m.submodules[f"neuron{p}"] = nu = fire(
                u_bits=c.u_bits, total_bits=total_bits(c.u_bits, c.acc_bits))
            theta = prm_data[p].theta
            if pipe:
                m.d.comb += [nu.over.eq(over[p]), nu.theta_min.eq(theta_min[p])]
                theta_q = Signal.like(theta, name=f"theta_q{p}", reset_less=True)
                m.d.sync += theta_q.eq(theta)
                theta = theta_q
            m.d.comb += [
                nu.total.eq(acc[p]), nu.theta.eq(theta),
                nu.v_reset.eq(mode_q[p // 4].v_reset), nu.reset.eq(mode_q[p // 4].reset),
                nu.spiking.eq(mode_q[p // 4].spiking),
            ]
            m.d.sync += [spikes[p].eq(nu.spike), new_u[p].eq(nu.u_new)]
            fire_spikes.append(nu.spike)

        # NEURON writes the membranes when the router takes the row.  Pipelined: they
        # are written in every NEURON clock (the same values while it waits for the
        # router), from one flip-flop per group of 4 lanes that is high exactly in
        # NEURON (set in FIRE, cleared when NEURON hands the row over; not the state
        # decode and the router's ``can_load``).
        neuron_write = Signal()
        nwrite_q = ([Signal(name=f"nwrite_rep{g}") for g in range(groups)] if pipe
                    else [neuron_write] * groups)
        if pipe:
            # The router's per-group copies of ``load`` (high in every NEURON clock, and
            # in SSM_ROUTE): with no SSM unit, the groups' NEURON flags.
            m.d.comb += router.group_load.eq(
                Cat(nwrite_q) if not c.has_ssm else router.load.replicate(groups))
        for p in range(P):
            u_wr, h = membranes[p][1], hreq[p // 4]
            m.d.comb += [
                u_wr.addr.eq(row_addr_q[p] if pipe
                             else Mux(busy_q[p // 4], row_addr_q[p], h.word)),
                u_wr.data.eq(Mux(busy_q[p // 4], new_u[p], h.wdata)),
                u_wr.en.eq(Mux(busy_q[p // 4], nwrite_q[p // 4],
                               h.we & (h.region == Region.MEMBRANES) & (h.lane == p))),
            ]
        valid_lanes = Signal(P)
        for p in range(P):
            m.d.comb += valid_lanes[p].eq(k * P + p < layer.size)
        # Timing: NEURON's decisions come from flip-flops (``k`` and ``layer`` hold
        # still from ROW on, at least 5 clocks before NEURON).
        valid_q = Signal(P)
        last_row = Signal()
        if pipe:
            # in two clocks: the neurons left from the row's first, ``size - k * P``,
            # then each lane's compare with its constant (one subtraction, not one
            # compare chain per lane from ``k``)
            left = Signal(signed(max(len(layer.size), len(k * P)) + 1), name="row_left")
            m.d.sync += [left.eq(layer.size - k * P), last_row.eq(k + 1 == layer.rows)]
            m.d.sync += valid_q.eq(Cat(left > p for p in range(P)))
        else:
            m.d.sync += [valid_q.eq(valid_lanes), last_row.eq(k + 1 == layer.rows)]

        # --------------------------------------------------------- sequencer
        # Input double buffer: events are written into bank ``in_wbank`` until the
        # end marker makes it full; a step then takes it as ``in_rbank`` and the
        # other bank starts filling, while the step runs.
        in_counts = Array(Signal(range(c.max_inputs + 1), name=f"in_count{i}")
                          for i in range(2))
        if pipe:
            # (for ``events_left``) which lists are not empty, a clock after their counts:
            # EDGE reads a list at least four clocks after its last append (the input's
            # before the step starts, a layer's before LAYER_END lets the next begin)
            counts_nz = Signal(len(counts), name="counts_nz")
            in_nz = Signal(2, name="in_counts_nz")
            m.d.sync += [counts_nz.eq(Cat(x != 0 for x in counts)),
                         in_nz.eq(Cat(x != 0 for x in in_counts))]
        in_wbank, in_rbank, in_full = Signal(), Signal(), Signal()
        m.d.comb += self.input.ready.eq(~in_full & ~self.clear)
        with m.If(self.input.valid & self.input.ready):
            with m.If(self.input.payload.end):
                m.d.sync += in_full.eq(1)
            with m.Else():
                m.d.comb += [
                    in_wr.addr.eq(Cat(in_counts[in_wbank][:c.idx_bits], in_wbank)),
                    in_wr.data.index.eq(self.input.payload.index),
                    in_wr.data.value.eq(self.input.payload.value),
                    in_wr.en.eq(1),
                ]
                m.d.sync += in_counts[in_wbank].eq(in_counts[in_wbank] + 1)

        with m.If(busy):
            m.d.comb += counters.inc[n_ctr * L].eq(1)
        drain_n = Signal(3 if pipe else 2)  # DRAIN's clock
        drained = ~s1_valid & ~s1b_valid & ~s2_valid & ~s3_valid

        if c.has_ssm:  # the SSM unit's view of the layer, the event lists and the banks
            m.d.comb += [
                ssm.entry.eq(ssm_table[li]), ssm.m_len.eq(layer.size),
                ssm.chunks.eq(layer.rows), ssm.emit_values.eq(layer.emit_values),
                ssm.layer_index.eq(li), ssm.cur.eq(cur), ssm.in_rbank.eq(in_rbank),
                ssm.busy.eq(busy), ssm.n.eq(n), ssm.cnt.eq(cnt),
                ssm.list_count.eq(Mux(ssm.ev_from_input, in_counts[in_rbank],
                                      counts[Cat(ssm.ev_src, ssm.ev_list_bank)])),
                ssm.ev_index.eq(s1_index), ssm.ev_value.eq(s1_value),
                ssm.can_load.eq(router.can_load),
            ]

        if flags_ahead:
            # The router's flags of the row's ``send`` (as the row data below make it),
            # from FIRE's spikes (one LUT from registers) a clock ahead: each group of 4
            # lanes registers its part with the spikes, and the router's clock combines
            # the parts (:class:`.router.SendFlags`; one tree over every lane's spikes,
            # spread over the die, is a long path).  ``valid_q`` and the layer hold
            # still from ROW on.
            send_next = Signal(P, name="send_next")
            m.d.comb += send_next.eq(Mux(layer.emit_values, valid_q,
                                         Cat(fire_spikes) & valid_q))
            m.submodules.send_flags = sf = SendFlags(lanes=P)
            m.d.comb += [sf.send.eq(send_next), router.send_none.eq(sf.none),
                         router.send_one.eq(sf.one), router.send_lowest.eq(sf.lowest)]

        # The row the router takes in NEURON.  (Pipelined, with no SSM unit, it is
        # offered in every clock, not only in NEURON: the sequencer's state would
        # otherwise reach the router's lane pick through ``send``.)
        row_data = [
            router.send.eq(Mux(layer.emit_values, valid_q, spikes & valid_q)),
            router.spikes.eq(spikes),
            router.base.eq(k * P),
            router.layer.eq(li),
            router.emit_values.eq(layer.emit_values),
        ] + [router.values[p].eq(new_u[p]) for p in range(P)]
        if pipe and not c.has_ssm:
            m.d.comb += row_data

        with m.FSM():
            with m.State("IDLE"):
                with m.If(in_full & ~self.clear & ~host_req):
                    m.d.sync += [
                        li.eq(0),
                        in_rbank.eq(in_wbank),
                        in_wbank.eq(~in_wbank),
                        in_counts[~in_wbank].eq(0),
                        in_full.eq(0),
                    ]
                    if pipe:
                        m.d.sync += [b.eq(1) for b in busy_q]
                    with m.If(num_layers == 0):
                        m.next = "STEP_END"
                    with m.Else():
                        m.next = "LAYER"
            with m.State("LAYER"):
                m.d.comb += busy.eq(1)
                m.d.sync += k.eq(0)
                if c.has_ssm:
                    # ``layer`` (registered) still holds the previous layer's entry
                    # in this clock: the type bit comes straight from the table.
                    with m.If(layers[li].ssm):
                        m.d.comb += ssm.start.eq(1)
                        m.next = "SSM"
                    with m.Else():
                        m.next = "ROW"
                else:
                    m.next = "ROW"
            with m.State("ROW"):
                m.d.comb += [busy.eq(1), row_start.eq(1)]
                m.d.comb += [e_set.eq(1), e_new.eq(layer.ebase)]
                if pipe:
                    m.d.comb += e_row.eq(1)
                else:
                    m.d.sync += [a.eq(0) for a in acc]
                bump(0)
                m.next = "EDGE"
            with m.State("EDGE"):
                m.d.comb += busy.eq(1)
                bump(0)
                with m.If(e == e_end):
                    m.next = "DRAIN"
                with m.Else():
                    bank = cur ^ edge.recurrent
                    is_input = edge.src == 0
                    m.d.sync += [
                        src_sel.eq(edge.src),
                        from_input.eq(is_input),
                        bank_sel.eq(Mux(is_input, in_rbank, bank)),
                        n.eq(0),
                        cnt.eq(Mux(is_input, in_counts[in_rbank], counts[Cat(edge.src, bank)])),
                        row_wbase.eq(edge.wbase),
                        row_offset.eq(shift_add_product(k, edge.nsrc)),
                    ]
                    if pipe:
                        m.d.sync += events_left.eq(Mux(
                            is_input, in_nz.bit_select(in_rbank, 1),
                            counts_nz.bit_select(Cat(edge.src, bank), 1)))
                    m.next = "EVENTS"
            with m.State("EVENTS"):
                m.d.comb += busy.eq(1)
                bump(0)
                with m.If(events_left if pipe else n < cnt):
                    m.d.comb += issue.eq(1)
                    m.d.sync += n.eq(n + 1)
                    if pipe:
                        m.d.sync += events_left.eq(n + 1 < cnt)
                    with m.If(k == 0):  # each event counted once, at its first row
                        bump(2)
                with m.Else():
                    m.d.comb += [e_set.eq(1), e_new.eq(e + 1)]
                    m.next = "EDGE"
            with m.State("DRAIN"):
                # Three clocks: the row's last event leaves stage 4 in the third
                # (pipelined: six, with stages 1r and 2r and the product's register).
                m.d.comb += busy.eq(1)
                bump(0)
                with m.If(drain_n != (5 if pipe else 2)):
                    m.d.sync += drain_n.eq(drain_n + 1)
                with m.Elif(drained):
                    m.d.sync += drain_n.eq(0)
                    m.next = "FIRE"
            with m.State("FIRE"):
                m.d.comb += busy.eq(1)
                bump(1)
                if pipe:
                    m.d.sync += [q.eq(1) for q in nwrite_q]
                m.next = "NEURON"
            with m.State("NEURON"):
                m.d.comb += busy.eq(1)
                bump(1)
                # Wait for the router to take the previous row (it runs concurrently).
                # (The pipelined router takes ``load`` only with ``can_load``: offered
                # in every NEURON clock, its lanes' enables do not wait for this
                # decision.)
                row_offer = [router.load.eq(1), *row_data]
                if pipe:
                    m.d.comb += row_offer if c.has_ssm else router.load.eq(1)
                with m.If(router.can_load):
                    if pipe:
                        m.d.sync += [q.eq(0) for q in nwrite_q]
                    m.d.comb += neuron_write.eq(1)
                    if not pipe:
                        m.d.comb += row_offer
                    with m.If(last_row):
                        m.next = "LAYER_END"
                    with m.Else():
                        m.d.sync += k.eq(k + 1)
                        m.next = "ROW"
            if c.has_ssm:
                with m.State("SSM"):  # the SSM unit runs the layer
                    m.d.comb += busy.eq(1)
                    self._ssm_layer(m, ssm, router, li, layer, bump, SimpleNamespace(
                        src_sel=src_sel, from_input=from_input, bank_sel=bank_sel, n=n,
                        cnt=cnt, in_rbank=in_rbank))
                    with m.If(ssm.done):
                        m.next = "LAYER_END"
            with m.State("LAYER_END"):
                m.d.comb += busy.eq(1)
                # Later layers read this layer's events: wait until all are written.
                with m.If(router.free):
                    with m.If(li + 1 == num_layers):
                        m.next = "STEP_END"
                    with m.Else():
                        m.d.sync += li.eq(li + 1)
                        m.next = "LAYER"
            with m.State("STEP_END"):
                m.d.comb += busy.eq(1)
                # (pipelined: LAYER_END waited for the events only, the end record
                # waits for the router's last records)
                step_done = out_fifo.w_rdy
                if pipe:
                    step_done = out_fifo.w_rdy & router.empty
                    m.d.comb += write_end.eq(router.empty)
                else:
                    m.d.comb += write_end.eq(1)
                with m.If(step_done):
                    # The next step's lists start empty in the other bank.
                    for s in range(nsrc):
                        m.d.sync += counts[Cat(Const(s, c.src_bits), ~cur)].eq(0)
                    m.d.sync += cur.eq(~cur)
                    m.d.comb += counters.inc[n_ctr * L + 1].eq(1)
                    if pipe:
                        m.d.sync += [b.eq(0) for b in busy_q]
                    m.next = "IDLE"

        # ``clear`` comes last so that it takes priority over every update (area: a
        # counter bit is then one LUT on its carry chain plus a flip-flop with enable
        # and synchronous reset).  The core is idle, so nothing else updates them.
        with m.If(self.clear & ~busy):
            for i in range(len(counts)):
                m.d.sync += counts[i].eq(0)
            m.d.comb += counters.clear.eq(1)
            m.d.sync += [cur.eq(0), in_counts[0].eq(0), in_counts[1].eq(0), in_full.eq(0),
                         in_wbank.eq(0)]
        return m

    def _host_read_stage(self, m, lane_data, others, rd_region, rd_reg, steer):
        """The pipelined host read path (six clocks from ``host_re``): the request is
        registered (clock 1), the memories read (2) into their registers (3), then
        each lane's word goes into a register by the lane (``rd_lane<p>``, zero unless
        it is the word read, steered by its group's view of the request: a block
        RAM's data do not cross the die in the clock they are read) (4), each group's
        register is the OR of its lanes' (``rd_group<g>``) (5), and ``host_rdata``
        the OR of the groups and of ``rd_other``, the word of every other region
        (zero for a lane region), which waits with them (6): no select decode in
        front of the last stages.  ``lane_data``: region -> the lanes' registered
        read data; ``others``: region -> its read data; any other region reads
        ``rd_reg``; ``steer``: per group, its registered ``(region, lane)``."""
        c = self.config
        group = 4
        lanes_q = []
        for p in range(c.lanes):  # each lane's word, zero unless it is the word read
            q = Signal(c.host_data_bits, name=f"rd_lane{p}", reset_less=True)
            g_region, g_lane = steer[p // group]
            with m.Switch(g_region):
                for reg, arr in lane_data.items():
                    with m.Case(reg):
                        m.d.sync += q.eq(Mux(g_lane == p, arr[p], 0))
                with m.Default():
                    m.d.sync += q.eq(0)
            lanes_q.append(q)
        groups = []
        for g in range(0, c.lanes, group):  # (an OR: at most one lane holds a word)
            q = Signal(c.host_data_bits, name=f"rd_group{g // group}", reset_less=True)
            m.d.sync += q.eq(functools.reduce(operator.or_, lanes_q[g:g + group]))
            groups.append(q)
        other = Signal(c.host_data_bits, name="rd_other", reset_less=True)
        with m.Switch(rd_region):
            for reg, value in others.items():
                with m.Case(reg):
                    m.d.sync += other.eq(value)
            for reg in lane_data:
                with m.Case(reg):
                    m.d.sync += other.eq(0)
            with m.Default():
                m.d.sync += other.eq(rd_reg)
        for name in ("rd_other_q", "rd_other_q2"):
            other = registered(m, other, name)
        m.d.sync += self.host_rdata.eq(functools.reduce(operator.or_, groups, other))

    def _ssm_layer(self, m, ssm, router, li, layer, bump, lists):
        """The SSM state: the unit's counter increments, event-list pointer loads and
        steps, and its rows to the router."""
        for i, inc in enumerate((ssm.inc_syn, ssm.inc_neuron, ssm.inc_events)):
            with m.If(inc):  # (syn_cycles, neuron_cycles, events)
                bump(i)
        with m.If(ssm.ev_load):
            m.d.sync += [
                lists.src_sel.eq(ssm.ev_src), lists.from_input.eq(ssm.ev_from_input),
                lists.bank_sel.eq(Mux(ssm.ev_from_input, lists.in_rbank, ssm.ev_list_bank)),
                lists.n.eq(0), lists.cnt.eq(ssm.ev_cnt),
            ]
        with m.If(ssm.ev_step):
            m.d.sync += lists.n.eq(lists.n + 1)
        m.d.comb += [
            router.load.eq(ssm.row_load), router.send.eq(ssm.row_send),
            router.spikes.eq(ssm.row_spikes), router.base.eq(ssm.row_base),
            router.layer.eq(li), router.emit_values.eq(layer.emit_values),
        ] + [router.values[p].eq(ssm.row_values[p]) for p in range(self.config.lanes)]
