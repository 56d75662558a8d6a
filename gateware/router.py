"""The spike router: turns one row of neuron results into address events.

A row is ``P`` neurons (one per lane) with the first neuron index ``base``.
When ``load`` is high (allowed while ``can_load``), the router takes the row:
the lanes to send (``send``: the spiking lanes, or every valid lane for a layer
that emits values), their spikes and membranes, the layer and ``emit_values``.
It then sends one lane per clock, lowest lane first, as a record on ``records``
(``kind`` 0: a spike ``(layer, index)``; ``kind`` 1: a neuron value with its
spike), stalling while ``records.ready`` is low.  In the clock a spiking lane's
record is taken, ``event`` is high with ``event_index`` and ``event_layer``, for
the core to append ``index`` to the layer's event list (no backpressure).

``free``: nothing left to send.  ``can_load``: ``free``, or the last pending lane
leaves in this clock, so a new row can be taken without a bubble.
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SpikeRouter"]


class SpikeRouter(wiring.Component):
    def __init__(self, *, lanes: int, index_bits: int, layer_bits: int, u_bits: int,
                 record_layout: data.StructLayout):
        for name, value in (("lanes", lanes), ("index_bits", index_bits),
                            ("layer_bits", layer_bits), ("u_bits", u_bits)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                self._MustUse__silence = True  # never elaborated: no "unused" warning
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.lanes = lanes
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

        pick = Signal(range(P))
        for p in reversed(range(P)):
            with m.If(pending[p]):
                m.d.comb += pick.eq(p)
        pick_spike = Signal()
        m.d.comb += [
            pick_spike.eq(spikes.bit_select(pick, 1)),
            self.free.eq(pending == 0),
            self.records.valid.eq(~self.free),
            self.records.payload.kind.eq(Mux(emit_values, 1, 0)),
            self.records.payload.layer.eq(layer),
            self.records.payload.index.eq(base + pick),
            self.records.payload.spike.eq(pick_spike),
            self.records.payload.value.eq(values[pick]),
            self.event_index.eq(base + pick),
            self.event_layer.eq(layer),
        ]
        taken = self.records.valid & self.records.ready
        last = pending == (Const(1, P) << pick)
        m.d.comb += [
            self.event.eq(taken & pick_spike),
            self.can_load.eq(self.free | (taken & last)),
        ]
        with m.If(taken):
            m.d.sync += pending.eq(pending & ~(Const(1, P) << pick))
        with m.If(self.load & self.can_load):
            m.d.sync += [pending.eq(self.send), spikes.eq(self.spikes), base.eq(self.base),
                         layer.eq(self.layer), emit_values.eq(self.emit_values)]
            m.d.sync += [values[p].eq(self.values[p]) for p in range(P)]
        return m
