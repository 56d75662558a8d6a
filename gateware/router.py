"""The spike router: turns one row of neuron results into address events.

A row is ``P`` neurons (one per lane) with the first neuron index ``base``.
When ``load`` is high (taken only while ``can_load``), the router takes the row:
the lanes to send (``send``: the spiking lanes, or every valid lane for a layer
that emits values), their spikes and membranes, the layer and ``emit_values``.
It then picks one lane per clock, lowest lane first, and sends it as a record
on ``records`` (``kind`` 0: a spike ``(layer, index)``; ``kind`` 1: a neuron
value with its spike), stalling while ``records.ready`` is low.  With each
spiking lane's record, ``event`` is high for a clock with ``event_index`` and
``event_layer``, for the core to append ``index`` to the layer's event list (no
backpressure).  Throughput: one record per clock.  ``free``: every event of the
rows taken is out.  ``can_load``: no lane left to pick, or the last one is
picked in this clock, so a new row can be taken without a bubble.  The records
and their order do not depend on ``records.ready`` (only their timing does).

Two forms behind this one interface, one per timing profile:

* :class:`SpikeRouter` (compact): the lowest pending lane is decoded from the
  pending lanes, and the picked lane's record goes into an output register: a
  record is valid a clock after its lane is picked, its event comes as it
  leaves.
* :class:`PipelinedSpikeRouter` (many lanes on a big part): the lowest pending
  lane is kept one-hot in flip-flops, the picked lane first goes into a middle
  register, one part per group of 4 lanes, then through an OR over the groups
  into a two-entry skid buffer (the output register and a skid register); a
  record is valid two clocks after its lane is picked, its event comes as it
  leaves the middle register (independently of ``records.ready``, in the clock
  the compact form gives it when the output is never held back), and neither
  the lane pick nor ``can_load`` waits for ``records.ready``.

:class:`SendFlags` computes ``send``'s flags a clock ahead for
``PipelinedSpikeRouter(given_flags=True)``.
"""

from __future__ import annotations

import functools
import operator
from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from .checks import CheckedComponent, check_integers

__all__ = ["SendFlags", "SpikeRouter", "any_many", "lowest_lane", "none_or_one"]


def lowest_lane(x):
    """The lowest set bit of ``x``, one-hot (each bit masked by the OR of the bits
    below it, no carry chain)."""
    return Cat(*(x[p] & ~x[:p].any() for p in range(len(x))))


def any_many(nodes):
    """``(any, more than one)`` over parts, each given as its own ``(any, more than
    one)`` pair (a bit ``b`` is the pair ``(b, 0)``), as a tree of pairs."""
    nodes = list(nodes)
    while len(nodes) > 1:
        pairs = [nodes[i:i + 2] for i in range(0, len(nodes), 2)]
        nodes = [pair[0] if len(pair) == 1 else
                 (pair[0][0] | pair[1][0], pair[0][1] | pair[1][1] | (pair[0][0] & pair[1][0]))
                 for pair in pairs]
    return nodes[0]


def none_or_one(x):
    """``(x == 0, exactly one bit of x set)`` as a tree of (any, more than one) pairs,
    LUTs only (timing: Yosys shared the ``x - 1`` carry chains of two such tests
    behind a multiplexer, which put the sequencer's state in front of a 32-bit
    carry chain on the ECP5-85F)."""
    any_, many = any_many((x[p], Const(0)) for p in range(len(x)))
    return ~any_, any_ & ~many


