"""The neuron datapath of one NPE lane (combinational; the core registers around it).

Equations (the integer model's neuron phase)::

    v     = sat_u( ((alpha * u) >> F) + acc + bias )     >> is arithmetic (floor)
    s     = spiking & (v >= theta)
    u_new = v - theta * s        reset 0 (subtract)
          = s ? v_reset : v      reset 1 (zero)
          = v                    reset 2 (none)

Ports: ``u`` (signed ``u_bits``), ``acc`` (signed ``acc_bits``), ``alpha``
(unsigned ``F + 1``: 0..2**F), ``theta``, ``bias``, ``v_reset`` (signed
``u_bits``), ``reset`` (2 bits), ``spiking`` in; ``v``, ``spike``, ``u_new`` out.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["NeuronUpdate"]


class NeuronUpdate(wiring.Component):
    def __init__(self, *, u_bits: int, frac_bits: int, acc_bits: int):
        for name, value, lo in (("u_bits", u_bits, 2), ("frac_bits", frac_bits, 0),
                                ("acc_bits", acc_bits, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                self._MustUse__silence = True  # never elaborated: no "unused" warning
                raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
        self.u_bits, self.frac_bits, self.acc_bits = u_bits, frac_bits, acc_bits
        super().__init__({
            "u": In(signed(u_bits)),
            "acc": In(signed(acc_bits)),
            "alpha": In(unsigned(frac_bits + 1)),
            "theta": In(signed(u_bits)),
            "bias": In(signed(u_bits)),
            "v_reset": In(signed(u_bits)),
            "reset": In(2),
            "spiking": In(1),
            "v": Out(signed(u_bits)),
            "spike": Out(1),
            "u_new": Out(signed(u_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        u_min, u_max = -(1 << (self.u_bits - 1)), (1 << (self.u_bits - 1)) - 1
        leak = Signal(signed(self.u_bits + self.frac_bits + 2))
        total = Signal(signed(max(self.acc_bits, self.u_bits + 2) + 2))
        m.d.comb += [
            leak.eq((self.alpha * self.u) >> self.frac_bits),
            total.eq(leak + self.acc + self.bias),
            self.v.eq(Mux(total > u_max, u_max, Mux(total < u_min, u_min, total))),
            self.spike.eq(self.spiking & (self.v >= self.theta)),
        ]
        with m.Switch(self.reset):
            with m.Case(0):
                m.d.comb += self.u_new.eq(Mux(self.spike, self.v - self.theta, self.v))
            with m.Case(1):
                m.d.comb += self.u_new.eq(Mux(self.spike, self.v_reset, self.v))
            with m.Default():
                m.d.comb += self.u_new.eq(self.v)
        return m
