"""A multiplier with its operands and its product registered, for the DSP blocks.

:class:`RegisteredProduct` computes ``p = a * b`` (signed) with two register
stages: the operands are registered in the first clock, the product in the
second, so ``p`` in clock ``t + 2`` is ``a * b`` of clock ``t`` (latency 2, the
registers load in every clock; no enable, and the domain's reset does not
reach them).

On an ECP5 platform it is one ``MULT18X18D`` with its own input (A, B) and
output registers (``REG_INPUTA_CLK``, ``REG_INPUTB_CLK``, ``REG_OUTPUT_CLK`` on
``CLK0``): Yosys maps a ``*`` to a ``MULT18X18D`` without them, so the operands
and the product would be fabric flip-flops, and the nets into and out of the
block would share a clock with the multiplier's own delay.  Elsewhere
(simulation, other families) it is two fabric register stages around ``*``,
which is what the tests simulate; ``tests/test_dsp.py`` proves the
``MULT18X18D`` instance equal to it with Yosys (``miter`` + ``sat``), against a
behavioural model of the block.
"""

from __future__ import annotations

from amaranth import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib.wiring import In, Out

from .checks import CheckedComponent, check_integers

__all__ = ["RegisteredProduct", "ECP5_MULT_BITS"]

ECP5_MULT_BITS = 18
"""Operand width of one ECP5 ``MULT18X18D`` (signed operands: 18 bits with sign)."""


class RegisteredProduct(CheckedComponent):
    """``p = a * b`` two clocks later (module docs).

    Ports: ``a`` (signed ``a_bits``), ``b`` (signed ``b_bits``) in; ``p`` (signed
    ``a_bits + b_bits``) out.  The ``MULT18X18D`` form on a platform whose
    ``family`` is ``ecp5`` when both widths are at most 18, the fabric form
    otherwise.
    """

    @staticmethod
    def check_arguments(*, a_bits, b_bits):
        check_integers(a_bits=(a_bits, 1), b_bits=(b_bits, 1))

    def __init__(self, *, a_bits: int, b_bits: int):
        self.a_bits, self.b_bits = a_bits, b_bits
        super().__init__({
            "a": In(signed(a_bits)),
            "b": In(signed(b_bits)),
            "p": Out(signed(a_bits + b_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        fits = max(self.a_bits, self.b_bits) <= ECP5_MULT_BITS
        if getattr(platform, "family", None) == "ecp5" and fits:
            return self._mult18x18d(m)
        a_q = Signal.like(self.a, reset_less=True)
        b_q = Signal.like(self.b, reset_less=True)
        p_q = Signal.like(self.p, reset_less=True)
        m.d.sync += [a_q.eq(self.a), b_q.eq(self.b), p_q.eq(a_q * b_q)]
        m.d.comb += self.p.eq(p_q)
        return m

    def _mult18x18d(self, m):
        n = ECP5_MULT_BITS
        a = Signal(signed(n))
        b = Signal(signed(n))
        prod = Signal(2 * n)
        m.d.comb += [a.eq(self.a), b.eq(self.b), self.p.eq(prod[:len(self.p)])]
        ports = {f"i_A{i}": a[i] for i in range(n)}
        ports.update({f"i_B{i}": b[i] for i in range(n)})
        ports.update({f"i_C{i}": Const(0) for i in range(n)})
        ports.update({f"o_P{i}": prod[i] for i in range(2 * n)})
        ports.update(i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0),
                     i_SOURCEB=Const(0), i_CLK0=ClockSignal("sync"), i_CE0=Const(1),
                     i_RST0=Const(0))
        for k in range(1, 4):
            ports.update({f"i_CLK{k}": Const(0), f"i_CE{k}": Const(0), f"i_RST{k}": Const(0)})
        params = {f"p_REG_{reg}_{sig}": f"{sig}0" for reg in ("INPUTA", "INPUTB", "OUTPUT")
                  for sig in ("CLK", "CE", "RST")}
        params.update(p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE", p_GSR="DISABLED",
                      p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED",
                      p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED",
                      p_CLK3_DIV="ENABLED", p_HIGHSPEED_CLK="NONE", p_CAS_MATCH_REG="FALSE")
        m.submodules.mult = Instance("MULT18X18D", **params, **ports)
        return m
