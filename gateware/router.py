"""The spike router: turns one row of neuron results into address events.

A row is ``P`` neurons (one per lane) with the first neuron index ``base``.
When ``load`` is high (allowed while ``can_load``), the router takes the row:
the lanes to send (``send``: the spiking lanes, or every valid lane for a layer
that emits values), their spikes and membranes, the layer and ``emit_values``.
It then picks one lane per clock, lowest lane first, into an output register
and sends it as a record on ``records`` (``kind`` 0: a spike ``(layer,
index)``; ``kind`` 1: a neuron value with its spike), stalling while
``records.ready`` is low.  In the clock a spiking lane's record is taken,
``event`` is high with ``event_index`` and ``event_layer``, for the core to
append ``index`` to the layer's event list (no backpressure).

Latency: a record is valid one clock after its lane is picked (the output
register; timing: the lane pick and the value multiplexer end in flip-flops).
Throughput: one record per clock.

``free``: nothing left to send.  ``can_load``: no lane left to pick, or the last
one is picked in this clock, so a new row can be taken without a bubble (the
output register may still hold the previous row's last record).  Both come
from flip-flops and ``records.ready`` only.

``fast=True`` (timing, for many lanes on a big part): the lowest pending lane is
kept one-hot in flip-flops (loaded with the lowest lane of ``send``, or of the
lanes left), so the record's index, spike and value come from registers
through OR trees and AND-OR multiplexers; and the output is a two-entry skid
buffer (the output register and a skid register).  A lane is picked whenever
the skid register is empty, so neither the lane pick nor ``can_load`` waits
for ``records.ready`` (``ready`` only enables the two registers; ``free`` and
``can_load`` come from flip-flops only).  A lane picked while the output
register is held back goes into the skid register and moves to the output
register when that record leaves.  The records and their order do not depend
on ``ready`` (only their timing does); without backpressure the skid register
stays empty and the router runs clock for clock as without ``fast``.
Each group of 4 lanes also has its own copies of the skid register's valid bit
and of the two flags (``*_rep<g>``, kept apart by the board build), so the
clock enables of a group's lane registers come from a net of its own: one
register driving every lane's enable was a long, heavily loaded net on the
ECP5-85F.  ``load`` may be held high while ``can_load`` is low (it is taken only
with ``can_load``), so the lanes' enables need not wait for a sequencer that
looks at ``can_load`` first.  ``group_load`` (``fast`` only) is a copy of
``load`` per group of 4 lanes (equal to ``load`` in every clock: the core
drives it from flip-flops of its own per group), for the lanes' enables.

``staged=True`` (needs ``fast``; timing: the 32 lanes' values spread over the
die, one multiplexer into one register): the picked lane first goes into a
middle register, one part per group of 4 lanes (whether the group holds the
pick, its spike, its lane in the group and its value, zero otherwise), then
into the output register or the skid register through an OR over the groups.
A record is valid two clocks after its lane is picked.  ``event`` comes as the
record leaves the middle register (``event_index``, ``event_layer`` and
``event_value`` from it), in the clock it came without ``staged`` when the
output is never held back, and independently of ``records.ready``.  ``free``:
nothing left to pick or in the middle register (every event of the rows taken
is out); ``empty``: nor in the output registers (every record is out).

``given_flags=True`` (needs ``fast``; timing: the flag trees over ``send``
came after the row's registers in the clock the row is taken): the caller also
gives ``send``'s flags, ``send_none`` (no lane set), ``send_one`` (exactly one)
and ``send_lowest`` (the lowest lane set, one-hot), equal to ``send``'s in every
clock ``load`` is high; the core computes them from the fire stage, a clock
ahead, with :class:`SendFlags` (each group of 4 lanes registers its part, and
the parts are combined in the clock the row is taken).
"""

from __future__ import annotations

import functools
import operator

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .checks import check_integers

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


class SendFlags(wiring.Component):
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

    def __init__(self, *, lanes: int):
        check_integers(self, lanes=(lanes, 1))
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


