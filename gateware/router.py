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
"""

from __future__ import annotations

import functools
import operator

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SpikeRouter"]


class SpikeRouter(wiring.Component):
    def __init__(self, *, lanes: int, index_bits: int, layer_bits: int, u_bits: int,
                 record_layout: data.StructLayout, fast: bool = False):
        for name, value in (("lanes", lanes), ("index_bits", index_bits),
                            ("layer_bits", layer_bits), ("u_bits", u_bits)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                self._MustUse__silence = True  # never elaborated: no "unused" warning
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(fast, bool):
            self._MustUse__silence = True
            raise TypeError(f"fast must be a bool, not {fast!r}")
        self.lanes = lanes
        self.fast = fast
        self.record_layout = record_layout
        super().__init__({
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
        def lowest_of(x):
            return Cat(*(x[p] & ~x[:p].any() for p in range(P)))

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
            m.d.comb += picked(cand)
            with m.If(~out_valid | self.records.ready):
                # The output register is empty or its record leaves now: it takes the
                # skid register's record, else the picked lane's (if any).
                with m.If(skid_valid):
                    m.d.sync += [out.eq(skid), skid_valid.eq(0)]
                with m.Else():
                    m.d.sync += [out.eq(cand), out_valid.eq(~none_left)]
            with m.Elif(advance & ~none_left):
                # Held back with the skid register empty: the picked lane waits in it.
                m.d.sync += [skid.eq(cand), skid_valid.eq(1)]
        # Timing: the flags of each candidate next ``pending`` (this row with its lowest
        # lane gone, or a new row) are computed from registers and ``send`` alone;
        # ``advance`` and ``load`` only choose among them at the end.
        def flags(x):
            if not self.fast:
                return (x == 0), (x != 0) & ((x & (x - 1)) == 0)
            # ``fast``: a tree of (any, more than one) pairs, LUTs only: Yosys shares
            # the two ``x - 1`` carry chains (``rest``'s and ``send``'s) behind a
            # multiplexer steered by ``load``, which put the sequencer's state in
            # front of a 32-bit carry chain on the ECP5-85F.
            nodes = [(x[p], Const(0)) for p in range(len(x))]
            while len(nodes) > 1:
                pairs = [nodes[i:i + 2] for i in range(0, len(nodes), 2)]
                nodes = [pair[0] if len(pair) == 1 else
                         (pair[0][0] | pair[1][0],
                          pair[0][1] | pair[1][1] | (pair[0][0] & pair[1][0]))
                         for pair in pairs]
            any_, many = nodes[0]
            return ~any_, any_ & ~many

        rest = Signal(P)
        m.d.comb += rest.eq(pending & ~lowest)
        rest_none, rest_one = flags(rest)
        send_none, send_one = flags(self.send)
        load = self.load & self.can_load
        with m.If(load):
            m.d.sync += [pending.eq(self.send), none_left.eq(send_none), one_left.eq(send_one)]
            if self.fast:
                m.d.sync += lowest.eq(lowest_of(self.send))
            m.d.sync += [spikes.eq(self.spikes), base.eq(self.base),
                         layer.eq(self.layer), emit_values.eq(self.emit_values)]
            m.d.sync += [values[p].eq(self.values[p]) for p in range(P)]
        with m.Elif(advance):
            m.d.sync += [pending.eq(rest), none_left.eq(rest_none), one_left.eq(rest_one)]
            if self.fast:
                m.d.sync += lowest.eq(lowest_of(rest))
        return m
