"""The NPU core: it wires its parts, each a component with its own contract.

Contract
--------
Memories and tables are laid out as :mod:`...contract.config` describes and are
written through the host port while the core is idle (``busy`` low).

Host port: ``host_addr``/``host_wdata`` with ``host_we`` write one word;
``host_re`` reads one word, returned in ``host_rdata`` with ``host_rvalid``
``timing.host_read_latency`` clocks later (1 compact, 6 pipelined); reads may
follow each other every clock.  Only while ``busy`` is low.  ``clear`` (one
clock, idle only) empties the event lists of both banks (so recurrent edges see
zeros at the next step) and zeroes the counters; membranes are reset by writing
them.  ``fault`` (with ``fault_info``): a step stopped at a bad table entry
(:mod:`.sequencer`, Checks); the core stays busy until it is reset.

``input`` stream: zero or more events ``(index, value, end=0)`` of one step
followed by one marker with ``end=1``.  Spike inputs carry ``value = 1``;
multi-bit inputs the signed value (zeros need not be sent: a zero costs
nothing).  The input is double-buffered: the next step's events stream in while
a step runs; after its end marker the stream stalls until the core, idle again,
starts that step.

``output`` stream: per step, for every layer in order, a ``kind=0`` record per
spike (``layer``, ``index``; an SSM layer's nonzero ``y`` as ``value``) of
layers that do not emit values, and for the output layer (``emit_values``) a
``kind=1`` record per neuron with its spike and membrane ``u[t]`` (an SSM
layer: ``y`` and ``y != 0``); then one ``kind=2`` record ending the step.
Backpressure stalls the core; nothing is dropped.

The parts (``docs/gateware.md``): the host port (:mod:`.host`), the step
sequencer with the tables and counters (:mod:`.sequencer`), the event lists
(:mod:`.events`), the synaptic pipeline (:mod:`.synapse`), the neuron stage
(:mod:`.neuron`), the spike router (:mod:`..router`) and, in a core with an SSM
unit, the SSM unit (:mod:`..ssm`).  Lane ``p`` owns neurons ``k*P + p``: a row
``k`` is one neuron per lane.  A LIF row costs ``events + 2 * edges +
timing.row_overhead`` synaptic clocks and two neuron clocks (plus router waits
when a row has more to send than the next row has clocks), so a step costs about
``(events * fan-out + neurons) / P`` plus a small fixed overhead per row; zero
events cost zero synaptic clocks.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ...contract.config import RECORD_FIELDS, CoreConfig, Region
from ...contract.timing import TimingProfile
from ..checks import CheckedComponent, check_core_arguments
from ..layouts import input_layout, registered, struct_layout
from ..router import PipelinedSpikeRouter, SendFlags, SpikeRouter
from ..ssm import SSMUnit
from .events import EventLists
from .host import HostPort
from .neuron import NeuronStage
from .sequencer import FAULT_INFO_BITS, StepSequencer
from .synapse import SynapticPipeline

__all__ = ["NPUCore"]


class NPUCore(CheckedComponent):
    """The NPU core for the generics in ``config`` (a :class:`...contract.config.CoreConfig`).

    ``weight_memory``: ``None`` (an Amaranth ``Memory`` per lane), or a callable
    ``(shape=, depth=)`` returning a component with ``read`` (``addr`` in,
    ``data`` out one clock later, every clock) and ``write`` (``addr``,
    ``data``, ``en`` in) members, e.g. ``boards.mem.SPRAMWeights`` to put the
    weights into iCE40 SPRAM.  The core writes weights only while idle and
    reads them only while busy, so a single-port memory serves both.

    ``timing``: a :class:`...contract.timing.TimingProfile` (``None``:
    ``COMPACT``), how the core is pipelined.
    """

    check_arguments = staticmethod(check_core_arguments)

    def __init__(self, *, config: CoreConfig, weight_memory=None,
                 timing: TimingProfile | None = None):
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
            "fault": Out(1),
            "fault_info": Out(FAULT_INFO_BITS),
            "input": In(stream.Signature(input_layout(c))),
            "output": Out(stream.Signature(self.record_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        c, t = self.config, self.timing
        m.submodules.host = host = HostPort(config=c, timing=t)
        m.submodules.sequencer = seq = StepSequencer(config=c, timing=t)
        m.submodules.lists = ev = EventLists(config=c, timing=t)
        m.submodules.synapse = syn = SynapticPipeline(config=c, timing=t,
                                                      weight_memory=self.weight_memory)
        m.submodules.neurons = neu = NeuronStage(config=c, timing=t)
        router_args = dict(lanes=c.lanes, index_bits=c.idx_bits + 1, layer_bits=c.layer_bits,
                           u_bits=c.u_bits, record_layout=self.record_layout)
        # (pipelined with no SSM unit: the row's ``send`` flags come a clock ahead)
        flags_ahead = t.pipelined and not c.has_ssm
        m.submodules.router = router = (
            PipelinedSpikeRouter(**router_args, given_flags=flags_ahead) if t.pipelined
            else SpikeRouter(**router_args))
        ssm = None
        if c.has_ssm:
            m.submodules.ssm = ssm = SSMUnit(config=c)
        self._host(m, host, seq, syn, neu, ssm)
        self._lists(m, ev, seq, router, ssm)
        self._lanes(m, seq, ev, syn, neu)
        self._route(m, seq, neu, router, ssm, flags_ahead)
        self._output(m, seq, router)
        if ssm is not None:
            self._ssm(m, ssm, seq, ev, router, host)
        return m

    def _host(self, m, host, seq, syn, neu, ssm):
        c = self.config
        groups = host.groups
        lane_rdata = [syn.weights_rdata, neu.params_rdata, neu.membranes_rdata]
        if ssm is not None:  # (pipelined: registered, as the lanes' other memories are)
            lane_rdata.append([
                (registered(m, ssm.state_rdata[p], f"ssm_state_q{p}") if self.timing.pipelined
                 else ssm.state_rdata[p]).as_unsigned() for p in range(c.lanes)])
            m.d.comb += host.ssm_param_rdata.eq(ssm.param_rdata)
        m.d.comb += [
            host.addr.eq(self.host_addr), host.wdata.eq(self.host_wdata),
            host.we.eq(self.host_we), host.re.eq(self.host_re),
            self.host_rdata.eq(host.rdata), self.host_rvalid.eq(host.rvalid),
            host.busy.eq(seq.busy), host.busy_groups.eq(seq.busy_groups),
            self.busy.eq(seq.busy), self.fault.eq(seq.fault), self.fault_info.eq(seq.fault_info),
            host.table_rdata.eq(seq.table_rdata), host.counters_rdata.eq(seq.counters_rdata),
            seq.tables.eq(host.views[groups]), seq.counters_re.eq(host.counters_re),
            seq.host_req.eq(host.host_req), seq.clear.eq(self.clear),
        ]
        for i, rdata in enumerate(lane_rdata):
            for p in range(c.lanes):
                m.d.comb += host.lane_rdata[i][p].eq(rdata[p])
        host_word = self.host_addr[:c.addr_bits]
        for part in (syn, neu):
            m.d.comb += [part.busy_groups.eq(seq.busy_groups), part.host_word.eq(host_word)]
            m.d.comb += [part.views[g].eq(host.views[g]) for g in range(groups)]

    def _lists(self, m, ev, seq, router, ssm):
        """The event lists: the input stream, the steps' banks, the sequencer's read
        pointer, the router's events (a LIF layer's carry 1, an SSM layer's its ``y``)."""
        c = self.config
        wiring.connect(m, wiring.flipped(self.input), ev.input)
        value = router.event_value if self.timing.pipelined else router.records.payload.value
        m.d.comb += [
            ev.clear.eq(self.clear), ev.busy.eq(seq.busy),
            ev.start_step.eq(seq.start_step), ev.end_step.eq(seq.end_step),
            seq.in_full.eq(ev.in_full), seq.in_rbank.eq(ev.in_rbank), seq.cur.eq(ev.cur),
            seq.counts.eq(ev.counts), seq.in_counts.eq(ev.in_counts),
            ev.rd_src.eq(seq.rd_src), ev.rd_bank.eq(seq.rd_bank), ev.rd_n.eq(seq.rd_n),
            ev.rd_from_input.eq(seq.rd_from_input),
            ev.wr_event.eq(router.event), ev.wr_index.eq(router.event_index),
            ev.wr_layer.eq(router.event_layer), ev.layer_index.eq(seq.li),
            ev.wr_value.eq(Mux(seq.layer.ssm, value, 1) if c.has_ssm else 1),
        ]
        if self.timing.pipelined:
            m.d.comb += [seq.counts_nz.eq(ev.counts_nz), seq.in_nz.eq(ev.in_nz)]

    def _lanes(self, m, seq, ev, syn, neu):
        """The synaptic pipeline's events and products, the neuron stage's rows."""
        m.d.comb += [
            syn.issue.eq(seq.issue), syn.rowbase.eq(seq.rowbase), syn.ev.eq(ev.rd_data),
            seq.drained.eq(syn.drained),
            neu.row_addr.eq(seq.row_addr), neu.row_start.eq(seq.row_start),
            neu.prod.eq(syn.prod), neu.prod_valid.eq(syn.prod_valid),
            neu.reset.eq(seq.layer.reset), neu.v_reset.eq(seq.layer.v_reset),
            neu.spiking.eq(seq.layer.spiking), neu.membrane_write.eq(seq.membrane_write),
        ]

    def _route(self, m, seq, neu, router, ssm, flags_ahead):
        """The row the router takes: the neuron stage's (in NEURON) or the SSM unit's."""
        c = self.config
        layer = seq.layer
        send = Mux(layer.emit_values, seq.valid, neu.spikes & seq.valid)
        row = {"send": send, "spikes": neu.spikes, "base": seq.k * c.lanes}
        values = [neu.new_u[p] for p in range(c.lanes)]
        load = seq.router_load
        if ssm is not None:
            row = {"send": Mux(ssm.active, ssm.row_send, send),
                   "spikes": Mux(ssm.active, ssm.row_spikes, neu.spikes),
                   "base": Mux(ssm.active, ssm.row_base, seq.k * c.lanes)}
            values = [Mux(ssm.active, ssm.row_values[p], values[p]) for p in range(c.lanes)]
            load = seq.router_load | ssm.row_load
        m.d.comb += [router.load.eq(load), router.layer.eq(seq.li),
                     router.emit_values.eq(layer.emit_values)]
        m.d.comb += [getattr(router, name).eq(value) for name, value in row.items()]
        m.d.comb += [router.values[p].eq(v) for p, v in enumerate(values)]
        m.d.comb += [seq.can_load.eq(router.can_load), seq.router_free.eq(router.free),
                     seq.spike_event.eq(router.event), seq.spike_layer.eq(router.event_layer)]
        if self.timing.pipelined:
            # The router's per-group copies of ``load``: with no SSM unit, the groups'
            # NEURON flags (high in every NEURON clock).
            m.d.comb += [seq.router_empty.eq(router.empty), router.group_load.eq(
                seq.membrane_write if ssm is None else load.replicate(len(router.group_load)))]
        if flags_ahead:
            # The flags of the row's ``send`` from FIRE's spikes a clock ahead: each
            # group of 4 lanes registers its part with the spikes, and the router's
            # clock combines the parts (one tree over every lane's spikes, spread over
            # the die, is a long path).  The valid lanes and the layer hold still.
            send_next = Signal(c.lanes, name="send_next")
            m.d.comb += send_next.eq(Mux(layer.emit_values, seq.valid,
                                         neu.fire_spikes & seq.valid))
            m.submodules.send_flags = sf = SendFlags(lanes=c.lanes)
            m.d.comb += [sf.send.eq(send_next), router.send_none.eq(sf.none),
                         router.send_one.eq(sf.one), router.send_lowest.eq(sf.lowest)]

    def _output(self, m, seq, router):
        """The output stream: the router's records and the end-of-step records."""
        c = self.config
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(
            width=self.record_layout.size, depth=c.event_fifo_depth)
        end_record = Signal(self.record_layout)
        m.d.comb += [
            end_record.kind.eq(2),
            out_fifo.w_data.eq(Mux(seq.write_end, end_record.as_value(),
                                   router.records.payload.as_value())),
            out_fifo.w_en.eq(out_fifo.w_rdy & (seq.write_end | router.records.valid)),
            # The router never has a record while the end record is written (LAYER_END
            # waits for ``free``; pipelined, STEP_END for ``empty``), so its ready need
            # not depend on the sequencer's state.
            router.records.ready.eq(out_fifo.w_rdy), seq.out_ready.eq(out_fifo.w_rdy),
            self.output.payload.eq(out_fifo.r_data),
            self.output.valid.eq(out_fifo.r_rdy),
            out_fifo.r_en.eq(self.output.ready),
        ]

    def _ssm(self, m, ssm, seq, ev, router, host):
        """The SSM unit: the layer, the banks, the sequencer's read pointer it loads
        and steps, its counters, the host's requests for its memories."""
        c = self.config
        tables = host.views[host.groups]
        m.d.comb += [
            ssm.start.eq(seq.ssm_start), seq.ssm_done.eq(ssm.done),
            ssm.entry.eq(seq.ssm_entry), ssm.m_len.eq(seq.layer.size),
            ssm.chunks.eq(seq.layer.rows), ssm.emit_values.eq(seq.layer.emit_values),
            ssm.layer_index.eq(seq.li), ssm.cur.eq(ev.cur), ssm.in_rbank.eq(ev.in_rbank),
            ssm.busy.eq(seq.busy), ssm.n.eq(seq.rd_n), ssm.cnt.eq(seq.cnt),
            ssm.list_count.eq(Mux(ssm.ev_from_input, ev.in_counts[ev.in_rbank],
                                  ev.counts[Cat(ssm.ev_src, ssm.ev_list_bank)])),
            ssm.ev_index.eq(ev.rd_data.index), ssm.ev_value.eq(ev.rd_data.value),
            ssm.can_load.eq(router.can_load),
            seq.ssm_inc.eq(Cat(ssm.inc_syn, ssm.inc_neuron, ssm.inc_events)),
            seq.ssm_ev_load.eq(ssm.ev_load), seq.ssm_ev_src.eq(ssm.ev_src),
            seq.ssm_ev_list_bank.eq(ssm.ev_list_bank),
            seq.ssm_ev_from_input.eq(ssm.ev_from_input), seq.ssm_ev_cnt.eq(ssm.ev_cnt),
            seq.ssm_ev_step.eq(ssm.ev_step),
            ssm.host_word.eq(tables.word), ssm.host_wdata.eq(tables.wdata),
            ssm.host_param_we.eq(tables.we & (tables.region == Region.SSM_PARAMS)),
        ]
        for p in range(c.lanes):
            view = host.views[p // 4]
            m.d.comb += [
                ssm.state_word[p].eq(view.word), ssm.state_wdata[p].eq(view.wdata),
                ssm.state_we[p].eq(view.we & (view.region == Region.SSM_STATE)
                                   & (view.lane == p)),
            ]