class SpikeRouter(wiring.Component):
    def __init__(self, *, lanes: int, index_bits: int, layer_bits: int, u_bits: int,
                 record_layout: data.StructLayout, fast: bool = False, staged: bool = False,
                 given_flags: bool = False):
        check_integers(self, lanes=(lanes, 1), index_bits=(index_bits, 1),
                       layer_bits=(layer_bits, 1), u_bits=(u_bits, 1))
        options = (("fast", fast), ("staged", staged), ("given_flags", given_flags))
        for name, value in options:
            if not isinstance(value, bool):
                self._MustUse__silence = True
                raise TypeError(f"{name} must be a bool, not {value!r}")
        for name, value in options[1:]:
            if value and not fast:
                self._MustUse__silence = True
                raise ValueError(f"{name} needs fast=True")
        self.given_flags = given_flags
        self.lanes, self.u_bits = lanes, u_bits
        self.fast = fast
        self.staged = staged
        self.record_layout = record_layout
        extra_ports = {"empty": Out(1), "event_value": Out(signed(u_bits))} if staged else {}
        if fast:  # each group's copy of ``load`` (equal to it in every clock)
            extra_ports["group_load"] = In(-(-lanes // 4))
        if given_flags:
            extra_ports.update(send_none=In(1), send_one=In(1), send_lowest=In(lanes))
        super().__init__({**extra_ports,
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

    def _middle(self, m, cand, lowest, spikes, values, base, layer, emit_values):
        """``staged``: the middle register's next value from the picked lane
        (``nxt``: the row's base, layer and kind; ``nxt_groups``: per group of 4
        lanes, whether it holds the pick, its spike, its lane within the group and
        its value, zero when it does not), and ``cand`` from the middle register
        (an OR over the groups)."""
        P = self.lanes
        u_bits = self.u_bits
        groups = range(-(-P // 4))
        hit = Signal(len(groups), name="mid_hit")
        spike = Signal(len(groups), name="mid_spike")
        lo = [Signal(2, name=f"mid_lo{g}") for g in groups]
        value = [Signal(u_bits, name=f"mid_value{g}") for g in groups]
        m_base, m_layer, m_emit = (Signal.like(base, name="mid_base"),
                                   Signal.like(layer, name="mid_layer"), Signal(name="mid_emit"))
        nxt = [m_base.eq(base), m_layer.eq(layer), m_emit.eq(emit_values)]
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
        pending = Signal(P)
        spikes = Signal(P)
        values = Array(Signal(self.values[0].shape(), name=f"value{p}") for p in range(P))
        base = Signal.like(self.base)
        layer = Signal.like(self.layer)
        emit_values = Signal()
        # Flags about ``pending``, kept in flip-flops (timing): none left, one left.
        none_left = Signal(init=1)
        one_left = Signal()

        # The lowest pending lane: one-hot (each lane masked by the OR of the lanes
        # below it, no carry chain), then its index (OR trees).  ``fast``: in
        # flip-flops, loaded with the lowest lane of the next ``pending``.
        lowest_of = lowest_lane

        lowest = Signal(P)
        pick = Signal(range(P))
        if not self.fast:
            m.d.comb += [lowest[p].eq(pending[p] & ~pending[:p].any()) for p in range(P)]
        for b in range(len(pick)):
            m.d.comb += pick[b].eq(Cat(*(lowest[p] for p in range(P) if p >> b & 1)).any())
        # The picked lane's spike and value (``fast``: AND-OR over the one-hot lanes).
        if self.fast:
            pick_spike = (lowest & spikes).any()
            pick_value = functools.reduce(operator.or_, (
                Mux(lowest[p], values[p].as_unsigned(), 0) for p in range(P)))
        else:
            pick_spike, pick_value = spikes.bit_select(pick, 1), values[pick]

        def picked(r):  # the picked lane's record into ``r``
            return [
                r.kind.eq(Mux(emit_values, 1, 0)),
                r.layer.eq(layer),
                r.index.eq(base + pick),
                r.spike.eq(pick_spike),
                r.value.eq(pick_value),
            ]

        out_valid = Signal()
        out = Signal(self.record_layout)
        # A lane can be picked: the output register is empty or its record leaves now
        # (``fast``: the skid register is empty).
        advance = Signal()
        skid_valid = Signal(name="skid_valid") if self.fast else None  # implies ``out_valid``
        m.d.comb += [
            advance.eq(~skid_valid if self.fast else ~out_valid | self.records.ready),
            self.records.valid.eq(out_valid),
            self.records.payload.eq(out),
            self.free.eq(none_left & ~out_valid),
            self.can_load.eq(none_left | (one_left & advance)),
            self.event.eq(out_valid & self.records.ready & out.spike),
            self.event_index.eq(out.index),
            self.event_layer.eq(out.layer),
        ]
        if not self.fast:
            with m.If(advance):
                m.d.sync += out_valid.eq(~none_left)
                m.d.sync += picked(out)
        else:
            cand = Signal(self.record_layout)
            skid = Signal(self.record_layout)
            # ``skid_valid``'s next value (for the per-group copies too)
            skid_valid_next = Signal()
            m.d.comb += skid_valid_next.eq(skid_valid)
            m.d.sync += skid_valid.eq(skid_valid_next)
            # The candidate record: the picked lane's, or (``staged``) the record in
            # the middle register, picked a clock earlier.
            cand_valid = ~none_left
            if self.staged:
                cand_valid = mid_valid = Signal(name="mid_valid")
                mid, mid_groups = self._middle(m, cand, lowest, spikes, values, base, layer,
                                               emit_values)
                with m.If(advance):  # (the groups' part: with their copies, below)
                    m.d.sync += [mid_valid.eq(~none_left), *mid]
                m.d.comb += [
                    self.free.eq(none_left & ~mid_valid),
                    self.empty.eq(none_left & ~mid_valid & ~out_valid),
                    # The record leaves the middle register: its event now.
                    self.event.eq(mid_valid & advance & cand.spike),
                    self.event_index.eq(cand.index),
                    self.event_layer.eq(cand.layer),
                    self.event_value.eq(cand.value),
                ]
            else:
                m.d.comb += picked(cand)
            with m.If(~out_valid | self.records.ready):
                # The output register is empty or its record leaves now: it takes the
                # skid register's record, else the candidate (if any).
                with m.If(skid_valid):
                    m.d.sync += out.eq(skid)
                    m.d.comb += skid_valid_next.eq(0)
                with m.Else():
                    m.d.sync += [out.eq(cand), out_valid.eq(cand_valid)]
            with m.Elif(advance & cand_valid):
                # Held back with the skid register empty: the candidate waits in it.
                m.d.sync += skid.eq(cand)
                m.d.comb += skid_valid_next.eq(1)
        # Timing: the flags of each candidate next ``pending`` (this row with its lowest
        # lane gone, or a new row) are computed from registers and ``send`` alone;
        # ``advance`` and ``load`` only choose among them at the end.
        def flags(x):
            if not self.fast:
                return (x == 0), (x != 0) & ((x & (x - 1)) == 0)
            return none_or_one(x)

        rest = Signal(P)
        m.d.comb += rest.eq(pending & ~lowest)
        rest_none, rest_one = flags(rest)
        send_none, send_one = flags(self.send)
        load = self.load & self.can_load
        if not self.fast:
            with m.If(load):
                m.d.sync += [pending.eq(self.send), none_left.eq(send_none),
                             one_left.eq(send_one)]
                m.d.sync += [spikes.eq(self.spikes), base.eq(self.base),
                             layer.eq(self.layer), emit_values.eq(self.emit_values)]
                m.d.sync += [values[p].eq(self.values[p]) for p in range(P)]
            with m.Elif(advance):
                m.d.sync += [pending.eq(rest), none_left.eq(rest_none), one_left.eq(rest_one)]
            return m

        # Each candidate's flags and lowest lane on wires Yosys keeps: the LUT mapper
        # otherwise folds ``load`` (one far net) into the first level of the trees.
        keep = {"keep": 1}
        kept = {}
        candidates = [("rest_none", rest_none), ("rest_one", rest_one),
                      ("rest_lowest", lowest_of(rest))]
        if not self.given_flags:
            candidates += [("send_none", send_none), ("send_one", send_one),
                           ("send_lowest", lowest_of(self.send))]
        for name, value in candidates:
            kept[name] = Signal(len(value), name=name, attrs=keep)
            m.d.comb += kept[name].eq(value)
        if self.given_flags:
            kept.update(send_none=self.send_none, send_one=self.send_one,
                        send_lowest=self.send_lowest)
        send_none, send_one, rest_none, rest_one = (
            kept[n] for n in ("send_none", "send_one", "rest_none", "rest_one"))
        send_lowest, rest_lowest = kept["send_lowest"], kept["rest_lowest"]
        with m.If(load):
            m.d.sync += [none_left.eq(send_none), one_left.eq(send_one), base.eq(self.base),
                         layer.eq(self.layer), emit_values.eq(self.emit_values)]
        with m.Elif(advance):
            m.d.sync += [none_left.eq(rest_none), one_left.eq(rest_one)]
        # ``fast``: the lane registers of each group of 4 take their enables from the
        # group's copies of ``skid_valid``, ``none_left`` and ``one_left`` (equal to
        # the originals in every clock).
        for g in range(0, P, 4):
            lanes = slice(g, min(g + 4, P))
            skid_rep = Signal(name=f"skid_valid_rep{g // 4}")
            none_rep = Signal(init=1, name=f"none_left_rep{g // 4}")
            one_rep = Signal(name=f"one_left_rep{g // 4}")
            advance_g = ~skid_rep
            load_g = self.group_load[g // 4] & (none_rep | (one_rep & advance_g))
            m.d.sync += skid_rep.eq(skid_valid_next)
            with m.If(load_g):
                m.d.sync += [none_rep.eq(send_none), one_rep.eq(send_one),
                             pending[lanes].eq(self.send[lanes]),
                             lowest[lanes].eq(send_lowest[lanes]),
                             spikes[lanes].eq(self.spikes[lanes])]
                m.d.sync += [values[p].eq(self.values[p]) for p in range(lanes.start, lanes.stop)]
            with m.Elif(advance_g):
                m.d.sync += [none_rep.eq(rest_none), one_rep.eq(rest_one),
                             pending[lanes].eq(rest[lanes]), lowest[lanes].eq(rest_lowest[lanes])]
            if self.staged:
                with m.If(advance_g):
                    m.d.sync += mid_groups[g // 4]
        return m
