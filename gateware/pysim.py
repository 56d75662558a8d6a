"""Run the core on Amaranth's simulator (small unit tests; cocotb + Verilator for the rest).

:func:`run_core` loads a network's image, clears the core, feeds ``x`` step by
step and returns the raw output records of each step, with the output stream
optionally throttled (``ready`` low on a seeded fraction of clocks) to test
backpressure.
"""

from __future__ import annotations

import random

from amaranth.sim import Simulator

from ..golden.integer import Network
from .core import NPUCore
from .harness import decode_membranes, input_events, membrane_reads
from .layout import COUNTERS, CoreConfig, CoreTiming, Image, Region, compile_network

__all__ = ["run_core", "read_words", "write_words", "send_step"]


async def read_words(ctx, dut, addrs) -> list[int]:
    """Pipelined host reads of ``addrs`` (one address per clock, the core idle);
    the words arrive ``host_read_latency`` clocks later, when ``host_rvalid`` is
    high.  Raises AssertionError if the words do not all come within
    ``host_read_latency`` clocks of the last read."""
    words = []
    ctx.set(dut.host_re, 1)
    for addr in addrs:
        ctx.set(dut.host_addr, addr)
        await ctx.tick()
        if ctx.get(dut.host_rvalid):
            words.append(ctx.get(dut.host_rdata))
    ctx.set(dut.host_re, 0)
    for _ in range(dut.timing.host_read_latency - 1):
        if len(words) == len(addrs):
            break
        await ctx.tick()
        if ctx.get(dut.host_rvalid):
            words.append(ctx.get(dut.host_rdata))
    if len(words) != len(addrs):
        raise AssertionError(f"{len(words)} words for {len(addrs)} host reads")
    await ctx.tick()
    if ctx.get(dut.host_rvalid):
        raise AssertionError("host_rvalid high after the last read's word")
    return words


async def write_words(ctx, dut, writes) -> None:
    """Host writes of ``(address, word)`` pairs, one per clock (the core idle)."""
    for addr, word in writes:
        ctx.set(dut.host_addr, addr)
        ctx.set(dut.host_wdata, word)
        ctx.set(dut.host_we, 1)
        await ctx.tick()
    ctx.set(dut.host_we, 0)


async def send_step(ctx, dut, events) -> None:
    """One step's input: the ``(index, value)`` events, then the end marker, each
    held until the core takes it; returns in the clock after the end marker's."""
    for j, v, end in [*((j, v, 0) for j, v in events), (0, 0, 1)]:
        ctx.set(dut.input.valid, 1)
        ctx.set(dut.input.payload, {"index": j, "value": v, "end": end})
        while True:
            ready = ctx.get(dut.input.ready)
            await ctx.tick()
            if ready:
                break
    ctx.set(dut.input.valid, 0)


def run_core(net: Network, config: CoreConfig, x, *, stall: float = 0.0, seed: int = 0,
             max_cycles: int = 200_000, vcd: str | None = None, weight_memory=None,
             timing: CoreTiming | None = None):
    """Simulate ``net`` on a core built for ``config``; ``x`` is ``[T, input_size]``.

    Returns ``(image, steps, counters, membranes)``: ``steps`` is a list (per
    step) of raw record words, ``counters`` the counter words and ``membranes``
    every layer's membranes (:func:`.harness.decode_membranes`) read back after
    the run.  ``weight_memory``, ``timing``: the core's weight-memory hook and
    pipelining (see :class:`.core.NPUCore`).
    """
    image: Image = compile_network(net, config)
    dut = NPUCore(config=config, weight_memory=weight_memory, timing=timing)
    steps_in = [input_events(row) for row in x.tolist()]
    steps_out: list[list[int]] = [[] for _ in steps_in]
    counters: list[int] = []
    membranes: list[int] = []
    rng = random.Random(seed)
    done = {"driver": False}

    async def host(ctx):
        await write_words(ctx, dut, image.writes)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for events in steps_in:
            await send_step(ctx, dut, events)
        done["driver"] = True

    async def sink(ctx):
        t = 0
        cycles = 0
        while t < len(steps_in):
            cycles += 1
            if cycles > max_cycles:
                raise TimeoutError(f"the core did not finish step {t} within {max_cycles} "
                                   f"clocks")
            ready = rng.random() >= stall
            ctx.set(dut.output.ready, ready)
            valid = ctx.get(dut.output.valid)
            word = ctx.get(dut.output.payload.as_value())
            await ctx.tick()
            if valid and ready:
                steps_out[t].append(word)
                if word & 0b11 == 2:
                    t += 1
        ctx.set(dut.output.ready, 0)
        # Read the counters back through the host port once the core is idle.
        while ctx.get(dut.busy):
            await ctx.tick()
        counter_addrs = [config.address(Region.COUNTERS, 0, i)
                         for i in range(len(COUNTERS) * config.max_layers + 2)]
        words = await read_words(ctx, dut, counter_addrs + membrane_reads(net, image))
        counters.extend(words[:len(counter_addrs)])
        membranes.extend(words[len(counter_addrs):])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(sink)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return image, steps_out, counters, decode_membranes(membranes, net, image)
