"""The block-RAM counter bank against a naive model (plain integers): random
increments on any number of counters per clock, clears, reads one per clock in
bursts and single reads while counting; every read is checked."""

from __future__ import annotations

import random
import re

import pytest
from amaranth.sim import Simulator
from spikeforge.gateware.counters import CounterBank


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize(("n", "width", "seed"), [(2, 32, 0), (3, 8, 1), (10, 32, 2), (18, 6, 3)])
def test_counter_bank_matches_the_naive_model(n, width, seed, registered):
    """``registered``: the model takes each clock's increments a clock later, and
    a ``clear`` drops its own clock's."""
    rng = random.Random(seed)
    dut = CounterBank(n=n, width=width, registered=registered)
    model = [0] * n
    late = [False] * n  # (``registered``) last clock's increments, not yet counted
    checked = []

    async def bench(ctx):
        nonlocal late
        pending = None  # (index, value expected) of the read issued last clock
        for clock in range(3000):
            phase = (clock // 300) % 3  # counting; idle with read bursts; mixed
            density = (0.9, 0.0, 0.3)[phase]
            inc = [rng.random() < density for _ in range(n)]
            clear = rng.random() < 0.001
            re_ = rng.random() < (0.02, 0.8, 0.05)[phase]
            addr = rng.randrange(n)
            ctx.set(dut.inc, sum(b << i for i, b in enumerate(inc)))
            ctx.set(dut.clear, clear)
            ctx.set(dut.re, re_)
            ctx.set(dut.raddr, addr)
            if pending is not None:
                assert ctx.get(dut.rvalid)
                got = ctx.get(dut.rdata)
                assert got == pending[1], f"clock {clock}, counter {pending[0]}: {got}"
                checked.append(pending)
            else:
                assert not ctx.get(dut.rvalid)
            # The read returns the value as of this clock (before its increments).
            pending = (addr, model[addr]) if re_ else None
            await ctx.tick()
            if registered:
                inc, late = late, [b and not clear for b in inc]
            for i in range(n):
                model[i] = 0 if clear else (model[i] + inc[i]) % (1 << width)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 500
    assert max(v for _, v in checked) >= min((1 << width) - 8, 200)  # big values, and wraps


def test_counter_bank_rejects_bad_generics():
    with pytest.raises(ValueError, match=re.escape("n must be an integer >= 2, not 1") + "$"):
        CounterBank(n=1)
    with pytest.raises(ValueError,
                       match=re.escape("width must be a positive integer, not 0") + "$"):
        CounterBank(n=4, width=0)
    with pytest.raises(TypeError, match=re.escape("registered must be a bool, not 1") + "$"):
        CounterBank(n=4, registered=1)
