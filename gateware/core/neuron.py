"""The core's neuron stage: per lane, the row's neuron, its leak, its sum and its
fire.

Lane ``p`` holds the parameters ``(alpha, theta, bias)`` and the membrane ``u``
of neurons ``p, p + P, ...``, row ``k`` of a layer at ``row_addr = sbase + k``.
From ``row_start`` (the sequencer's ROW clock) the row's parameters and
membrane are read; the leak ``((alpha * u) >> F) + bias`` (:mod:`..lane`) is
known three clocks later and starts the row's sum in the accumulator, which
then takes the synaptic pipeline's products (``prod`` while ``prod_valid``).
In the sequencer's FIRE clock every lane computes ``v = sat_u(acc)``, the spike
and the reset into registers (``spikes``, ``new_u``; ``fire_spikes`` are the
spikes as computed, for the router's flags a clock ahead); ``membrane_write``
writes ``new_u`` back::

    acc = ((alpha * u) >> F) + bias + sum_events W * x       (exact, no saturation)
    v = sat_u(acc);  s = spiking & (v >= theta);  u' = reset(v, s)

Compact: the accumulator is cleared at ``row_start`` and takes the leak three
clocks later.  Pipelined: every memory read is registered (``prm_q<p>``,
``u_q<p>``; the parameters are block RAM), the row address is a register per
lane that is itself the choice between the sequencer and the host
(``naddr_rep<p>``), ``alpha * u`` comes from a :class:`..dsp.RegisteredProduct`
and a fabric register (``leak_f<p>``), the leak loads the accumulator seven
clocks after ``row_start`` (through copies per group of 4 lanes), a second
accumulator keeps ``total - theta`` for :class:`..lane.NeuronFireAhead` (with
the flag ``theta == u_min``), theta is registered, and the layer's neuron mode
reaches the lanes from a copy per group (``mode_rep<g>_*``).

The parameters and membranes are written and read back by the host through its
group views while the core is idle.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ...contract.config import PARAM_FIELDS, CoreConfig, Region
from ...contract.timing import TimingProfile
from ..dsp import RegisteredProduct
from ..lane import NeuronFire, NeuronFireAhead, NeuronLeak, total_bits
from ..layouts import registered, struct_layout
from ..memports import NO_RW_CHECK, nrw_read_port
from .host import view_layout

__all__ = ["NeuronStage"]


class NeuronStage(wiring.Component):
    """The neuron stage for ``config`` and ``timing`` (module docs).

    Ports: ``row_addr``, ``row_start``, ``prod``, ``prod_valid`` (per group),
    ``reset``, ``v_reset``, ``spiking`` (the layer's neuron mode),
    ``membrane_write`` (per group), ``busy_groups``, ``views`` (the host's group
    views), ``host_word`` in; ``spikes``, ``new_u``, ``fire_spikes``,
    ``params_rdata``, ``membranes_rdata`` out.
    """

    def __init__(self, *, config: CoreConfig, timing: TimingProfile):
        c = config
        self.config, self.timing = c, timing
        self.groups = -(-c.lanes // 4)
        word = unsigned(c.host_data_bits)
        super().__init__({
            "row_addr": In(c.sbase_bits + 1), "row_start": In(1),
            "prod": In(data.ArrayLayout(signed(c.w_bits + c.in_bits), c.lanes)),
            "prod_valid": In(self.groups),
            "reset": In(2), "v_reset": In(signed(c.u_bits)), "spiking": In(1),
            "membrane_write": In(self.groups), "busy_groups": In(self.groups),
            "views": In(data.ArrayLayout(view_layout(c), self.groups)),
            "host_word": In(c.addr_bits),
            "spikes": Out(c.lanes), "fire_spikes": Out(c.lanes),
            "new_u": Out(data.ArrayLayout(signed(c.u_bits), c.lanes)),
            "params_rdata": Out(data.ArrayLayout(word, c.lanes)),
            "membranes_rdata": Out(data.ArrayLayout(word, c.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        pipe = self.timing.pipelined
        params, membranes = self._memories(m)
        loads = self._enables(m)
        lanes = [self._lane(m, p, params[p], membranes[p], loads[p // 4])
                 for p in range(c.lanes)]
        mode = self._mode(m)
        for p, (acc, over, theta_min, prm) in enumerate(lanes):
            fire = (NeuronFireAhead if pipe else NeuronFire)(
                u_bits=c.u_bits, total_bits=total_bits(c.u_bits, c.acc_bits))
            m.submodules[f"neuron{p}"] = nu = fire
            theta = prm.theta
            if pipe:
                m.d.comb += [nu.over.eq(over), nu.theta_min.eq(theta_min)]
                theta = registered(m, theta, f"theta_q{p}")
            g = mode[p // 4]
            m.d.comb += [nu.total.eq(acc), nu.theta.eq(theta), nu.v_reset.eq(g["v_reset"]),
                         nu.reset.eq(g["reset"]), nu.spiking.eq(g["spiking"]),
                         self.fire_spikes[p].eq(nu.spike)]
            m.d.sync += [self.spikes[p].eq(nu.spike), self.new_u[p].eq(nu.u_new)]
        return m

    def _memories(self, m):
        """Per lane the parameter and membrane memories (read port, write port), and
        their addresses: the row's while busy, the host's while idle."""
        c = self.config
        pipe = self.timing.pipelined
        # (``NO_RW_CHECK``: NEURON writes the row the membranes' read port still
        # points at, whose data nobody uses; the parameters are written only while
        # idle.)  Pipelined: the parameters are block RAM.
        param_attrs = {**NO_RW_CHECK, "ram_style": "block"} if pipe else NO_RW_CHECK
        params, membranes = [], []
        for p in range(c.lanes):
            view, busy = self.views[p // 4], self.busy_groups[p // 4]
            pmem = memory.Memory(shape=struct_layout(PARAM_FIELDS(c)), depth=c.neuron_depth,
                                 init=[], attrs=param_attrs)
            umem = memory.Memory(shape=signed(c.u_bits), depth=c.neuron_depth, init=[],
                                 attrs=NO_RW_CHECK)
            m.submodules[f"params{p}"] = pmem
            m.submodules[f"membranes{p}"] = umem
            p_rd, p_wr = nrw_read_port(m, pmem, f"params{p}"), pmem.write_port()
            u_rd, u_wr = nrw_read_port(m, umem, f"membranes{p}"), umem.write_port()
            p_data, u_data = p_rd.data, u_rd.data
            if pipe:  # every use (and the host's read-back) takes the registered data
                p_data = registered(m, p_rd.data, f"prm_q{p}")
                u_data = registered(m, u_rd.data, f"u_q{p}")
                # (the row address register is also the parameters' write address:
                # when the host writes, it holds the address the request copy holds)
                addr = Signal(max(len(self.row_addr), c.addr_bits), name=f"naddr_rep{p}",
                              reset_less=True)
                m.d.sync += addr.eq(Mux(busy, self.row_addr, self.host_word))
                m.d.comb += [p_rd.addr.eq(addr), p_wr.addr.eq(addr), u_rd.addr.eq(addr),
                             u_wr.addr.eq(addr)]
            else:
                m.d.comb += [p_rd.addr.eq(Mux(busy, self.row_addr, view.word)),
                             p_wr.addr.eq(view.word),
                             u_rd.addr.eq(Mux(busy, self.row_addr, view.word)),
                             u_wr.addr.eq(Mux(busy, self.row_addr, view.word))]
            m.d.comb += [
                p_wr.data.eq(view.wdata),
                p_wr.en.eq(view.we & (view.region == Region.PARAMS) & (view.lane == p)),
                u_wr.data.eq(Mux(busy, self.new_u[p], view.wdata)),
                u_wr.en.eq(Mux(busy, self.membrane_write[p // 4],
                               view.we & (view.region == Region.MEMBRANES) & (view.lane == p))),
                self.params_rdata[p].eq(p_data.as_value()),
                self.membranes_rdata[p].eq(u_data.as_unsigned()),
            ]
            params.append(p_data)
            membranes.append(u_data)
        return params, membranes

    def _mode(self, m):
        """The layer's neuron mode as each group of 4 lanes sees it (pipelined: a copy
        per group, a clock later; the layer holds still from the row's start on)."""
        fields = {"reset": self.reset, "v_reset": self.v_reset, "spiking": self.spiking}
        if not self.timing.pipelined:
            return [fields] * self.groups
        return [{name: registered(m, value, f"mode_rep{g}_{name}")
                 for name, value in fields.items()} for g in range(self.groups)]

    def _enables(self, m):
        """The accumulators' enables: when the leak loads them and when a product is
        added, per group of 4 lanes.  Compact: the leak three clocks after
        ``row_start``; pipelined: seven (``pre4_rep<g>`` .. ``pre7_rep<g>``)."""
        pre = [self.row_start]
        for i in range(1, 5):
            q = Signal(name=f"pre{i}")
            m.d.sync += q.eq(pre[-1])
            pre.append(q)
        if not self.timing.pipelined:
            return [pre[3]] * self.groups
        loads = []
        for g in range(self.groups):
            q = Signal(name=f"pre4_rep{g}")  # (a copy per group first: one register
            m.d.sync += q.eq(pre[3])        # to every group's is a long net)
            for i in (5, 6, 7):
                r = Signal(name=f"pre{i}_rep{g}")
                m.d.sync += r.eq(q)
                q = r
            loads.append(q)
        return loads

    def _lane(self, m, p, prm, u, load):
        """Lane ``p``'s leak and accumulator(s), the leak loaded with ``load``;
        returns ``(acc, over, theta_min, parameters)``."""
        c = self.config
        acc = Signal(signed(total_bits(c.u_bits, c.acc_bits)), name=f"acc{p}")
        over = Signal(signed(total_bits(c.u_bits, c.acc_bits) + 1), name=f"over{p}")
        theta_min = Signal(name=f"theta_min{p}", reset_less=True)
        leak = Signal(signed(c.u_bits + 2), name=f"leak_q{p}")
        bias_q = registered(m, prm.bias, f"bias_q{p}")
        prod, valid = self.prod[p], self.prod_valid[p // 4]
        if self.timing.pipelined:
            bias_m = Signal(signed(len(prm.bias) + 2), name=f"bias_m{p}", reset_less=True)
            theta_s = prm.theta.as_signed()  # (stored as u_bits, read as signed)
            m.d.sync += [bias_m.eq(prm.bias - theta_s),
                         theta_min.eq(theta_s == -(1 << (c.u_bits - 1)))]
            m.submodules[f"leak{p}"] = lp = RegisteredProduct(a_bits=c.frac_bits + 2,
                                                              b_bits=c.u_bits)
            m.d.comb += [lp.a.eq(prm.alpha), lp.b.eq(u)]
            over_q = Signal(signed(len(bias_m) + 1), name=f"leak_over{p}", reset_less=True)
            leak_p = registered(m, lp.p, f"leak_f{p}")
            m.d.sync += [leak.eq((leak_p >> c.frac_bits) + bias_q),
                         over_q.eq((leak_p >> c.frac_bits) + bias_m)]
            # The leak starts the row's sum (no clear at the row's start).
            with m.If(load):
                m.d.sync += [acc.eq(leak), over.eq(over_q)]
            with m.Elif(valid):
                m.d.sync += [acc.eq(acc + prod), over.eq(over + prod)]
        else:
            m.submodules[f"leak{p}"] = nl = NeuronLeak(u_bits=c.u_bits, frac_bits=c.frac_bits)
            # The membrane and the parameters are registered first (the DSP blocks
            # absorb the registers), the multiply and the add get a clock each.
            u_q = registered(m, u, f"u_q{p}")
            alpha_q = registered(m, prm.alpha, f"alpha_q{p}")
            m.d.comb += [nl.u.eq(u_q), nl.alpha.eq(alpha_q), nl.bias.eq(bias_q)]
            m.d.sync += leak.eq(nl.leak)
            # One adder per lane: the leak's add and the events' never coincide.
            with m.If(self.row_start):
                m.d.sync += acc.eq(0)
            with m.Elif(valid | load):
                m.d.sync += acc.eq(acc + Mux(valid, prod, leak))
        return acc, over, theta_min, prm
