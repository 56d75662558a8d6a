"""The core's host port: the host's requests as each part of the core sees them,
and the read path back.

The host writes and reads one word per clock (``addr``, ``wdata``, ``we``,
``re``), only while the core is idle; ``addr`` is ``region << (lane_bits +
addr_bits) | lane << addr_bits | word`` (``contract.config``).

Views.  The lanes' memories see the request through one view per group of 4
lanes, the tables, counters and SSM parameters through one more (the last):
``views[g]`` has the word address, the data, the write and read strobes (each
already qualified by the core being idle), the region and the lane.  Compact:
every view is the port itself.  Pipelined: each view is a register copy of the
port (``hreq_rep<g>_*``), so no host net reaches every lane: writes land a clock
later, and ``host_req`` tells the sequencer not to start a step in the clock of
a request nor in the one after it (the memory access comes a clock later, and
the per-layer first edges a clock after the tables).

Read path.  The parts return their read data (per lane for the lane regions,
one word for the tables, the counters and the SSM parameters) a clock after the
address (pipelined: two, through their registers); ``rdata`` comes with
``rvalid`` ``timing.host_read_latency`` clocks after ``re``.  Compact: a
multiplexer over the regions and lanes.  Pipelined (six clocks): the request is
registered (1), the memories read (2) into their registers (3), each lane's word
into a register by the lane (``rd_lane<p>``, zero unless it is the word read,
steered by its group's view: a block RAM's data do not cross the die in the
clock they are read) (4), each group's register is the OR of its lanes'
(``rd_group<g>``) (5), and ``rdata`` the OR of the groups and of ``rd_other``,
the word of every other region (zero for a lane region), which waits with them
(6): no select decode in front of the last stages.
"""

from __future__ import annotations

import functools
import operator

from amaranth import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...contract.config import CoreConfig, Region
from ...contract.timing import TimingProfile
from ..layouts import registered

__all__ = ["HostPort", "view_layout", "lane_regions"]


def view_layout(c: CoreConfig) -> data.StructLayout:
    """One view of the host request."""
    return data.StructLayout({
        "word": unsigned(c.addr_bits), "wdata": unsigned(c.host_data_bits),
        "we": unsigned(1), "re": unsigned(1),
        "region": unsigned(c.region_bits), "lane": unsigned(c.lane_bits)})


def lane_regions(c: CoreConfig) -> tuple[Region, ...]:
    """The regions with a memory per lane, in the read path's order."""
    return (Region.WEIGHTS, Region.PARAMS, Region.MEMBRANES) \
        + ((Region.SSM_STATE,) if c.has_ssm else ())


