"""A cocotb testbench for the NPU core built by :func:`.verilator.build_core`.

:class:`CoreTB` drives the Verilog top ``npu_core`` (ports ``clk``, ``rst``,
``host_*``, ``clear``, ``busy``, ``input__valid/ready/payload``,
``output__valid/ready/payload``) with the protocol of :mod:`.pysim`: host writes
of an image while idle, a ``clear`` pulse, then per step the input events and
an end marker, collecting output records until the end-of-step record, with
the output stream optionally throttled (``ready`` low on a seeded random
fraction of the clocks) and, optionally, the core's state read back through the
host port after every step.

Timing discipline: the testbench acts only at falling clock edges.  There it
samples outputs (stable since the last rising edge) and writes inputs, which
the core takes at the next rising edge.  ``input.ready`` depends on the FSM
state and ``clear`` only, and ``output.valid`` / ``payload`` not on
``output.ready``, so a value sampled at a falling edge is the one the core
sees at the next rising edge: a transfer happens there iff ``valid & ready``
as sampled / written at the falling edge.  (cocotb defers writes, so a value
sampled at a falling edge must not depend on an input written at that same
edge: hence ``clear`` is followed by one clock without it.)

This module imports cocotb; import it only inside a simulation.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from ..contract.compiler import Image
from ..contract.config import COUNTERS, RECORD_FIELDS, CoreConfig, Region
from ..contract.config import input_word as pack_input
from ..contract.harness import input_events
from ..contract.timing import COMPACT, TimingProfile

__all__ = ["CoreTB", "pack_input", "record_kind"]


def record_kind(c: CoreConfig, word: int) -> int:
    """The ``kind`` field of a raw output record (the lowest field)."""
    name, width = RECORD_FIELDS(c)[0]
    assert name == "kind"
    return word & ((1 << width) - 1)


class CoreTB:
    """Clock, reset, host port, input driver and output monitor of one ``npu_core``.

    ``stall``: the fraction of clocks with ``output.ready`` low, drawn from
    ``random.Random(seed)``.  ``max_step_cycles``: a step that takes longer is a
    failure (a hang).  ``cycles`` counts the clocks the testbench waited for.
    """

    def __init__(self, dut, config: CoreConfig, *, timing: TimingProfile | None = None,
                 stall: float = 0.0, seed: int = 0, period_ns: int = 10,
                 max_step_cycles: int = 100_000):
        self.dut = dut
        self.config = config
        self.timing = timing or COMPACT
        self.stall = stall
        self.rng = random.Random(seed)
        self.period_ns = period_ns
        self.max_step_cycles = max_step_cycles
        self.cycles = 0
        self.held = 0  # clocks with a record waiting and ``output.ready`` withheld
        self._clock_started = False

    # ------------------------------------------------------------ basics
    async def tick(self, n: int = 1) -> None:
        """Wait for ``n`` falling edges (the testbench's points of action)."""
        for _ in range(n):
            await FallingEdge(self.dut.clk)
            self.cycles += 1

    def _idle_inputs(self) -> None:
        d = self.dut
        d.host_addr.value = 0
        d.host_wdata.value = 0
        d.host_we.value = 0
        d.host_re.value = 0
        d.clear.value = 0
        d.input__valid.value = 0
        d.input__payload.value = 0
        d.output__ready.value = 0

    async def start(self, reset_cycles: int = 3) -> None:
        """Start the clock (once) and reset the core (``rst`` high for ``reset_cycles``)."""
        if not self._clock_started:
            Clock(self.dut.clk, self.period_ns, unit="ns").start()
            self._clock_started = True
        self._idle_inputs()
        self.dut.rst.value = 1
        await self.tick(reset_cycles)
        self.dut.rst.value = 0
        await self.tick()

    async def wait_idle(self, max_cycles: int = 100_000) -> None:
        for _ in range(max_cycles):
            if not int(self.dut.busy.value):
                return
            await self.tick()
        raise TimeoutError(f"the core stayed busy for {max_cycles} clocks")

    # ------------------------------------------------------------ host port
    async def write(self, addr: int, data: int) -> None:
        d = self.dut
        d.host_addr.value = addr
        d.host_wdata.value = data
        d.host_we.value = 1
        await self.tick()
        d.host_we.value = 0

    async def write_many(self, writes) -> None:
        """One host write per clock (the core must be idle)."""
        d = self.dut
        if int(d.busy.value):
            raise RuntimeError("host writes while the core is busy")
        d.host_we.value = 1
        for addr, data in writes:
            d.host_addr.value = addr
            d.host_wdata.value = data
            await self.tick()
        d.host_we.value = 0

    async def read_many(self, addrs) -> list[int]:
        """Pipelined host reads, one address per clock (the core must be idle): the
        word of each address arrives when ``host_rvalid`` is high,
        ``timing.host_read_latency`` clocks later, in order."""
        d = self.dut
        addrs = list(addrs)
        out: list[int] = []

        def take():
            if int(d.host_rvalid.value):
                out.append(d.host_rdata.value.to_unsigned())

        d.host_re.value = 1
        try:
            for addr in addrs:
                d.host_addr.value = addr
                await self.tick()
                take()
        finally:
            d.host_re.value = 0
        for _ in range(self.timing.host_read_latency - 1):
            if len(out) == len(addrs):
                break
            await self.tick()
            take()
        if len(out) != len(addrs):
            raise AssertionError(f"{len(out)} words for {len(addrs)} host reads "
                                 f"(from {addrs[0]:#x})")
        return out

    async def read(self, addr: int) -> int:
        return (await self.read_many([addr]))[0]

    async def clear(self) -> None:
        """One ``clear`` pulse (empties the event lists, zeroes the counters), then one
        clock with ``clear`` low, so that ``input.ready`` (low during ``clear``) is
        sampled without it."""
        self.dut.clear.value = 1
        await self.tick()
        self.dut.clear.value = 0
        await self.tick()

    async def load(self, image: Image) -> None:
        """Write ``image`` through the host port, then pulse ``clear``."""
        if image.config != self.config:
            raise ValueError("the image was compiled for another CoreConfig")
        await self.wait_idle()
        await self.write_many(image.writes)
        await self.clear()

    async def read_counters(self) -> list[int]:
        """All counter words, in address order (``COUNTERS`` per layer, then
        ``step_cycles`` and ``steps``)."""
        c = self.config
        await self.wait_idle()
        n = len(COUNTERS) * c.max_layers + 2
        return await self.read_many(c.address(Region.COUNTERS, 0, i) for i in range(n))

    # ------------------------------------------------------------ streams
    async def _drive(self, steps_in: list[list[tuple[int, int]]], hold) -> None:
        d = self.dut
        c = self.config
        for t, events in enumerate(steps_in):
            for j, v, end in [*((j, v, 0) for j, v in events), (0, 0, 1)]:
                while end and hold is not None and hold(t):
                    d.input__valid.value = 0
                    await FallingEdge(d.clk)
                d.input__payload.value = pack_input(c, j, v, end)
                d.input__valid.value = 1
                while True:
                    ready = int(d.input__ready.value)
                    await FallingEdge(d.clk)  # (the monitor counts the clocks)
                    if ready:
                        break
            d.input__valid.value = 0

    async def run(self, x_steps, *, observe=None) -> list[list[int]]:
        """Feed the steps of ``x_steps`` (``[T][input_size]`` ints, or a tensor) and
        return the raw output records of each step (each list ending with its
        end-of-step record).

        The input streams ahead of the core (the next step's events go in while a
        step runs).  ``observe``: an async callable ``observe(t)``, awaited once
        step ``t``'s end record is out and the core is idle (it may use the host
        port); the end marker of step ``t + 1`` is held back until it returns.
        Without it the steps run back to back."""
        rows = x_steps.tolist() if hasattr(x_steps, "tolist") else list(x_steps)
        steps_in = [input_events(row) for row in rows]
        out: list[list[int]] = [[] for _ in steps_in]
        d = self.dut
        observed = [0]  # steps observed so far
        hold = (lambda t: observed[0] < t) if observe is not None else None
        driver = cocotb.start_soon(self._drive(steps_in, hold))
        t = 0
        waited = 0
        try:
            while t < len(steps_in):
                ready = self.stall <= 0 or self.rng.random() >= self.stall
                d.output__ready.value = int(ready)
                valid = int(d.output__valid.value)
                word = d.output__payload.value.to_unsigned() if valid and ready else None
                self.held += valid and not ready
                await self.tick()
                waited += 1
                if word is not None:
                    out[t].append(word)
                    if record_kind(self.config, word) == 2:
                        t += 1
                        waited = 0
                        if observe is not None:
                            d.output__ready.value = 0
                            await self.wait_idle()
                            await observe(t - 1)
                            observed[0] = t
                if waited > self.max_step_cycles:
                    raise TimeoutError(
                        f"step {t} did not end within {self.max_step_cycles} clocks "
                        f"(records so far: {len(out[t])}, busy={int(d.busy.value)})")
        finally:
            d.output__ready.value = 0
            if not driver.done():
                driver.cancel()
        return out

    async def expect_quiet(self, cycles: int = 16) -> None:
        """With ``output.ready`` high for ``cycles`` clocks, nothing may come out, the core
        must stay idle and ready for input."""
        d = self.dut
        d.output__ready.value = 1
        try:
            for i in range(cycles):
                await self.tick()
                if int(d.output__valid.value):
                    raise AssertionError(
                        f"an output record after the last step (clock {i}): "
                        f"{d.output__payload.value.to_unsigned():#x}")
                if int(d.busy.value):
                    raise AssertionError(f"the core is busy after the last step (clock {i})")
                if not int(d.input__ready.value):
                    raise AssertionError(f"input.ready low while idle (clock {i})")
        finally:
            d.output__ready.value = 0