class SendFlags(CheckedComponent):
    """The flags of a row's ``send``, a clock later, for
    ``SpikeRouter(given_flags=True)``: ``none`` (no lane set), ``one`` (exactly
    one) and ``lowest`` (the lowest lane set, one-hot) of the value ``send`` had
    in the previous clock.

    Each group of 4 lanes registers its part (whether any lane of the group is
    set, whether more than one is, the group's lowest lane); the outputs combine
    the groups' registers (``none``, ``one``: a tree of (any, more than one)
    pairs, 3 LUT levels over 8 groups; ``lowest``: the group's lowest lane unless
    a lower group has one).  Timing: neither clock holds a tree over every lane,
    whose inputs are spread over the die with the lanes.
    """

    @staticmethod
    def check_arguments(*, lanes):
        check_integers(lanes=(lanes, 1))

    def __init__(self, *, lanes: int):
        self.lanes = lanes
        super().__init__({"send": In(lanes), "none": Out(1), "one": Out(1),
                          "lowest": Out(lanes)})

    def elaborate(self, platform):
        m = Module()
        parts = [self.send[g:g + 4] for g in range(0, self.lanes, 4)]
        g_any = Signal(len(parts), name="g_any", reset_less=True)
        g_many = Signal(len(parts), name="g_many", reset_less=True)
        g_lowest = Signal(self.lanes, name="g_lowest", reset_less=True)
        for g, part in enumerate(parts):
            any_, many = any_many((part[i], Const(0)) for i in range(len(part)))
            m.d.sync += [g_any[g].eq(any_), g_many[g].eq(many),
                         g_lowest[4 * g:4 * g + len(part)].eq(lowest_lane(part))]
        any_, many = any_many((g_any[g], g_many[g]) for g in range(len(parts)))
        # (on wires Yosys keeps, as the router's own flags: the LUT mapper would
        # otherwise fold the router's ``load`` into the first level)
        keep = {"keep": 1}
        none, one = Signal(name="none_c", attrs=keep), Signal(name="one_c", attrs=keep)
        lowest = Signal(self.lanes, name="lowest_c", attrs=keep)
        m.d.comb += [none.eq(~any_), one.eq(any_ & ~many),
                     lowest.eq(Cat(g_lowest[4 * g:4 * g + len(part)]
                                   & ~g_any[:g].any().replicate(len(part))
                                   for g, part in enumerate(parts))),
                     self.none.eq(none), self.one.eq(one), self.lowest.eq(lowest)]
        return m


