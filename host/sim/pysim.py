"""Run the core on Amaranth's simulator (small unit tests; cocotb + Verilator for the rest).

:func:`run_core` loads a network's image, clears the core, feeds ``x`` step by
step and returns the raw output records of each step and the state read back
(after every step with ``observe``), with the output stream optionally
throttled (``ready`` low on a seeded fraction of clocks) to test backpressure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from amaranth.sim import Simulator

from ..contract.compiler import Image, compile_network
from ..contract.config import COUNTERS, CoreConfig, Region
from ..contract.harness import (
    decode_membranes,
    decode_step,
    expected,
    expected_states,
    input_events,
    membrane_reads,
)
from ..contract.timing import TimingProfile
from ..gateware.core import NPUCore
from ..golden.integer import Network

__all__ = ["CoreRun", "run_core", "check_run", "read_words", "write_words", "send_step"]


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


async def send_step(ctx, dut, events, *, hold_end=None) -> None:
    """One step's input: the ``(index, value)`` events, then the end marker, each
    held until the core takes it; returns in the clock after the end marker's.
    ``hold_end``: a callable; while it returns true, the end marker waits (the
    input stream idle)."""
    for j, v, end in [*((j, v, 0) for j, v in events), (0, 0, 1)]:
        while end and hold_end is not None and hold_end():
            ctx.set(dut.input.valid, 0)
            await ctx.tick()
        ctx.set(dut.input.valid, 1)
        ctx.set(dut.input.payload, {"index": j, "value": v, "end": end})
        while True:
            ready = ctx.get(dut.input.ready)
            await ctx.tick()
            if ready:
                break
    ctx.set(dut.input.valid, 0)


@dataclass
class CoreRun:
    """What :func:`run_core` saw: the ``image`` loaded, the raw output records of
    each step (``steps``), the counter words after the run (``counters``), every
    layer's state read back after the run (``membranes``,
    :func:`.harness.decode_membranes`) and, with ``observe``, after every step
    (``states``, one such dict per step; else ``None``)."""

    image: Image
    steps: list[list[int]]
    counters: list[int]
    membranes: dict[str, list[int]]
    states: list[dict[str, list[int]]] | None


def run_core(net: Network, config: CoreConfig, x, *, stall: float = 0.0, seed: int = 0,
             observe: bool = False, max_cycles: int = 200_000, vcd: str | None = None,
             weight_memory=None, timing: TimingProfile | None = None) -> CoreRun:
    """Simulate ``net`` on a core built for ``config``; ``x`` is ``[T, input_size]``.

    The input streams ahead of the core (the next step's events go in while a
    step runs).  With ``observe`` the end marker of step ``t + 1`` is held back
    until step ``t``'s records are out and every layer's state has been read
    back through the host port (the core idle in between); without it, the end
    markers follow each other as the core takes them, so steps run back to back.
    ``stall``: the fraction of clocks with ``output.ready`` low (seeded by
    ``seed``).  ``weight_memory``, ``timing``: the core's weight-memory hook and
    pipelining (see :class:`.core.NPUCore`).
    """
    image: Image = compile_network(net, config)
    dut = NPUCore(config=config, weight_memory=weight_memory, timing=timing)
    steps_in = [input_events(row) for row in x.tolist()]
    steps_out: list[list[int]] = [[] for _ in steps_in]
    counters: list[int] = []
    membranes: list[int] = []
    states: list[dict[str, list[int]]] = []
    state_addrs = membrane_reads(net, image)
    rng = random.Random(seed)

    async def host(ctx):
        await write_words(ctx, dut, image.writes)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for t, events in enumerate(steps_in):
            await send_step(ctx, dut, events,
                            hold_end=(lambda t=t: len(states) < t) if observe else None)

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
                    if observe:
                        ctx.set(dut.output.ready, 0)
                        await _wait_idle(ctx, dut)
                        states.append(decode_membranes(
                            await read_words(ctx, dut, state_addrs), net, image))
        ctx.set(dut.output.ready, 0)
        # Read the counters back through the host port once the core is idle.
        await _wait_idle(ctx, dut)
        counter_addrs = [config.address(Region.COUNTERS, 0, i)
                         for i in range(len(COUNTERS) * config.max_layers + 2)]
        words = await read_words(ctx, dut, counter_addrs + state_addrs)
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
    return CoreRun(image, steps_out, counters, decode_membranes(membranes, net, image),
                   states if observe else None)


def check_run(net: Network, x, run: CoreRun) -> None:
    """Assert that ``run`` (of ``net`` on ``x``) is the golden model's, bit for bit:
    every step's records (every spike of every layer, every output value), every
    layer's state after every step (if observed) and after the last."""
    want_steps, want_final = expected(net, x)
    if len(run.steps) != len(want_steps):
        raise AssertionError(f"{len(run.steps)} steps, expected {len(want_steps)}")
    want_states = expected_states(net, x) if run.states is not None else None
    for t, (records, want) in enumerate(zip(run.steps, want_steps, strict=True)):
        got = decode_step(records, net, run.image)
        if got != want:
            raise AssertionError(f"step {t}: records {got}, golden {want}")
        if want_states is not None and run.states[t] != want_states[t]:
            raise AssertionError(f"step {t}: states {run.states[t]}, golden {want_states[t]}")
    if run.membranes != want_final:
        raise AssertionError(f"final states {run.membranes}, golden {want_final}")


async def _wait_idle(ctx, dut) -> None:
    while ctx.get(dut.busy):
        await ctx.tick()