class HostPort(wiring.Component):
    """The host port for ``config`` and ``timing`` (module docs).

    Ports: ``addr``, ``wdata``, ``we``, ``re`` (the core's host port), ``busy``
    (the core is busy) and ``busy_groups`` (its copy per group of 4 lanes) in;
    ``views`` (``groups + 1`` of :func:`view_layout`), ``host_req``,
    ``counters_re`` (the read strobe for the counter bank: compact, the port's own,
    with no decode; every host read also reads the bank, whose word is used for
    the counters' region only) out.  Read
    data in: ``lane_rdata`` (per lane region, per lane), ``table_rdata`` (the
    tables' word at the request's address), ``counters_rdata`` and, with an SSM
    unit, ``ssm_param_rdata``; out: ``rdata``, ``rvalid``.
    """

    def __init__(self, *, config: CoreConfig, timing: TimingProfile):
        c = config
        self.config, self.timing = c, timing
        self.groups = -(-c.lanes // 4)
        word = unsigned(c.host_data_bits)
        ports = {
            "addr": In(c.host_addr_bits), "wdata": In(c.host_data_bits),
            "we": In(1), "re": In(1), "busy": In(1), "busy_groups": In(self.groups),
            "views": Out(data.ArrayLayout(view_layout(c), self.groups + 1)),
            "host_req": Out(1), "counters_re": Out(1),
            "lane_rdata": In(data.ArrayLayout(data.ArrayLayout(word, c.lanes),
                                              len(lane_regions(c)))),
            "table_rdata": In(word), "counters_rdata": In(32),
            "rdata": Out(word), "rvalid": Out(1),
        }
        if c.has_ssm:
            ports["ssm_param_rdata"] = In(c.param_bits)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        c = self.config
        self._views(m)
        tables = self.views[self.groups]
        rd_region = Signal.like(tables.region, name="rd_region")
        rd_lane = Signal.like(tables.lane, name="rd_lane")
        rd_reg = Signal(c.host_data_bits, name="rd_reg")
        rd_valid = self.rvalid
        if self.timing.pipelined:  # (rd_valid, rd_valid_d0..2, rvalid)
            rd_valid = Signal(name="rd_valid")
            v = rd_valid
            for i in range(3):
                v = registered(m, v, f"rd_valid_d{i}")
            m.d.sync += self.rvalid.eq(v)
        m.d.sync += [rd_valid.eq(tables.re), rd_region.eq(tables.region),
                     rd_lane.eq(tables.lane), rd_reg.eq(self.table_rdata)]
        lane_data = {reg: self.lane_rdata[i] for i, reg in enumerate(lane_regions(c))}
        others = {Region.COUNTERS: self.counters_rdata}
        if c.has_ssm:
            others[Region.SSM_PARAMS] = self.ssm_param_rdata
        if self.timing.pipelined:
            self._pipelined_read(m, lane_data, others, rd_region, rd_reg)
        else:
            with m.Switch(rd_region):
                for reg, arr in lane_data.items():
                    with m.Case(reg):
                        m.d.comb += self.rdata.eq(Array(arr[p] for p in range(c.lanes))
                                                  [rd_lane])
                for reg, value in others.items():
                    with m.Case(reg):
                        m.d.comb += self.rdata.eq(value)
                with m.Default():
                    m.d.comb += self.rdata.eq(rd_reg)
        return m

    def _views(self, m):
        c = self.config
        idle = ~self.busy
        for g in range(self.groups + 1):
            view = self.views[g]
            if self.timing.pipelined:
                fields = {"addr": Signal.like(self.addr, name=f"hreq_rep{g}_addr",
                                              reset_less=True),
                          "wdata": Signal.like(self.wdata, name=f"hreq_rep{g}_wdata",
                                               reset_less=True),
                          "we": Signal(name=f"hreq_rep{g}_we"),
                          "re": Signal(name=f"hreq_rep{g}_re")}
                m.d.sync += [fields["addr"].eq(self.addr), fields["wdata"].eq(self.wdata),
                             fields["we"].eq(idle & self.we), fields["re"].eq(idle & self.re)]
                ok = Const(1)
            else:
                fields = {"addr": self.addr, "wdata": self.wdata, "we": self.we, "re": self.re}
                ok = idle if g == self.groups else ~self.busy_groups[g]
            addr = fields["addr"]
            m.d.comb += [
                view.word.eq(addr[:c.addr_bits]), view.wdata.eq(fields["wdata"]),
                view.we.eq(ok & fields["we"]), view.re.eq(ok & fields["re"]),
                view.region.eq(addr[c.lane_bits + c.addr_bits:]),
                view.lane.eq(addr[c.addr_bits:c.addr_bits + c.lane_bits]),
            ]
        m.d.comb += self.counters_re.eq(self.views[self.groups].re if self.timing.pipelined
                                        else self.re)
        if self.timing.pipelined:
            host_req_q = Signal(name="host_req_q")
            m.d.sync += host_req_q.eq(self.we | self.re)
            m.d.comb += self.host_req.eq(self.we | self.re | host_req_q)

    def _pipelined_read(self, m, lane_data, others, rd_region, rd_reg):
        """The six-clock read path (module docs): ``lane_data``: region -> the lanes'
        registered read data; ``others``: region -> its read data; any other region
        reads ``rd_reg``."""
        c = self.config
        steer = []  # per group, its registered view of the request, a clock later
        for g in range(self.groups):
            sr = registered(m, self.views[g].region, f"rd_region_rep{g}")
            sl = registered(m, self.views[g].lane, f"rd_lane_rep{g}")
            steer.append((registered(m, sr, f"rd_region_rep{g}_q"),
                          registered(m, sl, f"rd_lane_rep{g}_q")))
        lanes_q = []
        for p in range(c.lanes):  # each lane's word, zero unless it is the word read
            q = Signal(c.host_data_bits, name=f"rd_lane{p}", reset_less=True)
            g_region, g_lane = steer[p // 4]
            with m.Switch(g_region):
                for reg, arr in lane_data.items():
                    with m.Case(reg):
                        m.d.sync += q.eq(Mux(g_lane == p, arr[p], 0))
                with m.Default():
                    m.d.sync += q.eq(0)
            lanes_q.append(q)
        groups = []
        for g in range(0, c.lanes, 4):  # (an OR: at most one lane holds a word)
            q = Signal(c.host_data_bits, name=f"rd_group{g // 4}", reset_less=True)
            m.d.sync += q.eq(functools.reduce(operator.or_, lanes_q[g:g + 4]))
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
        m.d.sync += self.rdata.eq(functools.reduce(operator.or_, groups, other))