class SpikeRouter(CheckedComponent):
    """The compact spike router (module docs).

    Ports: ``load``, ``send``, ``spikes`` (``lanes`` bits), ``values`` (``lanes``
    signed ``u_bits``), ``base`` (``index_bits``), ``layer`` (``layer_bits``),
    ``emit_values`` in; ``free``, ``can_load``, ``records`` (a stream of
    ``record_layout``), ``event``, ``event_index``, ``event_layer`` out.  Latency:
    a record is valid a clock after its lane is picked; ``event`` comes in the
    clock its record is taken.  ``free`` and ``can_load`` come from flip-flops
    and ``records.ready`` only.
    """

    @staticmethod
    def check_arguments(*, lanes, index_bits, layer_bits, u_bits, record_layout):
        check_integers(lanes=(lanes, 1), index_bits=(index_bits, 1),
                       layer_bits=(layer_bits, 1), u_bits=(u_bits, 1))

    def __init__(self, *, lanes: int, index_bits: int, layer_bits: int, u_bits: int,
                 record_layout: data.StructLayout):
        self.lanes, self.u_bits = lanes, u_bits
        self.record_layout = record_layout
        super().__init__({**self._extra_ports(),
            "load": In(1),
            "send": In(lanes),
            "spikes": In(lanes),
            "values": In(data.ArrayLayout(signed(u_bits), lanes)),
            "base": In(unsigned(index_bits)),
            "layer": In(unsigned(layer_bits)),
            "emit_values": In(1),
            "free": Out(1),
            "can_load": Out(1),
            "records": Out(stream.Signature(record_layout)),
            "event": Out(1),
            "event_index": Out(unsigned(index_bits)),
            "event_layer": Out(unsigned(layer_bits)),
        })

    def _extra_ports(self) -> dict:
        return {}

    def _row(self):
        """The registers of the row being sent: pending lanes, spikes, values, base,
        layer, kind, and (timing) whether none / one lane is left."""
        P = self.lanes
        return SimpleNamespace(
            pending=Signal(P, name="pending"), spikes=Signal(P, name="spikes"),
            values=Array(Signal(self.values[0].shape(), name=f"value{p}") for p in range(P)),
            base=Signal.like(self.base, name="base"), layer=Signal.like(self.layer, name="layer"),
            emit_values=Signal(name="emit_values"), none_left=Signal(init=1, name="none_left"),
            one_left=Signal(name="one_left"))

    def _pick(self, m, lowest):
        """The index of the one-hot ``lowest`` lane (OR trees)."""
        P = self.lanes
        pick = Signal(range(P))
        for b in range(len(pick)):
            m.d.comb += pick[b].eq(Cat(*(lowest[p] for p in range(P) if p >> b & 1)).any())
        return pick

    def _outputs(self, m, out_valid, out, advance, advance_when):
        m.d.comb += [
            advance.eq(advance_when),
            self.records.valid.eq(out_valid),
            self.records.payload.eq(out),
            self.free.eq(self._row_state.none_left & ~out_valid),
            self.can_load.eq(self._row_state.none_left
                             | (self._row_state.one_left & advance)),
            self.event.eq(out_valid & self.records.ready & out.spike),
            self.event_index.eq(out.index),
            self.event_layer.eq(out.layer),
        ]

    def elaborate(self, platform):
        m = Module()
        P = self.lanes
        row = self._row_state = self._row()
        pending, spikes, values = row.pending, row.spikes, row.values
        # The lowest pending lane: one-hot (each lane masked by the OR of the lanes
        # below it, no carry chain), then its index.
        lowest = Signal(P)
        m.d.comb += [lowest[p].eq(pending[p] & ~pending[:p].any()) for p in range(P)]
        pick = self._pick(m, lowest)
        out_valid = Signal()
        out = Signal(self.record_layout)
        advance = Signal()  # the output register is empty or its record leaves now
        self._outputs(m, out_valid, out, advance, ~out_valid | self.records.ready)
        with m.If(advance):
            m.d.sync += out_valid.eq(~row.none_left)
            m.d.sync += [
                out.kind.eq(Mux(row.emit_values, 1, 0)),
                out.layer.eq(row.layer),
                out.index.eq(row.base + pick),
                out.spike.eq(spikes.bit_select(pick, 1)),
                out.value.eq(values[pick]),
            ]
        # Timing: the flags of each candidate next ``pending`` (this row with its
        # lowest lane gone, or a new row) are computed from registers and ``send``
        # alone; ``advance`` and ``load`` only choose among them at the end.
        rest = Signal(P)
        m.d.comb += rest.eq(pending & ~lowest)
        rest_none, rest_one = (rest == 0), (rest != 0) & ((rest & (rest - 1)) == 0)
        send = self.send
        send_none, send_one = (send == 0), (send != 0) & ((send & (send - 1)) == 0)
        with m.If(self.load & self.can_load):
            m.d.sync += [pending.eq(self.send), row.none_left.eq(send_none),
                         row.one_left.eq(send_one)]
            m.d.sync += [spikes.eq(self.spikes), row.base.eq(self.base),
                         row.layer.eq(self.layer), row.emit_values.eq(self.emit_values)]
            m.d.sync += [values[p].eq(self.values[p]) for p in range(P)]
        with m.Elif(advance):
            m.d.sync += [pending.eq(rest), row.none_left.eq(rest_none),
                         row.one_left.eq(rest_one)]
        return m


