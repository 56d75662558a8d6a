"""The neuron datapath of one NPE lane (combinational; the core registers around it).

Equations (the integer model's neuron phase)::

    v     = sat_u( ((alpha * u) >> F) + acc + bias )     >> is arithmetic (floor)
    s     = spiking & (v >= theta)
    u_new = v - theta * s        reset 0 (subtract)
          = s ? v_reset : v      reset 1 (zero)
          = v                    reset 2 (none)

Split in two parts so the core can pipeline them: :class:`NeuronLeak`
(``leak = ((alpha * u) >> F) + bias``, known as soon as a row's membrane and
parameters are read, so the core computes it during the synaptic phase and
adds it into the accumulator) and :class:`NeuronFire` (``v = sat_u(total)``,
spike, reset, from ``total = leak + acc``; :class:`NeuronFireAhead` is its form
for the pipelined core).  :class:`NeuronUpdate` is the two together.

Ports of :class:`NeuronUpdate`: ``u`` (signed ``u_bits``), ``acc`` (signed
``acc_bits``), ``alpha`` (unsigned ``F + 1``: 0..2**F), ``theta``, ``bias``,
``v_reset`` (signed ``u_bits``), ``reset`` (2 bits), ``spiking`` in; ``v``,
``spike``, ``u_new`` out.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib.wiring import In, Out

from .checks import CheckedComponent, check_integers

__all__ = ["NeuronUpdate", "NeuronLeak", "NeuronFire", "NeuronFireAhead", "total_bits",
           "shift_add_product"]


def total_bits(u_bits: int, acc_bits: int) -> int:
    """Width of ``leak + acc`` (``|leak| <= 2**(u_bits - 1) + |bias|``): never overflows."""
    return max(acc_bits, u_bits + 2) + 2


class NeuronLeak(CheckedComponent):
    """``leak = ((alpha * u) >> F) + bias`` (signed ``u_bits + 2``); combinational."""

    @staticmethod
    def check_arguments(*, u_bits, frac_bits):
        check_integers(u_bits=(u_bits, 2), frac_bits=(frac_bits, 0))

    def __init__(self, *, u_bits: int, frac_bits: int):
        self.u_bits, self.frac_bits = u_bits, frac_bits
        super().__init__({
            "u": In(signed(u_bits)),
            "alpha": In(unsigned(frac_bits + 1)),
            "bias": In(signed(u_bits)),
            "leak": Out(signed(u_bits + 2)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.leak.eq(((self.alpha * self.u) >> self.frac_bits) + self.bias)
        return m


class NeuronFire(CheckedComponent):
    """From ``total`` (signed ``total_bits``): ``v = sat_u(total)``, the spike and the
    reset (module docs); combinational.

    Ports: ``total``, ``theta``, ``v_reset`` (signed ``u_bits``), ``reset`` (2 bits),
    ``spiking`` in; ``v``, ``spike``, ``u_new`` out.
    """

    @staticmethod
    def check_arguments(*, u_bits, total_bits):
        check_integers(u_bits=(u_bits, 2), total_bits=(total_bits, u_bits))

    def __init__(self, *, u_bits: int, total_bits: int):
        self.u_bits = u_bits
        super().__init__({**self._extra_ports(total_bits),
            "total": In(signed(total_bits)),
            "theta": In(signed(u_bits)),
            "v_reset": In(signed(u_bits)),
            "reset": In(2),
            "spiking": In(1),
            "v": Out(signed(u_bits)),
            "spike": Out(1),
            "u_new": Out(signed(u_bits)),
        })

    def _extra_ports(self, total_bits: int) -> dict:
        return {}

    def _compare(self, m, total, theta, hi, lo, diff, u_min):
        """``diff`` (``(v - theta)`` in the u range) and ``spike``.  Timing: the
        compare does not wait for the saturation.  With ``u_min <= theta <= u_max``,
        ``sat_u(total) >= theta  <=>  hi  or  theta == u_min  or  (not lo and
        total[:u_bits] >= theta)``, so one subtraction ``total[:u_bits] - theta``
        (``u_bits + 1`` wide), made in parallel with the saturation tests, gives the
        compare (its sign) and, when ``total`` is in the u range, the subtract reset
        (its low bits)."""
        m.d.comb += [
            diff.eq(total[:self.u_bits].as_signed() - theta),
            self.spike.eq(self.spiking & (hi | (theta == u_min) | (~lo & ~diff[-1]))),
        ]

    def elaborate(self, platform):
        # The core registers the outputs (the fire clock).  Saturated high,
        # ``u_max - theta`` is ``~theta`` with its top bit flipped; saturated low, a
        # spike means ``theta == u_min`` and ``v - theta`` is 0.
        m = Module()
        ub = self.u_bits
        u_min, u_max = -(1 << (ub - 1)), (1 << (ub - 1)) - 1
        total, theta = self.total, self.theta
        upper = total[ub - 1:]  # sign-extension bits of the u range, and above
        hi, lo = Signal(), Signal()
        diff = Signal(signed(ub + 1))
        m.d.comb += [
            hi.eq(~total[-1] & upper.any()),
            lo.eq(total[-1] & ~upper.all()),
            self.v.eq(Mux(hi, u_max, Mux(lo, u_min, total[:ub].as_signed()))),
        ]
        self._compare(m, total, theta, hi, lo, diff, u_min)
        subtracted = Signal(signed(ub))
        m.d.comb += subtracted.eq(Mux(hi, (~theta) ^ (1 << (ub - 1)),
                                      Mux(lo, 0, diff[:ub].as_signed())))
        after_spike = Signal(signed(ub))
        m.d.comb += [
            after_spike.eq(Mux(self.reset == 0, subtracted,
                               Mux(self.reset == 1, self.v_reset, self.v))),
            self.u_new.eq(Mux(self.spike, after_spike, self.v)),
        ]
        return m


class NeuronFireAhead(NeuronFire):
    """:class:`NeuronFire` with no subtraction left (the pipelined core): the caller
    also gives ``over = total - theta`` (signed ``total_bits + 1``, kept by a
    second accumulator) and ``theta_min`` (``theta == u_min``), both from
    registers.  ``sat_u(total) >= theta  <=>  over >= 0  or  theta_min`` (for
    ``u_min <= theta <= u_max``: above the u range ``over > 0``; below it
    ``sat_u(total) = u_min`` reaches theta only at ``u_min``), and in the u range
    ``over``'s low bits are ``(v - theta) mod 2**u_bits``.  The outputs equal
    :class:`NeuronFire`'s (``test_neuron_fire_is_exact_exhaustively``: both, every
    input, 4-bit u).
    """

    def _extra_ports(self, total_bits: int) -> dict:
        return {"over": In(signed(total_bits + 1)), "theta_min": In(1)}

    def _compare(self, m, total, theta, hi, lo, diff, u_min):
        m.d.comb += [
            diff.eq(self.over[:self.u_bits + 1].as_signed()),
            self.spike.eq(self.spiking & (~self.over[-1] | self.theta_min)),
        ]


class NeuronUpdate(CheckedComponent):
    """The whole neuron update (module docs): :class:`NeuronLeak`, ``+ acc``,
    :class:`NeuronFire`; combinational."""

    @staticmethod
    def check_arguments(*, u_bits, frac_bits, acc_bits):
        check_integers(u_bits=(u_bits, 2), frac_bits=(frac_bits, 0), acc_bits=(acc_bits, 2))

    def __init__(self, *, u_bits: int, frac_bits: int, acc_bits: int):
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
        m.submodules.leak = leak = NeuronLeak(u_bits=self.u_bits, frac_bits=self.frac_bits)
        m.submodules.fire = fire = NeuronFire(
            u_bits=self.u_bits, total_bits=total_bits(self.u_bits, self.acc_bits))
        m.d.comb += [
            leak.u.eq(self.u), leak.alpha.eq(self.alpha), leak.bias.eq(self.bias),
            fire.total.eq(leak.leak + self.acc), fire.theta.eq(self.theta),
            fire.v_reset.eq(self.v_reset), fire.reset.eq(self.reset),
            fire.spiking.eq(self.spiking),
            self.v.eq(fire.v), self.spike.eq(fire.spike), self.u_new.eq(fire.u_new),
        ]
        return m


def shift_add_product(a: Value, b: Value) -> Value:
    """``a * b`` for unsigned values as a sum of shifted partial products (one per
    bit of ``a``), so synthesis builds it from adders and keeps it out of the DSP
    blocks (the iCE40UP5K has 8, all needed by the lanes' multipliers)."""
    a, b = Value.cast(a), Value.cast(b)
    if a.shape().signed or b.shape().signed:
        raise TypeError(f"shift_add_product takes unsigned values, not {a!r} and {b!r}")
    terms = [Mux(a[i], b << i, 0) for i in range(len(a))] or [Const(0, 1)]
    while len(terms) > 1:  # a balanced adder tree: log2(len(a)) adders deep
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0][:len(a) + len(b)]