class PipelinedSpikeRouter(SpikeRouter):
    """The pipelined spike router (module docs): :class:`SpikeRouter`'s ports and
    ``group_load`` (a copy of ``load`` per group of 4 lanes, equal to it in every
    clock, for the lanes' enables) in; ``empty`` (every record is out, not only
    every event) and ``event_value`` (the event's value) out.  ``load`` may be held
    high while ``can_load`` is low (it is taken only with ``can_load``), so the
    lanes' enables need not wait for a sequencer that looks at ``can_load`` first.

    Latency: a record is valid two clocks after its lane is picked; ``event``
    comes as the record leaves the middle register.  ``free`` and ``can_load``
    come from flip-flops only.  Each group of 4 lanes has its own copies of the
    skid register's valid bit and of the none / one left flags (``*_rep<g>``,
    kept apart by the board build), so the enables of a group's lane registers
    come from a net of its own.

    ``given_flags``: the caller also gives ``send``'s flags, ``send_none`` (no
    lane set), ``send_one`` (exactly one) and ``send_lowest`` (the lowest lane
    set, one-hot), equal to ``send``'s in every clock ``load`` is high (the core
    computes them a clock ahead with :class:`SendFlags`), so no flag tree over
    ``send`` follows the row's registers in the clock the row is taken.
    """

    @staticmethod
    def check_arguments(*, given_flags, **arguments):
        if not isinstance(given_flags, bool):
            raise TypeError(f"given_flags must be a bool, not {given_flags!r}")
        SpikeRouter.check_arguments(**arguments)

    def __init__(self, *, lanes: int, index_bits: int, layer_bits: int, u_bits: int,
                 record_layout: data.StructLayout, given_flags: bool = False):
        self.given_flags = given_flags
        self._port_sizes = lanes, u_bits
        super().__init__(lanes=lanes, index_bits=index_bits, layer_bits=layer_bits,
                         u_bits=u_bits, record_layout=record_layout)

    def _extra_ports(self) -> dict:
        lanes, u_bits = self._port_sizes
        ports = {"empty": Out(1), "event_value": Out(signed(u_bits)),
                 "group_load": In(-(-lanes // 4))}
        if self.given_flags:
            ports.update(send_none=In(1), send_one=In(1), send_lowest=In(lanes))
        return ports

    def _middle(self, m, cand, lowest, row):
        """The middle register's next value from the picked lane (``nxt``: the row's
        base, layer and kind; ``nxt_groups``: per group of 4 lanes, whether it holds
        the pick, its spike, its lane within the group and its value, zero when it
        does not), and ``cand`` from the middle register (an OR over the groups)."""
        P = self.lanes
        u_bits = self.u_bits
        spikes, values = row.spikes, row.values
        groups = range(-(-P // 4))
        hit = Signal(len(groups), name="mid_hit")
        spike = Signal(len(groups), name="mid_spike")
        lo = [Signal(2, name=f"mid_lo{g}") for g in groups]
        value = [Signal(u_bits, name=f"mid_value{g}") for g in groups]
        m_base, m_layer, m_emit = (Signal.like(row.base, name="mid_base"),
                                   Signal.like(row.layer, name="mid_layer"),
                                   Signal(name="mid_emit"))
        nxt = [m_base.eq(row.base), m_layer.eq(row.layer), m_emit.eq(row.emit_values)]
        nxt_groups = []
        for g in groups:
            lanes = range(4 * g, min(4 * g + 4, P))
            nxt_groups.append([
                hit[g].eq(Cat(lowest[p] for p in lanes).any()),
                spike[g].eq(Cat(lowest[p] & spikes[p] for p in lanes).any()),
                lo[g].eq(Cat(Cat(lowest[p] for p in lanes if (p - 4 * g) >> b & 1).any()
                             for b in range(2))),
                value[g].eq(functools.reduce(operator.or_, (
                    Mux(lowest[p], values[p].as_unsigned(), 0) for p in lanes))),
            ])
        pick = Signal(range(P), name="mid_pick")
        lo_any = functools.reduce(operator.or_, (Mux(hit[g], lo[g], 0) for g in groups))
        grp = Cat(Cat(hit[g] for g in groups if g >> b & 1).any()
                  for b in range(max(0, (len(groups) - 1).bit_length())))
        m.d.comb += [
            pick.eq(Cat(lo_any, grp) if P > 4 else lo_any),
            cand.kind.eq(Mux(m_emit, 1, 0)),
            cand.layer.eq(m_layer),
            cand.index.eq(m_base + pick),
            cand.spike.eq(spike.any()),
            cand.value.eq(functools.reduce(operator.or_, value)),
        ]
        return nxt, nxt_groups

    def elaborate(self, platform):
        m = Module()
        P = self.lanes
        row = self._row_state = self._row()
        lowest = Signal(P)  # the lowest pending lane, one-hot, in flip-flops
        self._pick(m, lowest)
        out_valid = Signal()
        out = Signal(self.record_layout)
        advance = Signal()  # a lane can be picked: the skid register is empty
        skid_valid = Signal(name="skid_valid")  # implies ``out_valid``
        self._outputs(m, out_valid, out, advance, ~skid_valid)
        cand = Signal(self.record_layout)
        skid = Signal(self.record_layout)
        skid_valid_next = Signal()  # (for the per-group copies too)
        m.d.comb += skid_valid_next.eq(skid_valid)
        m.d.sync += skid_valid.eq(skid_valid_next)
        # The candidate record: the one in the middle register, picked a clock earlier.
        mid_valid = Signal(name="mid_valid")
        mid, mid_groups = self._middle(m, cand, lowest, row)
        with m.If(advance):  # (the groups' part: with their copies, below)
            m.d.sync += [mid_valid.eq(~row.none_left), *mid]
        m.d.comb += [
            self.free.eq(row.none_left & ~mid_valid),
            self.empty.eq(row.none_left & ~mid_valid & ~out_valid),
            # The record leaves the middle register: its event now.
            self.event.eq(mid_valid & advance & cand.spike),
            self.event_index.eq(cand.index),
            self.event_layer.eq(cand.layer),
            self.event_value.eq(cand.value),
        ]
        with m.If(~out_valid | self.records.ready):
            # The output register is empty or its record leaves now: it takes the
            # skid register's record, else the candidate (if any).
            with m.If(skid_valid):
                m.d.sync += out.eq(skid)
                m.d.comb += skid_valid_next.eq(0)
            with m.Else():
                m.d.sync += [out.eq(cand), out_valid.eq(mid_valid)]
        with m.Elif(advance & mid_valid):
            # Held back with the skid register empty: the candidate waits in it.
            m.d.sync += skid.eq(cand)
            m.d.comb += skid_valid_next.eq(1)
        self._flags(m, row, lowest, mid_groups, advance, skid_valid_next)
        return m

    def _flags(self, m, row, lowest, mid_groups, advance, skid_valid_next):
        """The row registers' updates: each candidate next ``pending`` (this row with
        its lowest lane gone, or a new row) with its flags and lowest lane on wires
        Yosys keeps (the LUT mapper otherwise folds ``load``, one far net, into the
        first level of the trees); ``advance`` and ``load`` only choose among them.
        The lane registers of each group of 4 take their enables from the group's
        copies of ``skid_valid``, ``none_left`` and ``one_left``."""
        P = self.lanes
        pending = row.pending
        rest = Signal(P)
        m.d.comb += rest.eq(pending & ~lowest)
        rest_none, rest_one = none_or_one(rest)
        send_none, send_one = none_or_one(self.send)
        load = self.load & self.can_load
        keep = {"keep": 1}
        kept = {}
        candidates = [("rest_none", rest_none), ("rest_one", rest_one),
                      ("rest_lowest", lowest_lane(rest))]
        if not self.given_flags:
            candidates += [("send_none", send_none), ("send_one", send_one),
                           ("send_lowest", lowest_lane(self.send))]
        for name, value in candidates:
            kept[name] = Signal(len(value), name=name, attrs=keep)
            m.d.comb += kept[name].eq(value)
        if self.given_flags:
            kept.update(send_none=self.send_none, send_one=self.send_one,
                        send_lowest=self.send_lowest)
        with m.If(load):
            m.d.sync += [row.none_left.eq(kept["send_none"]), row.one_left.eq(kept["send_one"]),
                         row.base.eq(self.base), row.layer.eq(self.layer),
                         row.emit_values.eq(self.emit_values)]
        with m.Elif(advance):
            m.d.sync += [row.none_left.eq(kept["rest_none"]), row.one_left.eq(kept["rest_one"])]
        for g in range(0, P, 4):
            lanes = slice(g, min(g + 4, P))
            skid_rep = Signal(name=f"skid_valid_rep{g // 4}")
            none_rep = Signal(init=1, name=f"none_left_rep{g // 4}")
            one_rep = Signal(name=f"one_left_rep{g // 4}")
            advance_g = ~skid_rep
            load_g = self.group_load[g // 4] & (none_rep | (one_rep & advance_g))
            m.d.sync += skid_rep.eq(skid_valid_next)
            with m.If(load_g):
                m.d.sync += [none_rep.eq(kept["send_none"]), one_rep.eq(kept["send_one"]),
                             pending[lanes].eq(self.send[lanes]),
                             lowest[lanes].eq(kept["send_lowest"][lanes]),
                             row.spikes[lanes].eq(self.spikes[lanes])]
                m.d.sync += [row.values[p].eq(self.values[p])
                             for p in range(lanes.start, lanes.stop)]
            with m.Elif(advance_g):
                m.d.sync += [none_rep.eq(kept["rest_none"]), one_rep.eq(kept["rest_one"]),
                             pending[lanes].eq(rest[lanes]),
                             lowest[lanes].eq(kept["rest_lowest"][lanes])]
            with m.If(advance_g):
                m.d.sync += mid_groups[g // 4]
